//! `UnfreezeAppointment`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::UnfreezeAppointment` (data only).

use athena_client::PracticeClient;
use athena_contracts::commands::UnfreezeAppointment;

use super::freeze_appointment::{reconcile_freeze, set_freeze};
use super::{AthenaCtx, Idempotency, Performed, Reading, WriteBack, envelope};

envelope!(UnfreezeAppointment);

impl WriteBack for UnfreezeAppointment {
    /// Read back: the slot's freeze flag is clear.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(set_freeze(cx.practice, &self.appointment_id, false))
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_freeze(p, &self.appointment_id, false))
    }
}

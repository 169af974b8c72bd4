//! `FreezeAppointment`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::FreezeAppointment` (data only).
//! `UnfreezeAppointment` (its own file) shares [`set_freeze`] and [`reconcile_freeze`].

use athena_client::PracticeClient;
use athena_contracts::commands::FreezeAppointment;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

envelope!(FreezeAppointment);

impl WriteBack for FreezeAppointment {
    /// Read back: the slot's freeze flag (`frozenyn`) is set.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(set_freeze(cx.practice, &self.appointment_id, true))
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_freeze(p, &self.appointment_id, true))
    }
}

/// `PUT .../freeze` with `freeze`; the slot's id.
pub(super) async fn set_freeze(
    p: &PracticeClient,
    appointment_id: &str,
    freeze: bool,
) -> Result<super::Ids, athena_client::Error> {
    p.freeze_appointment(appointment_id, freeze).await?;
    Ok(ids(&[("appointment_id", appointment_id)]))
}

/// Applied when the appointment is still an open slot (status `o`: only those can be frozen)
/// and its freeze flag is `want` (athena shows `frozenyn` `Y` on a frozen slot; absent or
/// anything else is not frozen). A booked appointment is never "unfrozen as asked".
pub(super) async fn reconcile_freeze(
    p: &PracticeClient,
    appointment_id: &str,
    want: bool,
) -> Result<ReadBack, athena_client::Error> {
    let a = p.get_appointment(appointment_id).await?;
    let frozen = super::json_str(&a.raw, "frozenyn")
        .is_some_and(|v| v.eq_ignore_ascii_case("y") || v.eq_ignore_ascii_case("true"));
    let open = a.appointmentstatus.as_deref() == Some("o");
    Ok(if open && frozen == want {
        ReadBack::Applied(ids(&[("appointment_id", appointment_id)]))
    } else {
        ReadBack::NotApplied
    })
}

//! `CheckOutAppointment`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::CheckOutAppointment` (data only).

use athena_client::PracticeClient;
use athena_contracts::commands::CheckOutAppointment;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

envelope!(CheckOutAppointment);

fn touched(c: &CheckOutAppointment) -> super::Ids {
    ids(&[
        ("appointment_id", &c.appointment_id),
        ("patient_id", c.patient_id.as_deref().unwrap_or("")),
    ])
}

impl WriteBack for CheckOutAppointment {
    /// Read back: the appointment is checked out (status 3) or further (4, charge entered).
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            cx.practice.checkout(&self.appointment_id).await?;
            Ok(touched(self))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let a = p.get_appointment(&self.appointment_id).await?;
            Ok(if matches!(a.appointmentstatus.as_deref(), Some("3" | "4")) {
                ReadBack::Applied(touched(self))
            } else {
                ReadBack::NotApplied
            })
        })
    }
}

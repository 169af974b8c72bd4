//! `CancelAppointment`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::CancelAppointment` (data only).

use athena_client::PracticeClient;
use athena_client::api::appointments as appt;
use athena_contracts::commands::CancelAppointment;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

envelope!(CancelAppointment);

impl WriteBack for CancelAppointment {
    /// Read back: the appointment's status is cancelled.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let req = appt::CancelAppointment {
                patient_id: self.patient_id.clone(),
                cancel_reason_id: self.cancel_reason_id.clone(),
                cancellation_reason: self.cancellation_reason.clone(),
            };
            cx.practice
                .cancel_appointment(&self.appointment_id, &req)
                .await?;
            Ok(ids(&[
                ("appointment_id", &self.appointment_id),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let a = p.get_appointment(&self.appointment_id).await?;
            Ok(if a.appointmentstatus.as_deref() == Some("x") {
                ReadBack::Applied(ids(&[
                    ("appointment_id", &self.appointment_id),
                    ("patient_id", &self.patient_id),
                ]))
            } else {
                ReadBack::NotApplied
            })
        })
    }
}

//! `CheckInAppointment`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::CheckInAppointment` (data only).

use athena_client::PracticeClient;
use athena_contracts::commands::CheckInAppointment;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

envelope!(CheckInAppointment);

impl WriteBack for CheckInAppointment {
    /// Read back: the appointment is checked in (status 2, 3 or 4).
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            // startcheckin is harmless to repeat; checkin is the state change.
            cx.practice.start_checkin(&self.appointment_id).await?;
            cx.practice.checkin(&self.appointment_id).await?;
            Ok(ids(&[
                ("appointment_id", &self.appointment_id),
                ("patient_id", self.patient_id.as_deref().unwrap_or("")),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let a = p.get_appointment(&self.appointment_id).await?;
            Ok(
                if matches!(a.appointmentstatus.as_deref(), Some("2" | "3" | "4")) {
                    ReadBack::Applied(ids(&[
                        ("appointment_id", &self.appointment_id),
                        ("patient_id", self.patient_id.as_deref().unwrap_or("")),
                    ]))
                } else {
                    ReadBack::NotApplied
                },
            )
        })
    }
}

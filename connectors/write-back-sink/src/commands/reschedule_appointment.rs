//! `RescheduleAppointment`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::RescheduleAppointment` (data only).

use athena_client::PracticeClient;
use athena_client::api::appointments as appt;
use athena_contracts::commands::RescheduleAppointment;

use super::{
    AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids, is_booked,
};

envelope!(RescheduleAppointment);

impl WriteBack for RescheduleAppointment {
    /// Read back: the new slot holds this patient.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let req = appt::RescheduleAppointment {
                new_appointment_id: self.new_appointment_id.clone(),
                patient_id: self.patient_id.clone(),
                cancel_reason_id: self.cancel_reason_id.clone(),
                reason_id: self.reason_id.clone(),
                reschedule_reason: self.reschedule_reason.clone(),
            };
            let a = cx
                .practice
                .reschedule_appointment(&self.appointment_id, &req)
                .await?;
            let new_id = if a.appointmentid.is_empty() {
                self.new_appointment_id.clone()
            } else {
                a.appointmentid.clone()
            };
            Ok(ids(&[
                ("appointment_id", &new_id),
                ("previous_appointment_id", &self.appointment_id),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let new = p.get_appointment(&self.new_appointment_id).await?;
            let status = new.appointmentstatus.as_deref();
            Ok(
                if (is_booked(status) || status == Some("x"))
                    && new.patientid.as_deref() == Some(self.patient_id.as_str())
                {
                    ReadBack::Applied(ids(&[
                        ("appointment_id", &self.new_appointment_id),
                        ("previous_appointment_id", &self.appointment_id),
                        ("patient_id", &self.patient_id),
                    ]))
                } else if status == Some("o") {
                    ReadBack::NotApplied
                } else {
                    ReadBack::Conflict("SLOT_TAKEN", "the new slot is no longer open".into())
                },
            )
        })
    }
}

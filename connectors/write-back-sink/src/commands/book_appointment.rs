//! `BookAppointment`: what the sink does with it (its envelope and its [`WriteBack`] behaviour).
//! Its Avro mirror is `athena_contracts::commands::BookAppointment` (data only).

use athena_client::PracticeClient;
use athena_client::api::appointments as appt;
use athena_contracts::commands::BookAppointment;

use super::{
    AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids, is_booked,
};

envelope!(BookAppointment);

impl WriteBack for BookAppointment {
    /// Read back: the slot holds this patient (booked, or since cancelled by a later command).
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let req = appt::BookAppointment {
                patient_id: self.patient_id.clone(),
                appointment_type_id: self.appointment_type_id.clone(),
                reason_id: self.reason_id.clone(),
                department_id: self.department_id.clone(),
                booking_note: self.booking_note.clone(),
                ignore_schedulable_permission: self.ignore_schedulable_permission,
                no_patient_case: self.no_patient_case,
                extra: Vec::new(),
            };
            let a = cx
                .practice
                .book_appointment(&self.appointment_id, &req)
                .await?;
            Ok(ids(&[
                ("appointment_id", &a.appointmentid),
                (
                    "patient_id",
                    a.patientid.as_deref().unwrap_or(&self.patient_id),
                ),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let a = p.get_appointment(&self.appointment_id).await?;
            let status = a.appointmentstatus.as_deref();
            // Our patient on the slot, booked or since cancelled (by a later command of the
            // same key that ran before this one's result was committed): our booking landed.
            let ours = a.patientid.as_deref() == Some(self.patient_id.as_str());
            Ok(if ours && (is_booked(status) || status == Some("x")) {
                ReadBack::Applied(ids(&[
                    ("appointment_id", &self.appointment_id),
                    ("patient_id", &self.patient_id),
                ]))
            } else if status == Some("o") {
                ReadBack::NotApplied
            } else {
                ReadBack::Conflict("SLOT_TAKEN", "the slot is no longer open".into())
            })
        })
    }
}

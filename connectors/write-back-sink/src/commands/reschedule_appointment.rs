//! Rust mirror of `schemas/commands/RescheduleAppointment.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::appointments as appt;
use athena_contracts::TimestampMillis;
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{
    AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids, is_booked,
};

/// `com.athenaconnect.commands.RescheduleAppointment`: Move a booked appointment to another open slot (PUT /v1/{practiceid}/appointments/{appointmentid}/reschedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescheduleAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the booked appointment to move.
    pub appointment_id: String,
    /// athena appointmentid of the open slot to move to.
    pub new_appointment_id: String,
    /// athena patientid the appointment is booked for.
    pub patient_id: String,
    /// athena appointmentcancelreasonid for the old slot.
    pub cancel_reason_id: Option<String>,
    /// athena reasonid for the new slot.
    pub reason_id: Option<String>,
    /// Free-text reason. May contain PHI; never logged.
    pub reschedule_reason: Option<String>,
}

impl AvroRecord for RescheduleAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RescheduleAppointment";
}

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

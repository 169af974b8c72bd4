//! Rust mirror of `schemas/commands/CancelAppointment.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::appointments as appt;
use athena_contracts::TimestampMillis;
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

/// `com.athenaconnect.commands.CancelAppointment`: Cancel a booked appointment (PUT /v1/{practiceid}/appointments/{appointmentid}/cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the booked appointment.
    pub appointment_id: String,
    /// athena patientid the appointment is booked for.
    pub patient_id: String,
    /// athena appointmentcancelreasonid (GET /appointmentcancelreasons).
    pub cancel_reason_id: Option<String>,
    /// Free-text reason. May contain PHI; never logged.
    pub cancellation_reason: Option<String>,
}

impl AvroRecord for CancelAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CancelAppointment";
}

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

//! Rust mirror of `schemas/commands/CheckInAppointment.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_contracts::TimestampMillis;
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

/// `com.athenaconnect.commands.CheckInAppointment`: Check a patient in for a booked appointment (POST .../startcheckin then .../checkin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInAppointment {
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
    /// athena patientid, when the producer knows it (copied to the result).
    pub patient_id: Option<String>,
}

impl AvroRecord for CheckInAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CheckInAppointment";
}

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

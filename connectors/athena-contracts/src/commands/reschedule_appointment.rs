//! Rust mirror of `schemas/commands/RescheduleAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/reschedule_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

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

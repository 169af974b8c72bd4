//! Rust mirror of `schemas/commands/CancelAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/cancel_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

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

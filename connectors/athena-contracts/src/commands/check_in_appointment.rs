//! Rust mirror of `schemas/commands/CheckInAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/check_in_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

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

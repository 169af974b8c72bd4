//! Rust mirror of `schemas/commands/CheckOutAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/check_out_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.CheckOutAppointment`: Check a patient out of a checked-in appointment (POST /v1/{practiceid}/appointments/{appointmentid}/checkout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckOutAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the checked-in appointment.
    pub appointment_id: String,
    /// athena patientid, when the producer knows it (copied to the result).
    pub patient_id: Option<String>,
}

impl AvroRecord for CheckOutAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CheckOutAppointment";
}

//! Rust mirror of `schemas/commands/AddAppointmentNote.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/add_appointment_note.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.AddAppointmentNote`: Add a note to an appointment (POST /v1/{practiceid}/appointments/{appointmentid}/notes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAppointmentNote {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid.
    pub appointment_id: String,
    /// The note (up to 500 characters). May contain PHI; never logged.
    pub note_text: String,
    /// Show the note on the schedule.
    #[serde(default)]
    pub display_on_schedule: bool,
    /// athena patientid, when the producer knows it (copied to the result).
    pub patient_id: Option<String>,
}

impl AvroRecord for AddAppointmentNote {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.AddAppointmentNote";
}

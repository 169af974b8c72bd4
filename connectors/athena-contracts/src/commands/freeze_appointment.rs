//! Rust mirror of `schemas/commands/FreezeAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/freeze_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.FreezeAppointment`: Hold an open slot so nobody can book it (PUT /v1/{practiceid}/appointments/{appointmentid}/freeze, freeze=true).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the open slot.
    pub appointment_id: String,
}

impl AvroRecord for FreezeAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.FreezeAppointment";
}

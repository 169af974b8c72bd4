//! Rust mirror of `schemas/commands/UnfreezeAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/unfreeze_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.UnfreezeAppointment`: Release a frozen slot (PUT /v1/{practiceid}/appointments/{appointmentid}/freeze, freeze=false).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnfreezeAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the frozen slot.
    pub appointment_id: String,
}

impl AvroRecord for UnfreezeAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UnfreezeAppointment";
}

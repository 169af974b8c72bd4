//! Rust mirror of `schemas/commands/RemoveInsurance.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/remove_insurance.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.RemoveInsurance`: Remove an insurance package from a patient (DELETE /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveInsurance {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena patientid.
    pub patient_id: String,
    /// athena insuranceid of the package to remove.
    pub insurance_id: String,
}

impl AvroRecord for RemoveInsurance {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RemoveInsurance";
}

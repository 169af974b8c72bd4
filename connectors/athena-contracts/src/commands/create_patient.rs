//! Rust mirror of `schemas/commands/CreatePatient.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/create_patient.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.CreatePatient`: Register a patient (POST /v1/{practiceid}/patients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena departmentid: the patient's primary department (required by athena).
    pub department_id: String,
    /// First name (athena: up to 20 characters). PHI; never logged.
    pub first_name: String,
    /// Last name (athena: up to 30 characters). PHI; never logged.
    pub last_name: String,
    /// Date of birth. PHI; never logged.
    pub dob: Date,
    /// Sex, M or F.
    pub sex: Option<String>,
    /// Email (athena: up to 50 characters). PHI; never logged.
    pub email: Option<String>,
    /// Home phone. PHI; never logged.
    pub home_phone: Option<String>,
    /// Mobile phone. PHI; never logged.
    pub mobile_phone: Option<String>,
    /// Address line 1. PHI; never logged.
    pub address1: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State (two letters).
    pub state: Option<String>,
    /// ZIP code.
    pub zip: Option<String>,
}

impl AvroRecord for CreatePatient {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CreatePatient";
}

//! Rust mirror of `schemas/commands/UpdatePatient.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/update_patient.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.UpdatePatient`: Set demographic fields of a patient (PUT /v1/{practiceid}/patients/{patientid}); only fields that are set are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
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
    /// athena departmentid.
    pub department_id: Option<String>,
    /// First name. PHI; never logged.
    pub first_name: Option<String>,
    /// Last name. PHI; never logged.
    pub last_name: Option<String>,
    /// Date of birth. PHI; never logged.
    pub dob: Option<Date>,
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
    /// athena status: a (active), i (inactive), p (prospective).
    pub status: Option<String>,
}

impl AvroRecord for UpdatePatient {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UpdatePatient";
}

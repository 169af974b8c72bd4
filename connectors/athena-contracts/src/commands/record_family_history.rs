//! Rust mirror of `schemas/commands/RecordFamilyHistory.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/record_family_history.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.RecordFamilyHistory`: Record a relative's condition in the family history (POST /v1/{practiceid}/chart/{patientid}/familyhistory). Reconciled by counting entries with this relation and code against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFamilyHistory {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena patientid (also the key: practice_id/patient_id).
    pub patient_id: String,
    /// athena departmentid.
    pub department_id: String,
    /// Relative, athena relation name (MOTHER, FATHER, SISTER, BROTHER, SON, DAUGHTER, GRANDMOTHER, GRANDFATHER, AUNT, UNCLE).
    pub relation: String,
    /// SNOMED CT code of the relative's condition.
    pub snomed_code: String,
    /// Relative's age at onset, years.
    pub onset_age: Option<i32>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
}

impl AvroRecord for RecordFamilyHistory {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RecordFamilyHistory";
}

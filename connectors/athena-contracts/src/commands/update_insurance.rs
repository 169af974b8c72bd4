//! Rust mirror of `schemas/commands/UpdateInsurance.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/update_insurance.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.UpdateInsurance`: Change fields of a patient's insurance package (PUT /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateInsurance {
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
    /// athena insuranceid of the patient's package.
    pub insurance_id: String,
    /// New athena insurancepackageid (0 = self-pay).
    pub insurance_package_id: Option<String>,
    /// 1 primary, 2 secondary.
    pub sequence_number: Option<i32>,
    /// Member id. PHI; never logged.
    pub insurance_id_number: Option<String>,
    /// Policy holder first name. PHI; never logged.
    pub policyholder_first_name: Option<String>,
    /// Policy holder last name. PHI; never logged.
    pub policyholder_last_name: Option<String>,
    /// Policy holder date of birth. PHI; never logged.
    pub policyholder_dob: Option<Date>,
    /// Policy holder sex, M or F.
    pub policyholder_sex: Option<String>,
    /// athena relationshiptoinsuredid (1 = self).
    pub relationship_to_insured_id: Option<String>,
}

impl AvroRecord for UpdateInsurance {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UpdateInsurance";
}

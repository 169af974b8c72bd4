//! Rust mirror of `schemas/commands/CreateClaim.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/create_claim.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.CreateClaim`: Charge entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClaim {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid: selects the appointment-based form.
    pub appointment_id: Option<String>,
    /// athena patientid (required for the stand-alone form).
    pub patient_id: Option<String>,
    /// athena departmentid (required for the stand-alone form).
    pub department_id: Option<String>,
    /// athena supervisingproviderid (required for the stand-alone form).
    pub supervising_provider_id: Option<String>,
    /// athena renderingproviderid (stand-alone form; default: the supervising provider).
    pub rendering_provider_id: Option<String>,
    /// Date of service, today or earlier (required for the stand-alone form).
    pub service_date: Option<Date>,
    /// athena primarypatientinsuranceid (stand-alone form; default: the active one).
    pub primary_patient_insurance_id: Option<String>,
    /// Charge lines, at least one.
    pub charges: Vec<ClaimCharge>,
}

impl AvroRecord for CreateClaim {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CreateClaim";
}

/// `com.athenaconnect.commands.ClaimCharge`: One charge line of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimCharge {
    /// CPT/HCPCS procedure code.
    pub procedure_code: String,
    /// ICD-10 diagnosis codes, one to four, the first required.
    pub icd10_codes: Vec<String>,
    /// Units, as athena accepts them (a decimal string).
    pub units: Option<String>,
    /// Amount per unit, decimal string (e.g. 100.00).
    pub unit_amount: Option<String>,
    /// Line note. May contain PHI; never logged.
    pub line_note: Option<String>,
}

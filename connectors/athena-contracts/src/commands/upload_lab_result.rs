//! Rust mirror of `schemas/commands/UploadLabResult.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/upload_lab_result.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.UploadLabResult`: File a lab result document to a patient's chart (POST /v1/{practiceid}/patients/{patientid}/documents/labresult). Reconciled by counting the patient's lab results with this observation date and first LOINC code against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadLabResult {
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
    /// Date of the observation.
    pub observation_date: Option<Date>,
    /// athena documenttypeid.
    pub document_type_id: Option<String>,
    /// File straight to the chart, skipping the clinical inbox.
    #[serde(default)]
    pub autoclose: bool,
    /// At least one analyte.
    pub analytes: Vec<LabAnalyte>,
}

/// `com.athenaconnect.commands.LabAnalyte`: One analyte of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabAnalyte {
    /// LOINC code.
    pub loinc: String,
    /// Analyte name.
    pub analyte_name: String,
    /// Result value. PHI; never logged.
    pub value: String,
    /// Units.
    pub units: Option<String>,
    /// Reference range.
    pub reference_range: Option<String>,
    /// Abnormal flag (e.g. H, L).
    pub abnormal_flag: Option<String>,
    /// final, preliminary or corrected.
    pub result_status: Option<String>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
}

impl AvroRecord for UploadLabResult {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UploadLabResult";
}

//! Rust mirror of `schemas/commands/UploadClinicalDocument.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/upload_clinical_document.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.UploadClinicalDocument`: File a clinical document (PDF) to a patient's chart (POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadClinicalDocument {
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
    pub department_id: String,
    /// athena documentsubclass, e.g. CLINICALDOCUMENT_CONSULTNOTE.
    #[serde(default = "default_document_subclass")]
    pub document_subclass: String,
    /// The file (PDF). PHI; never logged.
    #[serde(with = "apache_avro::serde::bytes")]
    pub attachment: Vec<u8>,
    /// athena attachmenttype.
    #[serde(default = "default_attachment_type")]
    pub attachment_type: String,
    /// Original file name without extension (up to 200 characters). Used to reconcile an uncertain upload; when absent the sink sends the command_id.
    pub original_filename: Option<String>,
    /// athena documenttypeid.
    pub document_type_id: Option<String>,
    /// File straight to the chart, skipping the clinical inbox.
    #[serde(default)]
    pub autoclose: bool,
    /// Observation date.
    pub observation_date: Option<Date>,
    /// athena providerid.
    pub provider_id: Option<String>,
    /// Internal note. May contain PHI; never logged.
    pub internal_note: Option<String>,
}

fn default_document_subclass() -> String {
    "CLINICALDOCUMENT".to_string()
}

fn default_attachment_type() -> String {
    "PDF".to_string()
}

impl AvroRecord for UploadClinicalDocument {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UploadClinicalDocument";
}

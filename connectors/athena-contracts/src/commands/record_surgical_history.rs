//! Rust mirror of `schemas/commands/RecordSurgicalHistory.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/record_surgical_history.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.RecordSurgicalHistory`: Record a past surgery on the chart (POST /v1/{practiceid}/chart/{patientid}/surgicalhistory). Reconciled by counting the patient's surgical history entries with this code and date against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSurgicalHistory {
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
    /// SNOMED CT or CPT code of the procedure (required unless fhir_resource).
    pub procedure_code: Option<String>,
    /// Date performed.
    pub procedure_date: Option<Date>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
    /// Instead of the typed fields: a US Core Procedure (SNOMED CT or CPT code, performedDateTime or performedPeriod.start) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

impl AvroRecord for RecordSurgicalHistory {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RecordSurgicalHistory";
}

//! Rust mirror of `schemas/commands/RecordVaccine.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/record_vaccine.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.RecordVaccine`: Record an administered or historical vaccine (POST /v1/{practiceid}/chart/{patientid}/vaccines). Reconciled by counting the patient's vaccines with this CVX code and date against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVaccine {
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
    /// CVX code (required unless fhir_resource).
    pub cvx: Option<String>,
    /// Date given (required unless fhir_resource).
    pub administer_date: Option<Date>,
    /// Lot number.
    pub lot_number: Option<String>,
    /// Dose amount.
    pub dose_amount: Option<f64>,
    /// Dose units (e.g. mL).
    pub dose_units: Option<String>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
    /// Instead of the typed fields: a US Core Immunization (CVX vaccineCode, occurrenceDateTime) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

impl AvroRecord for RecordVaccine {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RecordVaccine";
}

//! Rust mirror of `schemas/commands/AddHistoricalMedication.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/add_historical_medication.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.AddHistoricalMedication`: Add a historical (patient-reported or outside) medication to the chart (POST /v1/{practiceid}/chart/{patientid}/medications). athena documents this call as available only to certain partner types: a refusal is REJECTED with athena's reason. Reconciled by counting the patient's medications with this medication id against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHistoricalMedication {
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
    /// athena medicationid (required unless fhir_resource).
    pub medication_id: Option<String>,
    /// Start date.
    pub start_date: Option<Date>,
    /// Stop date.
    pub stop_date: Option<Date>,
    /// Free-text sig. PHI; never logged.
    pub unstructured_sig: Option<String>,
    /// Patient note. PHI; never logged.
    pub note: Option<String>,
    /// Instead of the typed fields: a US Core MedicationStatement (a coding in system https://fhir.athena.io/sid/ah-medication carries athena's medication id; effectivePeriod gives start and stop) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

impl AvroRecord for AddHistoricalMedication {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.AddHistoricalMedication";
}

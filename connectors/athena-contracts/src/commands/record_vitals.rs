//! Rust mirror of `schemas/commands/RecordVitals.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/record_vitals.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.RecordVitals`: Record vital signs on a patient's chart (POST /v1/{practiceid}/chart/{patientid}/vitals) or on an encounter (POST /v1/{practiceid}/chart/encounter/{encounterid}/vitals). Reconciled by counting the patient's readings of the same elements, date and values against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVitals {
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
    /// athena encounterid: record on this encounter instead of the chart.
    pub encounter_id: Option<String>,
    /// athena vitals source (e.g. DEVICEGENERATED); athena's default when null.
    pub source: Option<String>,
    /// Date the readings were taken (athena readingtaken); today when null.
    pub reading_taken: Option<Date>,
    /// Typed readings (empty when fhir_resource is given).
    #[serde(default)]
    pub vitals: Vec<VitalReading>,
    /// Instead of the typed fields: a US Core vital-signs Observation (LOINC code; body weight, height, temperature, blood pressure panel or components, heart rate, respiratory rate, BMI, inhaled O2 concentration; UCUM units converted to athena's) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

/// `com.athenaconnect.commands.VitalReading`: One reading in athena's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalReading {
    /// athena clinicalelementid, e.g. VITALS.WEIGHT (grams), VITALS.HEIGHT (cm), VITALS.TEMPERATURE (degrees F), VITALS.BLOODPRESSURE.SYSTOLIC.
    pub clinical_element_id: String,
    /// The value in athena's unit for that element. PHI; never logged.
    pub value: String,
}

impl AvroRecord for RecordVitals {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RecordVitals";
}

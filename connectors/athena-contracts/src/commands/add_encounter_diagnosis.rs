//! Rust mirror of `schemas/commands/AddEncounterDiagnosis.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/add_encounter_diagnosis.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.AddEncounterDiagnosis`: Add a diagnosis to an encounter (POST /v1/{practiceid}/chart/encounter/{encounterid}/diagnoses). Reconciled by counting the encounter's diagnoses with this SNOMED code against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEncounterDiagnosis {
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
    /// athena encounterid.
    pub encounter_id: String,
    /// SNOMED CT code (required unless fhir_resource).
    pub snomed_code: Option<String>,
    /// ICD-10-CM codes.
    #[serde(default)]
    pub icd10_codes: Vec<String>,
    /// LEFT, RIGHT or BILATERAL.
    pub laterality: Option<String>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
    /// Instead of the typed fields: a US Core Condition (encounter-diagnosis; SNOMED CT and ICD-10-CM codings) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

impl AvroRecord for AddEncounterDiagnosis {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.AddEncounterDiagnosis";
}

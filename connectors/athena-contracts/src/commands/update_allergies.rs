//! Rust mirror of `schemas/commands/UpdateAllergies.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/update_allergies.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.UpdateAllergies`: Add or update allergies on a patient's chart (PUT /v1/{practiceid}/chart/{patientid}/allergies). athena replaces the whole list, so the sink reads the list, merges these entries by allergen id and writes the merged list, then re-reads to check nothing written meanwhile was lost (merging again if so). Naturally idempotent. Key practice_id/patient_id keeps one patient's allergy writes in order. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAllergies {
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
    /// Typed entries (empty when fhir_resource is given).
    #[serde(default)]
    pub allergies: Vec<AllergyEntry>,
    /// Instead of the typed fields: a US Core AllergyIntolerance (its code's first coding is the allergen id, its display or text the name) as JSON. Validated and mapped to athena's call; an invalid resource is REJECTED (INVALID_FHIR_RESOURCE) with a PHI-free reason. Never logged.
    pub fhir_resource: Option<String>,
}

/// `com.athenaconnect.commands.AllergyEntry`: One allergy to add or update (matched by allergen_id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllergyEntry {
    /// athena allergenid.
    pub allergen_id: String,
    /// Allergen name as athena lists it.
    pub allergen_name: String,
    /// Reaction names (e.g. hives).
    #[serde(default)]
    pub reactions: Vec<String>,
    /// Severity of the reactions (mild, moderate, severe).
    pub severity: Option<String>,
    /// low, high or unable-to-assess.
    pub criticality: Option<String>,
    /// Onset date.
    pub onset_date: Option<Date>,
    /// Note. PHI; never logged.
    pub note: Option<String>,
}

impl AvroRecord for UpdateAllergies {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UpdateAllergies";
}

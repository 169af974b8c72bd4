//! FHIR resources without a changed-data feed (encounters, conditions, ...):
//! `com.athenaconnect.events.FhirResourceChanged` (`schemas/events/FhirResourceChanged.avsc`),
//! written by push inflation and the bulk backfill. Patients and appointments use their own
//! events ([`super::patients`], [`super::appointments`]).

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mapping::{Observation, fhir_envelope, fhir_version};
use crate::{EventEnvelope, TimestampMillis};

/// `com.athenaconnect.events.FhirResourceChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirResourceChanged {
    /// Event metadata; `entity_type` is the lower-case resource type, `entity_id` the FHIR id.
    pub envelope: EventEnvelope,
    /// FHIR resource type, e.g. `Encounter`.
    pub resource_type: String,
    /// FHIR logical id.
    pub fhir_id: String,
    /// athenaOne patient id of the subject, when there is one.
    pub patient_id: Option<String>,
    /// `meta.lastUpdated`.
    pub last_updated: Option<TimestampMillis>,
    /// The resource as FHIR JSON text, unless PHI minimisation is on.
    pub resource: Option<String>,
}

impl AvroRecord for FhirResourceChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.FhirResourceChanged";
}

/// The athena patient id in a FHIR reference `Patient/a-{pid}.E-{id}`.
fn patient_of(reference: Option<&str>) -> Option<String> {
    let r = reference?.rsplit('/').next()?;
    athena_client::api::fhir::ids::patient_id(r)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// A `FhirResourceChanged` from any FHIR resource with a type and an `id` (an empty one counts
/// as none: it names no resource, and would key every such event alike).
pub fn resource_from_fhir(
    practice: &str,
    r: &Value,
    obs: &Observation,
) -> Option<FhirResourceChanged> {
    let non_empty = |k: &str| {
        r.get(k)?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let ty = non_empty("resourceType")?;
    let fhir_id = non_empty("id")?;
    let (version, at) = fhir_version(r);
    let patient_id = patient_of(
        r.pointer("/subject/reference")
            .or_else(|| r.pointer("/patient/reference"))
            .and_then(Value::as_str),
    );
    let entity_type = ty.to_ascii_lowercase();
    Some(FhirResourceChanged {
        envelope: fhir_envelope(obs, practice, &entity_type, &fhir_id, &version, at),
        resource_type: ty,
        fhir_id,
        patient_id,
        last_updated: at.map(Into::into),
        resource: obs.include_original.then(|| r.to_string()),
    })
}

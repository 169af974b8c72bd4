//! Rust mirror of `schemas/events/FhirResourceChanged.avsc` (the event for FHIR resources that
//! have no changed-data feed: encounters, conditions, allergies, ...). Patients and appointments
//! reuse `PatientChanged` / `AppointmentChanged` from `connector_core::contracts`.

use connector_core::avro::AvroRecord;
use connector_core::contracts::{EventEnvelope, TimestampMillis};
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_deserialises_and_schema_is_bundled() {
        let text = include_str!("../../../schemas/examples/FhirResourceChanged.json");
        let ev: FhirResourceChanged = serde_json::from_str(text).unwrap();
        assert_eq!(ev.resource_type, "Encounter");
        let b = FhirResourceChanged::bundled();
        assert_eq!(b.default_topic.as_deref(), Some("athena.fhir.resources.v1"));
        let value = apache_avro_roundtrip(&ev);
        assert!(value);
    }

    fn apache_avro_roundtrip(ev: &FhirResourceChanged) -> bool {
        let enc = connector_core::avro::Encoder::<FhirResourceChanged>::with_id(1).unwrap();
        let bytes = enc.encode(ev).unwrap();
        let (_, body) = connector_core::avro::unframe(&bytes).unwrap();
        connector_core::avro::decode_body::<FhirResourceChanged>(body).unwrap() == *ev
    }
}

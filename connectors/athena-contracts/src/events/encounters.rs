//! `Encounter`: `com.athenaconnect.events.EncounterChanged` (`schemas/events/EncounterChanged.avsc`), visits, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload};
use crate::TimestampMillis;

/// `com.athenaconnect.events.Encounter`: A US Core Encounter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct Encounter {
    pub fhir_id: String,
    pub patient_id: String,
    pub status: String,
    pub class: Coding,
    #[serde(default)]
    pub types: Vec<Coding>,
    #[serde(default)]
    pub service_type: Vec<Coding>,
    pub period_start: Option<TimestampMillis>,
    pub period_end: Option<TimestampMillis>,
    #[serde(default)]
    pub reason_codes: Vec<Coding>,
    #[serde(default)]
    pub diagnosis_condition_ids: Vec<String>,
    #[serde(default)]
    pub participant_ids: Vec<String>,
    #[serde(default)]
    pub location_ids: Vec<String>,
    pub service_provider_id: Option<String>,
    #[serde(default)]
    pub appointment_ids: Vec<String>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.EncounterChanged`.
pub type EncounterChanged = FhirChanged<Encounter>;

impl FhirPayload for Encounter {
    const RESOURCE_TYPE: &'static str = "Encounter";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.EncounterChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let class = f
            .codings("/class")
            .into_iter()
            .next()
            .or_else(|| {
                // Encounter.class is a bare Coding in R4, not a CodeableConcept.
                Some(Coding {
                    system: f.str("/class/system"),
                    code: f.str("/class/code")?,
                    display: f.str("/class/display"),
                })
            })
            .ok_or_else(|| f.missing("class"))?;
        let payload = Encounter {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            status: f.req_str("/status", "status")?,
            class,
            types: f.codings_all("/type"),
            service_type: f.codings("/serviceType"),
            period_start: f.time("/period/start"),
            period_end: f.time("/period/end"),
            reason_codes: f.codings_all("/reasonCode"),
            diagnosis_condition_ids: f.references("/diagnosis", "/condition"),
            participant_ids: f.references("/participant", "/individual"),
            location_ids: f.references("/location", "/location"),
            service_provider_id: f.reference("/serviceProvider"),
            appointment_ids: f.references("/appointment", ""),
            last_updated: f.time("/meta/lastUpdated"),
        };
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::fhir::test_seen as seen;
    use crate::mapping::typed_from_fhir;
    use serde_json::json;

    #[test]
    fn encounter_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "Encounter", "id": "a-195900.encounter-1042", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "participant": [{"individual": {"reference": "Practitioner/a-195900.Provider-71"}}],
            "period": {"start": "2025-11-24T15:00:00Z", "end": "2025-11-24T15:30:00Z"},
            "diagnosis": [{"condition": {"reference": "Condition/a-195900.problem-3833"}}],
            "location": [{"location": {"reference": "Location/a-195900.Department-1"}}],
            "serviceProvider": {"reference": "Organization/a-195900.Department-1"}});
        let e: EncounterChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        let p = &e.payload;
        assert_eq!(p.class.code, "AMB");
        assert_eq!(p.types[0].code, "185349003");
        assert_eq!(
            (
                p.participant_ids.as_slice(),
                p.diagnosis_condition_ids.as_slice()
            ),
            (&["71".to_string()][..], &["3833".to_string()][..])
        );
        assert_eq!(p.period_end, Some(TimestampMillis(1_763_998_200_000)));
        let mut bad = r.clone();
        bad.as_object_mut().unwrap().remove("class");
        assert!(matches!(
            typed_from_fhir::<EncounterChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing { field: "class", .. })
        ));
    }
}

//! `Condition`: `com.athenaconnect.events.ConditionChanged` (`schemas/events/ConditionChanged.avsc`), problem-list items and encounter diagnoses (select by `categories`), SNOMED CT / ICD-10-CM coded, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload};
use crate::TimestampMillis;

/// `com.athenaconnect.events.Condition`: A US Core Condition: a problem-list item or an encounter diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct Condition {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub clinical_status: Option<String>,
    pub verification_status: Option<String>,
    #[serde(default)]
    pub categories: Vec<Coding>,
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub code_text: Option<String>,
    pub onset_at: Option<TimestampMillis>,
    pub abatement_at: Option<TimestampMillis>,
    pub recorded_at: Option<TimestampMillis>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ConditionChanged`.
pub type ConditionChanged = FhirChanged<Condition>;

impl FhirPayload for Condition {
    const RESOURCE_TYPE: &'static str = "Condition";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.ConditionChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let payload = Condition {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.reference("/encounter"),
            clinical_status: f.first_code("/clinicalStatus"),
            verification_status: f.first_code("/verificationStatus"),
            categories: f.codings_all("/category"),
            codes: f.req_codings("/code", "code.coding")?,
            code_text: f.str("/code/text"),
            onset_at: f
                .time("/onsetDateTime")
                .or_else(|| f.time("/onsetPeriod/start")),
            abatement_at: f
                .time("/abatementDateTime")
                .or_else(|| f.time("/abatementPeriod/end")),
            recorded_at: f.time("/recordedDate"),
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
    fn problem_and_diagnosis_map_and_bad_ones_fail() {
        let r = json!({"resourceType": "Condition", "id": "a-195900.problem-3833",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"code": "confirmed"}]},
            "category": [{"coding": [{"code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"},
                                 {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
            "subject": {"reference": "Patient/a-195900.E-7965"}, "onsetDateTime": "2021-01-01"});
        let e: ConditionChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        let codes: Vec<&str> = e.payload.codes.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["44054006", "E11.9"]);
        assert_eq!(e.payload.clinical_status.as_deref(), Some("active"));
        assert_eq!(e.payload.categories[0].code, "problem-list-item");
        let mut dx = r.clone();
        dx["category"] = json!([{"coding": [{"code": "encounter-diagnosis"}]}]);
        dx["encounter"] = json!({"reference": "Encounter/a-195900.encounter-1042"});
        let d: ConditionChanged = typed_from_fhir("195900", &dx, &seen(true)).unwrap();
        assert_eq!(d.payload.encounter_id.as_deref(), Some("1042"));
        assert_ne!(
            d.envelope.event_id, e.envelope.event_id,
            "another version, another id"
        );
        let mut bad = r.clone();
        bad.as_object_mut().unwrap().remove("code");
        assert!(matches!(
            typed_from_fhir::<ConditionChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "code.coding",
                ..
            })
        ));
    }
}

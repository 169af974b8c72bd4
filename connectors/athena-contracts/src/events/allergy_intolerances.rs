//! `AllergyIntolerance`: `com.athenaconnect.events.AllergyIntoleranceChanged` (`schemas/events/AllergyIntoleranceChanged.avsc`), allergies and intolerances, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload};
use crate::TimestampMillis;

/// `com.athenaconnect.events.AllergyReaction`: One AllergyIntolerance.reaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct AllergyReaction {
    #[serde(default)]
    pub substance: Vec<Coding>,
    #[serde(default)]
    pub manifestations: Vec<Coding>,
    pub severity: Option<String>,
    pub onset_at: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.AllergyIntolerance`: A US Core AllergyIntolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct AllergyIntolerance {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub clinical_status: Option<String>,
    pub verification_status: Option<String>,
    pub allergy_type: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    pub criticality: Option<String>,
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub code_text: Option<String>,
    #[serde(default)]
    pub reactions: Vec<AllergyReaction>,
    pub onset_at: Option<TimestampMillis>,
    pub recorded_at: Option<TimestampMillis>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.AllergyIntoleranceChanged`.
pub type AllergyIntoleranceChanged = FhirChanged<AllergyIntolerance>;

impl FhirPayload for AllergyIntolerance {
    const RESOURCE_TYPE: &'static str = "AllergyIntolerance";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.AllergyIntoleranceChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let reactions =
            f.r.get("reaction")
                .and_then(serde_json::Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|x| {
                            let x = Fhir { r: x, ..*f };
                            AllergyReaction {
                                substance: x.codings("/substance"),
                                manifestations: x.codings_all("/manifestation"),
                                severity: x.str("/severity"),
                                onset_at: x.time("/onset"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
        // US Core requires `code`; athena sends some allergens as text only (no coding).
        let (codes, code_text) = (f.codings("/code"), f.str("/code/text"));
        if codes.is_empty() && code_text.is_none() {
            return Err(f.missing("code"));
        }
        let payload = AllergyIntolerance {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/patient", "patient")?,
            encounter_id: f.reference("/encounter"),
            clinical_status: f.first_code("/clinicalStatus"),
            verification_status: f.first_code("/verificationStatus"),
            allergy_type: f.str("/type"),
            categories: f.strs("/category"),
            criticality: f.str("/criticality"),
            codes,
            code_text,
            reactions,
            onset_at: f.time("/onsetDateTime"),
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
    fn allergy_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "AllergyIntolerance", "id": "a-195900.allergy-1211",
            "clinicalStatus": {"coding": [{"code": "active"}]}, "type": "allergy", "category": ["medication"],
            "criticality": "high",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980"}]},
            "patient": {"reference": "Patient/a-195900.E-7965"},
            "reaction": [{"manifestation": [{"coding": [{"system": "http://snomed.info/sct", "code": "271807003"}]}],
                          "severity": "moderate"}]});
        let e: AllergyIntoleranceChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        assert_eq!(e.payload.codes[0].code, "7980");
        assert_eq!(e.payload.categories, vec!["medication"]);
        assert_eq!(e.payload.reactions[0].manifestations[0].code, "271807003");
        assert_eq!(e.payload.reactions[0].severity.as_deref(), Some("moderate"));
        let mut text_only = r.clone();
        text_only["code"] = json!({"text": "Shellfish"});
        let t: AllergyIntoleranceChanged = typed_from_fhir("195900", &text_only, &seen(true)).unwrap();
        assert!(t.payload.codes.is_empty());
        assert_eq!(t.payload.code_text.as_deref(), Some("Shellfish"));
        text_only["code"] = json!({});
        assert!(matches!(
            typed_from_fhir::<AllergyIntoleranceChanged>("195900", &text_only, &seen(true)),
            Err(FhirMapError::Missing { field: "code", .. })
        ));
        let mut bad = r.clone();
        bad["patient"] = json!({"display": "no reference"});
        assert!(matches!(
            typed_from_fhir::<AllergyIntoleranceChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "patient",
                ..
            })
        ));
    }
}

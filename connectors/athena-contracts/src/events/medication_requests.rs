//! `MedicationRequest`: `com.athenaconnect.events.MedicationRequestChanged` (`schemas/events/MedicationRequestChanged.avsc`), RxNorm-coded prescriptions and medication-list entries, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload, Quantity};
use crate::TimestampMillis;

/// `com.athenaconnect.events.MedicationRequest`: A US Core MedicationRequest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct MedicationRequest {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    pub intent: String,
    #[serde(default)]
    pub categories: Vec<Coding>,
    #[serde(default)]
    pub medication_codes: Vec<Coding>,
    pub medication_id: Option<String>,
    pub medication_text: Option<String>,
    pub reported: Option<bool>,
    pub authored_at: Option<TimestampMillis>,
    pub requester_id: Option<String>,
    pub dosage_text: Option<String>,
    pub dispense_quantity: Option<Quantity>,
    pub refills: Option<i32>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.MedicationRequestChanged`.
pub type MedicationRequestChanged = FhirChanged<MedicationRequest>;

impl FhirPayload for MedicationRequest {
    const RESOURCE_TYPE: &'static str = "MedicationRequest";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.MedicationRequestChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let medication_codes = f.codings("/medicationCodeableConcept");
        let medication_id = f.reference("/medicationReference");
        if medication_codes.is_empty() && medication_id.is_none() {
            return Err(f.missing("medication[x]"));
        }
        let payload = MedicationRequest {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.reference("/encounter"),
            status: f.req_str("/status", "status")?,
            intent: f.req_str("/intent", "intent")?,
            categories: f.codings_all("/category"),
            medication_codes,
            medication_id,
            medication_text: f.str("/medicationCodeableConcept/text"),
            reported: f.bool("/reportedBoolean"),
            authored_at: f.time("/authoredOn"),
            requester_id: f.reference("/requester"),
            dosage_text: f.str("/dosageInstruction/0/text"),
            dispense_quantity: f.quantity("/dispenseRequest/quantity"),
            refills: f.int("/dispenseRequest/numberOfRepeatsAllowed"),
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
    fn rxnorm_request_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "MedicationRequest", "id": "a-195900.medication-2207",
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
            "subject": {"reference": "Patient/a-195900.E-7965"}, "authoredOn": "2025-11-24T15:00:00Z",
            "requester": {"reference": "Practitioner/a-195900.Provider-71"},
            "dosageInstruction": [{"text": "1 tablet twice daily"}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 60, "unit": "tablet"}}});
        let e: MedicationRequestChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        assert_eq!(e.payload.medication_codes[0].code, "860975");
        assert_eq!(
            (e.payload.refills, e.payload.requester_id.as_deref()),
            (Some(3), Some("71"))
        );
        assert_eq!(
            e.payload.authored_at,
            Some(TimestampMillis(1_763_996_400_000))
        );
        let mut bad = r.clone();
        bad.as_object_mut()
            .unwrap()
            .remove("medicationCodeableConcept");
        assert!(matches!(
            typed_from_fhir::<MedicationRequestChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "medication[x]",
                ..
            })
        ));
        bad["medicationReference"] = json!({"reference": "Medication/m1"});
        let m: MedicationRequestChanged = typed_from_fhir("195900", &bad, &seen(true)).unwrap();
        assert_eq!(m.payload.medication_id.as_deref(), Some("m1"));
        bad.as_object_mut().unwrap().remove("intent");
        assert!(matches!(
            typed_from_fhir::<MedicationRequestChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "intent",
                ..
            })
        ));
    }
}

//! `ServiceRequest`: `com.athenaconnect.events.ServiceRequestChanged` (`schemas/events/ServiceRequestChanged.avsc`), orders and referrals (select by `categories`), read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload};
use crate::TimestampMillis;

/// `com.athenaconnect.events.ServiceRequest`: A US Core ServiceRequest: an order or a referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct ServiceRequest {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    pub intent: String,
    #[serde(default)]
    pub categories: Vec<Coding>,
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub code_text: Option<String>,
    pub priority: Option<String>,
    pub authored_at: Option<TimestampMillis>,
    pub occurrence_at: Option<TimestampMillis>,
    pub requester_id: Option<String>,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    #[serde(default)]
    pub reason_codes: Vec<Coding>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ServiceRequestChanged`.
pub type ServiceRequestChanged = FhirChanged<ServiceRequest>;

impl FhirPayload for ServiceRequest {
    const RESOURCE_TYPE: &'static str = "ServiceRequest";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.ServiceRequestChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let payload = ServiceRequest {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.reference("/encounter"),
            status: f.req_str("/status", "status")?,
            intent: f.req_str("/intent", "intent")?,
            categories: f.codings_all("/category"),
            codes: f.req_codings("/code", "code.coding")?,
            code_text: f.str("/code/text"),
            priority: f.str("/priority"),
            authored_at: f.time("/authoredOn"),
            occurrence_at: f
                .time("/occurrenceDateTime")
                .or_else(|| f.time("/occurrencePeriod/start")),
            requester_id: f.reference("/requester"),
            performer_ids: f.references("/performer", ""),
            reason_codes: f.codings_all("/reasonCode"),
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
    fn referral_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "ServiceRequest", "id": "a-195900.order-7731", "status": "active",
            "intent": "order", "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "306206005"}], "text": "Referral to cardiology"},
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "performer": [{"reference": "Practitioner/a-195900.Provider-88"}],
            "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]}]});
        let e: ServiceRequestChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        assert_eq!(e.payload.categories[0].code, "3457005");
        assert_eq!(e.payload.performer_ids, vec!["88"]);
        assert_eq!(e.payload.reason_codes[0].code, "I10");
        let mut bad = r.clone();
        bad["status"] = json!("");
        assert!(matches!(
            typed_from_fhir::<ServiceRequestChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "status",
                ..
            })
        ));
    }
}

//! `Coverage`: `com.athenaconnect.events.CoverageChanged` (`schemas/events/CoverageChanged.avsc`), insurance coverage (the proprietary `/insurances` record is not mapped here), read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload};
use crate::TimestampMillis;

/// `com.athenaconnect.events.Coverage`: A US Core Coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct Coverage {
    pub fhir_id: String,
    pub patient_id: String,
    pub status: String,
    #[serde(default)]
    pub type_codes: Vec<Coding>,
    pub subscriber_id: Option<String>,
    #[serde(default)]
    pub relationship: Vec<Coding>,
    #[serde(default)]
    pub payor_ids: Vec<String>,
    #[serde(default)]
    pub payor_names: Vec<String>,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    pub period_start: Option<TimestampMillis>,
    pub period_end: Option<TimestampMillis>,
    pub order: Option<i32>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.CoverageChanged`.
pub type CoverageChanged = FhirChanged<Coverage>;

impl FhirPayload for Coverage {
    const RESOURCE_TYPE: &'static str = "Coverage";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.CoverageChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        // Coverage.class: the group and plan, told apart by class.type's code.
        let class = |kind: &str| {
            f.r.get("class")
                .and_then(serde_json::Value::as_array)
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        Fhir { r: c, ..*f }
                            .codings("/type")
                            .iter()
                            .any(|t| t.code == kind)
                    })
                })
                .map(|c| {
                    let c = Fhir { r: c, ..*f };
                    (c.str("/value"), c.str("/name"))
                })
                .unwrap_or_default()
        };
        let (group_id, group_name) = class("group");
        let (plan_id, plan_name) = class("plan");
        let payor_ids = f.references("/payor", "");
        if payor_ids.is_empty() {
            return Err(f.missing("payor"));
        }
        let payor_names =
            f.r.get("payor")
                .and_then(serde_json::Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| Fhir { r: p, ..*f }.str("/display"))
                        .collect()
                })
                .unwrap_or_default();
        let payload = Coverage {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/beneficiary", "beneficiary")?,
            status: f.req_str("/status", "status")?,
            type_codes: f.codings("/type"),
            subscriber_id: f.str("/subscriberId"),
            relationship: f.codings("/relationship"),
            payor_ids,
            payor_names,
            group_id,
            group_name,
            plan_id,
            plan_name,
            period_start: f.time("/period/start"),
            period_end: f.time("/period/end"),
            order: f.int("/order"),
            last_updated: f.time("/meta/lastUpdated"),
        };
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::fhir::{FhirEvent, test_seen as seen};
    use crate::mapping::typed_from_fhir;
    use serde_json::json;

    #[test]
    fn coverage_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "Coverage", "id": "a-195900.coverage-6610", "status": "active",
            "beneficiary": {"reference": "Patient/a-195900.E-7965"}, "subscriberId": "SYN123456",
            "relationship": {"coding": [{"code": "self"}]},
            "payor": [{"reference": "Organization/a-195900.Organization-881", "display": "Synthetic Health Plan"}],
            "class": [{"type": {"coding": [{"code": "group"}]}, "value": "G-100"},
                      {"type": {"coding": [{"code": "plan"}]}, "value": "P-7", "name": "Synthetic PPO"}],
            "period": {"start": "2025-01-01"}, "order": 1});
        let e: CoverageChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        let p = &e.payload;
        assert_eq!(
            (p.patient_id.as_str(), p.payor_ids.as_slice()),
            ("7965", &["881".to_string()][..])
        );
        assert_eq!(p.payor_names, vec!["Synthetic Health Plan"]);
        assert_eq!(
            (p.group_id.as_deref(), p.plan_name.as_deref()),
            (Some("G-100"), Some("Synthetic PPO"))
        );
        assert_eq!(p.order, Some(1));
        assert_eq!(e.key(), "195900/7965");
        let mut bad = r.clone();
        bad["payor"] = json!([]);
        assert!(matches!(
            typed_from_fhir::<CoverageChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing { field: "payor", .. })
        ));
    }
}

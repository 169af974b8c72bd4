//! `Coverage`: `com.athenaconnect.events.CoverageChanged` (`schemas/events/CoverageChanged.avsc`), insurance coverage, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path. The proprietary `GET /patients/{id}/insurances` record maps to the same event ([`coverage_from_insurance`], decision 0028).

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

/// Entity type of a Coverage event mapped from a proprietary insurance record (the FHIR
/// path's is `coverage`): a different representation, so a different event id, as for patients.
pub const INSURANCE_ENTITY: &str = "insurance";

/// The Coverage event of one proprietary insurance package of `patient` (`GET
/// /patients/{patient}/insurances`, reference §5.6), decision 0028: same schema and topic as
/// the FHIR Coverage, `envelope.entity_type` [`INSURANCE_ENTITY`], `entity_id` and `fhir_id` the
/// athena `insuranceid`, version the record's content hash (athena sends no modification time),
/// so one package state has one event id on every read. `payor_ids` / `plan_id` are the
/// `insurancepackageid`, `order` the `sequencenumber`, `subscriber_id` the `insuranceidnumber`,
/// `group_id` the `policynumber`, the period `issuedate`..`expirationdate`; the relationship is
/// athena's `relationshiptoinsuredid` with no code system (athena's own code list). `status` is
/// `active`: athena lists only the packages in force (a removed one is absent, not cancelled).
/// A record without `insuranceid` or `insurancepackageid` is a [`FhirMapError::Missing`].
pub fn coverage_from_insurance(
    practice: &str,
    patient: &str,
    rec: &serde_json::Value,
    obs: &crate::mapping::Observation,
) -> Result<CoverageChanged, FhirMapError> {
    let r = crate::events::Rec(rec);
    let missing = |field| FhirMapError::Missing {
        resource_type: "Coverage",
        id: r.s(&["insuranceid"]).unwrap_or_default(),
        field,
    };
    let id = r.s(&["insuranceid"]).ok_or_else(|| missing("insuranceid"))?;
    let package = r
        .s(&["insurancepackageid"])
        .ok_or_else(|| missing("insurancepackageid"))?;
    let (json, version) = crate::mapping::canonical(rec);
    let (_, changed) = crate::mapping::athena_version(rec);
    let envelope =
        crate::mapping::fhir_envelope(obs, practice, INSURANCE_ENTITY, &id, &version, changed);
    let day = |k: &str| {
        r.date(&[k])
            .and_then(crate::Date::to_naive)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| TimestampMillis::from(t.and_utc()))
    };
    let name = r.s(&["insuranceplanname", "insurancepackagename"]);
    let payload = Coverage {
        fhir_id: id,
        patient_id: r.s(&["patientid"]).unwrap_or_else(|| patient.to_owned()),
        status: "active".to_owned(),
        type_codes: Vec::new(),
        subscriber_id: r.s(&["insuranceidnumber"]),
        relationship: r
            .s(&["relationshiptoinsuredid"])
            .map(|code| Coding {
                system: None,
                code,
                display: r.s(&["relationshiptoinsured"]),
            })
            .into_iter()
            .collect(),
        payor_ids: vec![package.clone()],
        payor_names: name.clone().into_iter().collect(),
        group_id: r.s(&["policynumber"]),
        group_name: None,
        plan_id: Some(package),
        plan_name: name,
        period_start: day("issuedate"),
        period_end: day("expirationdate"),
        order: r.int(&["sequencenumber"]),
        last_updated: None,
    };
    let original = obs
        .include_original
        .then(|| String::from_utf8(json).expect("serde_json writes UTF-8"));
    Ok(CoverageChanged {
        envelope,
        payload,
        original,
    })
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

    #[test]
    fn proprietary_insurance_maps_to_coverage() {
        let rec = json!({"insuranceid": "802", "patientid": "7965", "insurancepackageid": "881",
            "sequencenumber": "1", "insuranceidnumber": "SYN1", "relationshiptoinsuredid": "1",
            "policynumber": "G-9", "issuedate": "01/01/2026", "insurancepolicyholderlastname": "X"});
        let e = coverage_from_insurance("195900", "7965", &rec, &seen(true)).unwrap();
        let p = &e.payload;
        assert_eq!((e.envelope.entity_type.as_str(), e.envelope.entity_id.as_str()), ("insurance", "802"));
        assert_eq!((p.payor_ids.as_slice(), p.order), (&["881".to_string()][..], Some(1)));
        assert_eq!((p.subscriber_id.as_deref(), p.group_id.as_deref()), (Some("SYN1"), Some("G-9")));
        assert_eq!(p.relationship[0].system, None);
        assert_eq!(p.period_start, Some(TimestampMillis(1_767_225_600_000)));
        assert_eq!(e.key(), "195900/7965");
        assert!(e.original.is_some());
        // Same record, same id; a changed record, a new one.
        let again = coverage_from_insurance("195900", "7965", &rec, &seen(false)).unwrap();
        assert_eq!(again.envelope.event_id, e.envelope.event_id);
        let mut changed = rec.clone();
        changed["sequencenumber"] = json!("2");
        let c = coverage_from_insurance("195900", "7965", &changed, &seen(true)).unwrap();
        assert_ne!(c.envelope.event_id, e.envelope.event_id);
        let mut bad = rec.clone();
        bad.as_object_mut().unwrap().remove("insurancepackageid");
        assert!(matches!(
            coverage_from_insurance("195900", "7965", &bad, &seen(true)),
            Err(FhirMapError::Missing { field: "insurancepackageid", .. })
        ));
    }
}

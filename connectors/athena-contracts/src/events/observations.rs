//! `Observation`: `com.athenaconnect.events.ObservationChanged` (`schemas/events/ObservationChanged.avsc`), vital signs and laboratory results (select by `categories`), read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload, Quantity};
use crate::TimestampMillis;

/// `com.athenaconnect.events.ObservationComponent`: One component of a panel observation (e.g. systolic and diastolic of a blood pressure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct ObservationComponent {
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub value_quantity: Option<Quantity>,
    pub value_string: Option<String>,
    #[serde(default)]
    pub value_codes: Vec<Coding>,
}

/// `com.athenaconnect.events.Observation`: A US Core vital-sign or laboratory Observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct Observation {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub categories: Vec<Coding>,
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub code_text: Option<String>,
    pub value_quantity: Option<Quantity>,
    pub value_string: Option<String>,
    #[serde(default)]
    pub value_codes: Vec<Coding>,
    pub data_absent_reason: Option<String>,
    #[serde(default)]
    pub interpretation: Vec<Coding>,
    pub reference_range_low: Option<Quantity>,
    pub reference_range_high: Option<Quantity>,
    #[serde(default)]
    pub components: Vec<ObservationComponent>,
    pub effective_at: Option<TimestampMillis>,
    pub issued_at: Option<TimestampMillis>,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ObservationChanged`.
pub type ObservationChanged = FhirChanged<Observation>;

impl FhirPayload for Observation {
    const RESOURCE_TYPE: &'static str = "Observation";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.ObservationChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let components =
            f.r.get("component")
                .and_then(serde_json::Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let c = Fhir { r: c, ..*f };
                            ObservationComponent {
                                codes: c.codings("/code"),
                                value_quantity: c.quantity("/valueQuantity"),
                                value_string: c.str("/valueString"),
                                value_codes: c.codings("/valueCodeableConcept"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
        let payload = Observation {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.reference("/encounter"),
            status: f.req_str("/status", "status")?,
            categories: f.codings_all("/category"),
            codes: f.req_codings("/code", "code.coding")?,
            code_text: f.str("/code/text"),
            value_quantity: f.quantity("/valueQuantity"),
            value_string: f.str("/valueString"),
            value_codes: f.codings("/valueCodeableConcept"),
            data_absent_reason: f.first_code("/dataAbsentReason"),
            interpretation: f.codings_all("/interpretation"),
            reference_range_low: f.quantity("/referenceRange/0/low"),
            reference_range_high: f.quantity("/referenceRange/0/high"),
            components,
            effective_at: f
                .time("/effectiveDateTime")
                .or_else(|| f.time("/effectivePeriod/start"))
                .or_else(|| f.time("/effectiveInstant")),
            issued_at: f.time("/issued"),
            performer_ids: f.references("/performer", ""),
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

    fn vital(id: &str, loinc: &str, value: f64, unit: &str) -> serde_json::Value {
        json!({"resourceType": "Observation", "id": id,
            "meta": {"lastUpdated": "2025-11-24T16:00:00.250Z"},
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs", "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": "vital"},
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "encounter": {"reference": "Encounter/a-195900.encounter-1042"},
            "effectiveDateTime": "2025-11-24T10:00:00-05:00",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    }

    #[test]
    fn us_core_vitals_and_labs_map() {
        for (loinc, value, unit) in [
            ("8867-4", 72.0, "/min"),
            ("8480-6", 128.0, "mm[Hg]"),
            ("29463-7", 81.6, "kg"),
        ] {
            let r = vital(&format!("a-195900.vitals-1042-{loinc}"), loinc, value, unit);
            let e: ObservationChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
            let p = &e.payload;
            assert_eq!(p.codes[0].code, loinc);
            assert_eq!(p.codes[0].system.as_deref(), Some("http://loinc.org"));
            let q = p.value_quantity.as_ref().unwrap();
            assert_eq!((q.value, q.code.as_deref()), (value, Some(unit)));
            assert_eq!(q.system.as_deref(), Some("http://unitsofmeasure.org"));
            assert_eq!(p.categories[0].code, "vital-signs");
            assert_eq!(
                (p.patient_id.as_str(), p.encounter_id.as_deref()),
                ("7965", Some("1042"))
            );
            // 10:00 Eastern standard time is 15:00 UTC.
            assert_eq!(p.effective_at, Some(TimestampMillis(1_763_996_400_000)));
            assert_eq!(p.last_updated, Some(TimestampMillis(1_764_000_000_250)));
            assert_eq!(
                e.envelope.changed_at,
                Some(TimestampMillis(1_764_000_000_000))
            );
            assert_eq!(e.key(), "195900/7965");
            assert_eq!(e.original, Some(r.to_string()));
            // The same version through the untyped mapper: the same event id.
            let untyped = crate::mapping::resource_from_fhir("195900", &r, &seen(false)).unwrap();
            assert_eq!(e.envelope.event_id, untyped.envelope.event_id);
            assert_eq!(e.envelope.entity_type, "observation");
        }
        let lab = json!({"resourceType": "Observation", "id": "a-195900.labresult-1083590-2345-7",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose [Mass/volume] in Serum or Plasma"}]},
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "effectivePeriod": {"start": "2025-11-24"},
            "valueQuantity": {"value": 182, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            "interpretation": [{"coding": [{"code": "H"}]}],
            "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}}],
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}]});
        let e: ObservationChanged = typed_from_fhir("195900", &lab, &seen(false)).unwrap();
        let p = &e.payload;
        assert_eq!(p.categories[0].code, "laboratory");
        assert_eq!(p.value_quantity.as_ref().map(|q| q.value), Some(182.0));
        assert_eq!(p.reference_range_high.as_ref().map(|q| q.value), Some(99.0));
        assert_eq!(p.interpretation[0].code, "H");
        assert_eq!(p.components[0].codes[0].code, "8480-6");
        assert_eq!(p.effective_at, Some(TimestampMillis(1_763_942_400_000)));
        assert_eq!(e.original, None, "PHI minimisation drops the original");
        // No lastUpdated: a content hash, stable across reads.
        let again: ObservationChanged = typed_from_fhir("195900", &lab, &seen(false)).unwrap();
        assert_eq!(e.envelope.event_id, again.envelope.event_id);
    }

    #[test]
    fn bad_observations_are_typed_errors() {
        let good = vital("a-195900.vitals-1", "8867-4", 60.0, "/min");
        type Breaker = fn(&mut serde_json::Value);
        let cases: [(&str, Breaker, &str); 4] = [
            (
                "status",
                |r| {
                    r.as_object_mut().unwrap().remove("status");
                },
                "status",
            ),
            (
                "code",
                |r| r["code"] = json!({"text": "no coding"}),
                "code.coding",
            ),
            (
                "subject",
                |r| {
                    r.as_object_mut().unwrap().remove("subject");
                },
                "subject",
            ),
            ("id", |r| r["id"] = json!(""), "id"),
        ];
        for (what, break_it, field) in cases {
            let mut r = good.clone();
            break_it(&mut r);
            let err = typed_from_fhir::<ObservationChanged>("195900", &r, &seen(true)).unwrap_err();
            assert!(
                matches!(err, FhirMapError::Missing { field: f, .. } if f == field),
                "{what}: {err}"
            );
            assert_eq!(err.class(), connector_core::ErrorClass::Permanent);
        }
        let mut group = good.clone();
        group["subject"] = json!({"reference": "Group/a-1.C-195900"});
        assert!(matches!(
            typed_from_fhir::<ObservationChanged>("195900", &group, &seen(true)),
            Err(FhirMapError::BadPatientReference { .. })
        ));
        assert!(matches!(
            typed_from_fhir::<ObservationChanged>(
                "195900",
                &json!({"resourceType": "Condition", "id": "x"}),
                &seen(true)
            ),
            Err(FhirMapError::WrongType {
                expected: "Observation",
                ..
            })
        ));
        assert_eq!(
            typed_from_fhir::<ObservationChanged>("195900", &json!([1, 2]), &seen(true)),
            Err(FhirMapError::NotAResource)
        );
    }
}

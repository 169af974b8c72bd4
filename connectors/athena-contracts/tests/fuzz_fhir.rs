//! Fuzzing FHIR resources to events: `patient_from_fhir`, `resource_from_fhir` and
//! `fhir_version`, with arbitrary JSON and with FHIR-ish resources (real and garbage
//! `resourceType`s and ids, `meta.lastUpdated` garbage, missing ids, wrong types in `name`,
//! `telecom`, `address`, `subject.reference`). Properties: nothing panics; a resource either
//! maps or gives `None`; every mapped event encodes with its bundled Avro schema and decodes
//! back; the version is stable. Bounded by `PROPTEST_CASES` (docs/testing.md).

mod common;

use athena_contracts::mapping::{Observation, fhir_version, patient_from_fhir, resource_from_fhir};
use athena_contracts::{SourceKind, TimestampMillis};
use connector_core::ids::Version;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use common::{any_key, config, iso_datetime, json as any_json, round_trip, scalar, text};

fn fhir_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => ("-?[0-9]{1,8}", "E|Practice|encounter|[A-Za-z]{0,6}", "[^/]{0,12}")
            .prop_map(|(p, k, i)| Value::String(format!("a-{p}.{k}-{i}"))),
        1 => Just(json!("a-195900.E-42")),
        1 => text().prop_map(Value::String),
        1 => scalar(),
    ]
}

fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (".{0,8}", fhir_id()).prop_map(|(t, id)| match id {
            Value::String(id) => Value::String(format!("{t}/{id}")),
            other => other,
        }),
        1 => Just(json!("Patient/a-1.E-5/_history/2")),
        1 => Just(json!("https://example.invalid/fhir/r4/Patient/a-1.E-5")),
        1 => scalar(),
    ]
}

fn last_updated() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => iso_datetime().prop_map(Value::String),
        1 => Just(json!("+262143-12-31T23:59:59Z")),
        1 => Just(json!("9999-12-31T23:59:59-23:59")),
        1 => Just(json!("0000-01-01T00:00:00+23:59")),
        1 => scalar(),
    ]
}

/// A FHIR-ish resource: the fields the mappers read, each present, absent or of a wrong type.
fn fhir_resource() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        prop::collection::vec(
            (
                prop::option::of(scalar()),
                prop::option::of(prop::collection::vec(scalar(), 0..3))
            )
                .prop_map(|(f, g)| json!({"family": f, "given": g})),
            0..3
        )
        .prop_map(Value::Array),
        scalar(),
    ]
    .boxed();
    let telecom = prop::collection::vec(
        (
            "phone|email|fax|.{0,4}",
            "home|mobile|work|.{0,4}",
            scalar(),
        )
            .prop_map(|(s, u, v)| json!({"system": s, "use": u, "value": v})),
        0..4,
    )
    .prop_map(Value::Array)
    .boxed();
    let address = prop::collection::vec(
        (
            prop::collection::vec(scalar(), 0..3),
            scalar(),
            scalar(),
            scalar(),
        )
            .prop_map(|(l, c, s, z)| json!({"line": l, "city": c, "state": s, "postalCode": z})),
        0..2,
    )
    .prop_map(Value::Array)
    .boxed();
    (
        prop_oneof![
            Just(json!("Patient")),
            Just(json!("Encounter")),
            Just(json!("Condition")),
            ".{0,10}".prop_map(Value::String),
            scalar()
        ]
        .boxed(),
        prop::option::of(fhir_id().boxed()),
        prop::option::of(last_updated().boxed()),
        prop::option::of(name),
        prop::option::of(telecom),
        prop::option::of(address),
        prop::option::of(reference().boxed()),
        prop::option::of(scalar().boxed()),
        prop::option::of(prop_oneof![common::any_date().prop_map(Value::String), scalar()].boxed()),
        prop::collection::vec((any_key(), any_json(any_key())), 0..3).boxed(),
    )
        .prop_map(
            |(ty, id, lu, name, tel, addr, subject, gender, birth, extra)| {
                let mut r: Map<String, Value> = extra.into_iter().collect();
                r.insert("resourceType".into(), ty);
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        r.insert(k.into(), v);
                    }
                };
                put("id", id);
                put("meta", lu.map(|l| json!({"lastUpdated": l})));
                put("name", name);
                put("telecom", tel);
                put("address", addr);
                put("subject", subject.map(|s| json!({"reference": s})));
                put("gender", gender);
                put("birthDate", birth);
                Value::Object(r)
            },
        )
}

fn obs() -> Observation {
    Observation {
        source: SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original: true,
    }
}

fn check(r: &Value) -> Result<(), TestCaseError> {
    let (version, at) = fhir_version(r);
    prop_assert_eq!(fhir_version(r).0, version.clone(), "version is stable");
    if let Version::ChangedAt(ms) = version {
        prop_assert_eq!(ms % 1000, 0, "whole seconds");
        prop_assert_eq!(at.map(|t| TimestampMillis::from(t).0), Some(ms));
    }
    if let Some(p) = patient_from_fhir("195900", r, &obs()) {
        prop_assert!(!p.payload.patient_id.is_empty());
        prop_assert_eq!(&p.envelope.entity_id, &p.payload.patient_id);
        round_trip(&p)?;
    }
    let non_empty = |k: &str| r[k].as_str().is_some_and(|s| !s.is_empty());
    match resource_from_fhir("195900", r, &obs()) {
        Some(e) => {
            prop_assert_eq!(Some(e.fhir_id.as_str()), r["id"].as_str());
            prop_assert!(e.patient_id.as_deref() != Some(""));
            round_trip(&e)?;
        }
        None => prop_assert!(!non_empty("resourceType") || !non_empty("id")),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary JSON through the FHIR mappers.
    #[test]
    fn any_json_maps_or_is_none(r in any_json(any_key())) {
        check(&r)?;
    }

    /// FHIR-ish resources with garbage in the fields the mappers read.
    #[test]
    fn fhir_resources_map_or_are_none(r in fhir_resource()) {
        check(&r)?;
    }
}

/// Edges of `meta.lastUpdated` kept as plain regression tests.
#[test]
fn last_updated_edges() {
    for lu in [
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "2025-01-15T15:00:05.999999999+00:00",
        "garbage",
    ] {
        let r = json!({"resourceType": "Encounter", "id": "x", "meta": {"lastUpdated": lu}});
        let e = resource_from_fhir("1", &r, &obs()).expect("has type and id");
        round_trip(&e).unwrap();
    }
}

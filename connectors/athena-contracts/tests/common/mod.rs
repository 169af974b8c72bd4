//! Generators shared by the fuzz targets of this crate (`fuzz_athena.rs`, `fuzz_fhir.rs`) and
//! fhir-push's `fuzz_webhook.rs` (included by path): arbitrary JSON, athena-flavoured text (odd
//! dates, DST gaps, huge strings), the Avro round trip of a mapped event, and the case count.

#![allow(dead_code)] // each test binary uses a different subset

use connector_core::avro::{AvroRecord, Encoder, decode_body, unframe};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

#[path = "../../../connector-core/tests/common/cases.rs"]
mod cases;
#[allow(unused_imports)] // `sample` is for fhir-push's target, which includes this file
pub use cases::{config, sample};

/// The event encodes with its bundled schema (the producer's path) and decodes back equal, so
/// no mapped record can fail later at the producer.
pub fn round_trip<T: AvroRecord>(ev: &T) -> Result<(), TestCaseError> {
    let bytes = Encoder::<T>::with_id(1)
        .and_then(|e| e.encode(ev))
        .map_err(|e| TestCaseError::fail(format!("{}: encode: {e}", T::SCHEMA_NAME)))?;
    let (_, body) = unframe(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = decode_body(body)
        .map_err(|e| TestCaseError::fail(format!("{}: decode: {e}", T::SCHEMA_NAME)))?;
    prop_assert_eq!(
        serde_json::to_value(ev).ok(),
        serde_json::to_value(&back).ok()
    );
    Ok(())
}

/// A date-time string in athena's `MM/DD/YYYY HH:MM[:SS]` shape with out-of-range parts
/// (`02/30/2024 25:61:00`), extreme years, and US Eastern DST gap/overlap hours.
pub fn athena_datetime() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u32..=13,
            0u32..=32,
            0i64..=10_000,
            0u32..=25,
            0u32..=61,
            0u32..=61
        )
            .prop_map(|(m, d, y, h, mi, s)| format!("{m:02}/{d:02}/{y:04} {h:02}:{mi:02}:{s:02}")),
        (0u32..=13, 0u32..=32, any::<i64>(), 0u32..=25, 0u32..=61)
            .prop_map(|(m, d, y, h, mi)| format!("{m}/{d}/{y} {h}:{mi}")),
        // Spring-forward (2nd Sunday of March) and fall-back (1st Sunday of November) hours.
        (1900i32..2200, 8u32..=14, 0u32..=4, 0u32..60)
            .prop_map(|(y, d, h, m)| format!("03/{d:02}/{y} {h:02}:{m:02}:00")),
        (1900i32..2200, 1u32..=7, 0u32..=4, 0u32..60)
            .prop_map(|(y, d, h, m)| format!("11/{d:02}/{y} {h:02}:{m:02}:30")),
        // The ends of chrono's range.
        prop::sample::select(vec![
            "12/31/262142 23:59:59",
            "12/31/262143 23:59:59",
            "01/01/-262143 00:00:00",
            "01/01/-262144 00:00:00",
            "01/01/0000 00:00:00",
            "02/29/2023 12:00:00",
            "02/30/2024 25:61:00",
            "  01/15/2025 10:00:05  ",
        ])
        .prop_map(str::to_owned),
    ]
}

/// An ISO 8601 / RFC 3339 timestamp with random parts and offsets (some invalid).
pub fn iso_datetime() -> impl Strategy<Value = String> {
    (
        -1i64..=10_000,
        0u32..=13,
        0u32..=32,
        0u32..=25,
        0u32..=61,
        0u32..=61,
        prop::option::of(0u32..1_000_000_000),
        prop_oneof![
            Just("Z".to_string()),
            (-30i32..=30, 0u32..=99).prop_map(|(h, m)| format!("{h:+03}:{m:02}")),
            Just(String::new()),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// A date in athena's `MM/DD/YYYY` or ISO `YYYY-MM-DD` shape, valid or not.
pub fn any_date() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..=13, 0u32..=32, -10i64..=300_000).prop_map(|(m, d, y)| format!("{m:02}/{d:02}/{y}")),
        (-10i64..=300_000, 0u32..=13, 0u32..=32).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
    ]
}

/// Text as athena might send it, or not: dates, ids, unicode, empty and (rarely) huge strings.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => ".{0,24}",
        2 => athena_datetime(),
        2 => iso_datetime(),
        2 => any_date(),
        2 => "[0-9]{1,12}",
        1 => Just(String::new()),
        1 => "[ \t\n]{0,4}",
        // A huge value: the mapper copies and hashes it but must not blow up.
        1 => (0usize..=512 * 1024, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Any JSON scalar, numbers at their extremes included.
pub fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels deep, with keys from `keys`.
pub fn json(keys: impl Strategy<Value = String> + Clone + 'static) -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(3, 24, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A random key: mostly lower-case words, sometimes anything.
pub fn any_key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![3 => "[a-z]{1,12}", 1 => ".{0,8}"]
}

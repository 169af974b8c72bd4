//! Fuzzing what the webhook receiver takes from outside: notification bodies
//! ([`parse_bundle`], then each event's focus reference, identifier, dedup key and topic code)
//! and signature headers ([`signature::verify`] and both adapters' `verify` over a `HeaderMap`),
//! with arbitrary bytes and with structure-aware input: `Bundle`s of R4B `SubscriptionStatus`
//! and R4 `Parameters` with random events, focus references (relative, versioned, absolute,
//! identifier-only, garbage) and wrong types; correct signatures with mutations. Properties:
//! nothing panics; a bad body is `BadNotification` (Permanent); a signature verifies only when
//! its hex decodes to the body's HMAC. Written against the API on main (the push branch
//! rewrites these files; the FHIR reference parser it adds gets its target there). The JSON
//! generators are athena-contracts' (`tests/common/mod.rs`, included by path). Bounded by
//! `PROPTEST_CASES` (docs/testing.md).

#[path = "../../athena-contracts/tests/common/mod.rs"]
mod common;

use connector_core::{ErrorClass, Secret};
use fhir_push::Error;
use fhir_push::adapter::{AthenaAdapter, PushAdapter};
use fhir_push::notification::{Focus, parse_bundle};
use fhir_push::r4_backport::R4BackportAdapter;
use fhir_push::signature::{self, SIGNATURE_HEADER, SignatureError};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::Sha256;

use common::{any_key, config, iso_datetime, json as any_json, sample, scalar};

const KINDS: &[&str] = &[
    "handshake",
    "heartbeat",
    "event-notification",
    "query-status",
    "query-event",
];

/// A focus reference: relative, versioned, absolute, contained, empty or not a string at all.
fn reference() -> BoxedStrategy<Value> {
    let ty = prop_oneof![
        3 => prop::sample::select(vec!["Patient", "Encounter", "Appointment", "Condition"]),
        1 => Just(""),
    ]
    .prop_map(str::to_owned);
    let id = prop_oneof!["a-[0-9]{1,6}\\.[A-Za-z]{1,10}-[0-9]{1,6}", ".{0,10}"];
    prop_oneof![
        3 => (ty.clone(), id.clone()).prop_map(|(t, i)| json!(format!("{t}/{i}"))),
        2 => (ty.clone(), id.clone(), "[0-9]{1,3}")
            .prop_map(|(t, i, v)| json!(format!("{t}/{i}/_history/{v}"))),
        1 => (ty, id).prop_map(|(t, i)| json!(format!("https://example.invalid/fhir/r4/{t}/{i}"))),
        1 => "#?[a-z/]{0,8}".prop_map(|s| json!(s)),
        1 => scalar(),
    ]
    .boxed()
}

fn focus() -> BoxedStrategy<Value> {
    let identifier = (
        prop_oneof![
            ("[a-z]{0,10}", "[0-9]{0,7}")
                .prop_map(|(e, p)| json!(format!("urn:athenahealth:athenanet:{e}:{p}"))),
            Just(json!("urn:athenahealth:athenanet:")),
            scalar(),
        ],
        scalar(),
    )
        .prop_map(|(system, value)| json!({"system": system, "value": value}));
    (
        prop::option::weighted(0.9, reference()),
        prop::option::of(identifier),
    )
        .prop_map(|(r, i)| {
            let mut f = serde_json::Map::new();
            if let Some(r) = r {
                f.insert("reference".into(), r);
            }
            if let Some(i) = i {
                f.insert("identifier".into(), i);
            }
            Value::Object(f)
        })
        .boxed()
}

fn kind() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(KINDS).prop_map(|k| json!(k)),
        1 => scalar(),
    ]
    .boxed()
}

/// An R4B `SubscriptionStatus` (what athena sends) with random events.
fn subscription_status() -> BoxedStrategy<Value> {
    let event = (
        prop::option::of(scalar()),
        prop::option::of(prop_oneof![any::<u64>().prop_map(|n| json!(n)), scalar()]),
        prop::option::of(prop_oneof![iso_datetime().prop_map(|t| json!(t)), scalar()]),
        prop::option::weighted(0.9, prop_oneof![4 => focus(), 1 => scalar()]),
    )
        .prop_map(|(id, n, ts, focus)| {
            json!({"id": id, "eventNumber": n, "timestamp": ts, "focus": focus})
        });
    (
        kind(),
        prop_oneof![
            4 => prop::collection::vec(event, 0..6).prop_map(Value::Array),
            1 => scalar(),
        ],
        prop_oneof![
            Just(json!({"reference": "Subscription/abc"})),
            scalar(),
            any_json(any_key()),
        ],
        prop_oneof![
            "https://[a-z./]{0,30}/[A-Za-z.]{0,16}".prop_map(|t| json!(t)),
            scalar()
        ],
    )
        .prop_map(|(ty, events, sub, topic)| {
            json!({"resourceType": "SubscriptionStatus", "type": ty, "notificationEvent": events,
                "subscription": sub, "topic": topic})
        })
        .boxed()
}

/// An R4 backport `Parameters` notification with random parameters and parts.
fn parameters() -> BoxedStrategy<Value> {
    let value_key = prop_oneof![
        Just("valueCode"),
        Just("valueReference"),
        Just("valueString"),
        Just("valueInstant"),
        Just("valueCanonical"),
        Just("nothing"),
    ];
    let part = (
        prop::sample::select(vec!["focus", "event-number", "timestamp", "other"]),
        value_key.clone(),
        prop_oneof![focus(), scalar(), iso_datetime().prop_map(|t| json!(t))],
    )
        .prop_map(|(n, k, v)| json!({"name": n, k: v}));
    let type_param = (value_key.clone(), kind()).prop_map(|(k, v)| json!({"name": "type", k: v}));
    let param = prop_oneof![
        type_param.clone(),
        any_json(any_key()).prop_map(|v| json!({"name": "subscription", "valueReference": v})),
        scalar().prop_map(|v| json!({"name": "topic", "valueCanonical": v})),
        prop::collection::vec(part, 0..4)
            .prop_map(|p| json!({"name": "notification-event", "part": p})),
        any_json(any_key()),
    ];
    prop_oneof![
        4 => (prop::option::weighted(0.8, type_param), prop::collection::vec(param, 0..6))
            .prop_map(|(t, mut p)| {
                p.extend(t);
                json!({"resourceType": "Parameters", "parameter": p})
            }),
        1 => scalar().prop_map(|p| json!({"resourceType": "Parameters", "parameter": p})),
    ]
    .boxed()
}

/// A notification `Bundle` around either status shape, with AuditEvent-like extra entries.
fn bundle() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            4 => Just(json!("Bundle")),
            1 => scalar(),
        ],
        prop_oneof![3 => subscription_status(), 3 => parameters(), 1 => any_json(any_key())],
        prop::collection::vec(any_json(any_key()), 0..2),
    )
        .prop_map(|(rt, first, rest)| {
            let mut entries = vec![json!({"resource": first})];
            entries.extend(rest.into_iter().map(|r| json!({"resource": r})));
            json!({"resourceType": rt, "type": "history", "entry": entries})
        })
}

/// Checks everything the receiver does with a parsed notification.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_bundle(body) {
        Ok(n) => {
            let _ = n.topic_code();
            for (i, e) in n.events.iter().enumerate() {
                let _ = n.dedup_key(i);
                check_focus(&e.focus)?;
            }
            prop_assert!(n.dedup_key(n.events.len()).is_none());
        }
        Err(e) => {
            prop_assert!(matches!(e, Error::BadNotification(_)), "{}", e);
            prop_assert_eq!(e.class(), ErrorClass::Permanent);
        }
    }
    Ok(())
}

fn check_focus(f: &Focus) -> Result<(), TestCaseError> {
    // A parsed reference names a real type and id (never `_history`), and printing it gives
    // its `Type/id` appears in what was parsed; anything else is a typed error, never a panic.
    if let Ok(Some(r)) = f.fhir_ref() {
        let raw = f.reference.as_deref().unwrap_or_default();
        prop_assert!(!r.resource_type.is_empty() && !r.id.is_empty());
        prop_assert!(!r.resource_type.contains('/') && !r.id.contains('/'));
        prop_assert!(
            r.resource_type != "_history" && r.id != "_history",
            "{}",
            raw
        );
        prop_assert!(raw.contains(&r.relative()), "{} -> {}", raw, r);
    }
    if let Some((entity, practice, value)) = f.athena_identifier() {
        let sys = f.identifier_system.as_deref().unwrap_or_default();
        prop_assert_eq!(
            sys,
            format!("urn:athenahealth:athenanet:{entity}:{practice}")
        );
        prop_assert_eq!(Some(value), f.identifier_value.as_deref());
    }
    Ok(())
}

fn mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// The bytes a header's hex part denotes, read pair by pair as `verify` documents it.
fn denoted(header: &str) -> Option<Vec<u8>> {
    let (_, hex) = header.trim().split_once('=')?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One mutation of a correct `sha256=<hex>` header.
#[derive(Debug, Clone)]
enum SigEdit {
    Upper,
    Pad(String, String),
    FlipDigit(prop::sample::Index),
    Truncate(prop::sample::Index),
    Append(String),
    Method(String),
}

fn sig_edit() -> impl Strategy<Value = SigEdit> {
    prop_oneof![
        Just(SigEdit::Upper),
        ("[ \t]{0,3}", "[ \t]{0,3}").prop_map(|(a, b)| SigEdit::Pad(a, b)),
        any::<prop::sample::Index>().prop_map(SigEdit::FlipDigit),
        any::<prop::sample::Index>().prop_map(SigEdit::Truncate),
        ".{1,4}".prop_map(SigEdit::Append),
        "sha1|SHA256|sha-256|sha512|".prop_map(SigEdit::Method),
    ]
}

fn apply_sig(sig: &str, e: &SigEdit) -> String {
    match e {
        SigEdit::Upper => sig.to_ascii_uppercase(),
        SigEdit::Pad(a, b) => format!("{a}{sig}{b}"),
        SigEdit::FlipDigit(i) => {
            let mut b = sig.as_bytes().to_vec();
            let at = 7 + i.index(b.len() - 7);
            b[at] = if b[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).expect("ASCII")
        }
        SigEdit::Truncate(i) => sig[..i.index(sig.len())].to_string(),
        SigEdit::Append(s) => format!("{sig}{s}"),
        SigEdit::Method(m) => format!("{m}={}", &sig[7..]),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes as a notification body.
    #[test]
    fn any_body_parses_or_is_bad_notification(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_body(&body)?;
    }

    /// Any JSON as a notification body.
    #[test]
    fn any_json_parses_or_is_bad_notification(v in any_json(any_key())) {
        check_body(v.to_string().as_bytes())?;
    }

    /// Structure-aware notification bundles (both shapes), compact and pretty-printed.
    #[test]
    fn notification_bundles_parse_or_are_bad(b in bundle()) {
        check_body(b.to_string().as_bytes())?;
        let pretty = serde_json::to_vec_pretty(&b).expect("serialises");
        check_body(&pretty)?;
    }

    /// FHIR references on their own: `type_and_id` never panics and names the tail.
    #[test]
    fn focus_references(r in prop_oneof![".{0,40}", reference().prop_map(|v| v.to_string())]) {
        check_focus(&Focus { reference: Some(r), ..Focus::default() })?;
    }

    /// Any header against any body: never panics; verifies only when it denotes the HMAC.
    #[test]
    fn any_signature_header(
        secret in prop::collection::vec(any::<u8>(), 0..48),
        header in prop::option::of(prop_oneof![".{0,80}", "sha256=[0-9a-fA-F+]{60,68}"]),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        match signature::verify(&secret, header.as_deref(), &body) {
            Ok(()) => prop_assert_eq!(denoted(header.as_deref().unwrap_or_default()), Some(mac(&secret, &body))),
            Err(SignatureError::Missing) => prop_assert!(header.is_none()),
            Err(_) => {}
        }
    }

    /// A correct signature, edited: case and surrounding whitespace still verify; a changed
    /// digit is a mismatch; a truncated, extended or re-labelled one is refused.
    #[test]
    fn edited_signatures(
        secret in "[ -~]{16,40}",
        body in prop::collection::vec(any::<u8>(), 0..256),
        edit in sig_edit(),
    ) {
        let good = signature::sign(secret.as_bytes(), &body);
        prop_assert_eq!(signature::verify(secret.as_bytes(), Some(&good), &body), Ok(()));
        let header = apply_sig(&good, &edit);
        let got = signature::verify(secret.as_bytes(), Some(&header), &body);
        match &edit {
            SigEdit::Upper | SigEdit::Pad(..) => prop_assert_eq!(got, Ok(())),
            SigEdit::FlipDigit(_) => prop_assert_eq!(got, Err(SignatureError::Mismatch)),
            SigEdit::Method(m) if m.eq_ignore_ascii_case("sha256") => prop_assert_eq!(got, Ok(())),
            SigEdit::Truncate(_) | SigEdit::Append(_) | SigEdit::Method(_) => {
                prop_assert!(got.is_err() || header.trim() == good, "{:?} accepted", header)
            }
        }
        // Through the athena adapter's header map (non-UTF-8 and control bytes included).
        let adapter = AthenaAdapter::new(Secret::new(secret.clone()));
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&header) {
            headers.insert(SIGNATURE_HEADER, v);
            // A header value is read as visible ASCII only: anything else (e.g. a trailing
            // U+0085, which `str::trim` in `verify` would strip) is refused as malformed.
            let want = if header.is_ascii() { got } else { Err(SignatureError::Malformed) };
            prop_assert_eq!(adapter.verify(&headers, &body), want);
        }
    }

    /// Raw header bytes through both adapters.
    #[test]
    fn raw_header_bytes_through_the_adapters(
        raw in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let secret = "0123456789abcdef-secret";
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            headers.insert(SIGNATURE_HEADER, v.clone());
            headers.insert(http::header::AUTHORIZATION, v);
        }
        let athena = AthenaAdapter::new(Secret::new(secret));
        let backport = R4BackportAdapter::new(Secret::new(secret), "https://example.invalid/t");
        let a = athena.verify(&headers, &body);
        let b = backport.verify(&headers, &body);
        // Random bytes are never athena's signature of the body.
        prop_assert!(a.is_err());
        let want = format!("Bearer {secret}").into_bytes();
        prop_assert!(b.is_err() || raw == want);
    }
}

/// The bundle generator reaches past the shape checks: of a fixed sample, some bundles parse
/// with events whose focus names a type and id, and some are refused.
#[test]
fn bundles_reach_the_event_parsers() {
    let (mut with_focus, mut refused) = (0, 0);
    for b in sample(&bundle(), 300) {
        match parse_bundle(b.to_string().as_bytes()) {
            Ok(n) => {
                with_focus += usize::from(
                    n.events
                        .iter()
                        .any(|e| matches!(e.focus.fhir_ref(), Ok(Some(_)))),
                )
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("bundle sample: {with_focus} with a typed focus, {refused} refused");
    assert!(
        with_focus >= 10 && refused >= 20,
        "{with_focus} / {refused}"
    );
}

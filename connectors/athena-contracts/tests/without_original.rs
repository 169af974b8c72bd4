//! `connector_core::avro::without_optional_field` against a real event schema: dropping
//! `original` from an encoded event keeps every other field (the changed-data source's retry
//! of an event Kafka refused as too large).

use athena_contracts::{EventEnvelope, Patient, PatientChanged, SourceKind, TimestampMillis};
use connector_core::avro::{Encoder, decode_body, unframe, without_optional_field};

#[test]
fn an_optional_field_is_dropped_and_the_rest_kept() {
    let ev = PatientChanged {
        envelope: EventEnvelope {
            event_id: "e1".into(),
            source: SourceKind::ChangedData,
            practice_id: "195900".into(),
            department_id: Some("1".into()),
            entity_type: "patient".into(),
            entity_id: "7".into(),
            event_name: None,
            changed_at: Some(TimestampMillis(5)),
            observed_at: TimestampMillis(6),
            snapshot: false,
            replayed: true,
        },
        payload: Patient {
            patient_id: "7".into(),
            last_name: Some("Sampleton".into()),
            ..Patient::default()
        },
        original: Some(format!("{{\"x\":\"{}\"}}", "y".repeat(500))),
    };
    let name = "com.athenaconnect.events.PatientChanged";
    let framed = Encoder::<PatientChanged>::with_id(77)
        .unwrap()
        .encode(&ev)
        .unwrap();
    let slim = without_optional_field(&framed, name, "original")
        .unwrap()
        .unwrap();
    assert!(slim.len() + 500 < framed.len());
    let (id, body) = unframe(&slim).unwrap();
    assert_eq!(id, 77);
    let back = decode_body::<PatientChanged>(body).unwrap();
    assert_eq!(
        back,
        PatientChanged {
            original: None,
            ..ev.clone()
        }
    );
    // Already null, or no such optional field: nothing to do.
    assert_eq!(
        without_optional_field(&slim, name, "original").unwrap(),
        None
    );
    assert_eq!(
        without_optional_field(&framed, name, "payload").unwrap(),
        None
    );
    assert_eq!(without_optional_field(&framed, name, "nope").unwrap(), None);
}

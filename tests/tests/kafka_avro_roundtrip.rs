//! Typed Avro events through a real broker and registry: produce with our producer and encoder,
//! consume with a consumer group, decode, compare field by field. And the ways a message can be
//! undecodable, each reported as a typed error (the sink will dead-letter them), never a panic.

use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::*;
use connector_core::avro::{Encoder, frame};
use connector_core::error::{CoreError, ErrorClass};
use connector_core::ids::{Version, event_id};
use rdkafka::Message;
use rdkafka::producer::FutureRecord;

fn patient_event(i: usize) -> PatientChanged {
    let id = format!("{}", 1000 + i);
    PatientChanged {
        envelope: EventEnvelope {
            event_id: event_id(
                "patient",
                "195900",
                &id,
                &Version::ChangedAt(1_764_000_000_000 + i as i64),
            ),
            source: SourceKind::ChangedData,
            practice_id: "195900".into(),
            department_id: Some("1".into()),
            entity_type: "patient".into(),
            entity_id: id.clone(),
            event_name: if i.is_multiple_of(2) {
                Some("UpdatePatient".into())
            } else {
                None
            },
            changed_at: Some(TimestampMillis(1_764_000_000_000 + i as i64)),
            observed_at: TimestampMillis(1_764_000_000_500 + i as i64),
            snapshot: false,
            replayed: i.is_multiple_of(3),
        },
        payload: Patient {
            patient_id: id,
            department_id: Some("1".into()),
            status: Some("active".into()),
            first_name: Some(format!("Synthetic{i}")),
            last_name: Some("Testperson".into()),
            dob: Some(Date(7000 + i as i32)),
            previous_patient_ids: if i.is_multiple_of(4) {
                vec!["77".into()]
            } else {
                vec![]
            },
            last_modified: Some(TimestampMillis(1_764_000_000_000 + i as i64)),
            ..Default::default()
        },
        original: if !i.is_multiple_of(2) {
            Some(format!("{{\"patientid\":\"{i}\"}}"))
        } else {
            None
        },
    }
}

#[tokio::test]
async fn typed_events_round_trip_through_kafka() {
    let stack = Stack::get().await;
    let topic = unique("patients");
    stack.create_topic(&topic, 3).await;

    let codec = stack.codec();
    let subject = format!("{topic}-value");
    let id = codec
        .registry()
        .register(&subject, &PatientChanged::bundled_json())
        .await
        .expect("register");
    let encoder = codec
        .encoder::<PatientChanged>(&topic)
        .await
        .expect("encoder");
    assert_eq!(
        encoder.schema_id(),
        id,
        "the encoder pins the registered id"
    );

    let producer = stack.kafka().build_producer().expect("producer");
    let sent: Vec<PatientChanged> = (0..50).map(patient_event).collect();
    // Send all, then await all: never one round trip per message.
    let mut deliveries = Vec::new();
    for ev in &sent {
        let key = format!("{}/{}", ev.envelope.practice_id, ev.envelope.entity_id);
        let payload = encoder.encode(ev).expect("encode");
        deliveries.push(
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .expect("enqueue"),
        );
    }
    for d in deliveries {
        d.await.expect("delivery future").expect("acked");
    }

    let msgs = stack
        .consume(&topic, sent.len(), Duration::from_secs(60))
        .await;
    let mut got = Vec::new();
    for m in &msgs {
        let ev: PatientChanged = codec
            .decode(m.payload().expect("payload"))
            .await
            .expect("decode");
        let key = std::str::from_utf8(m.key().expect("key"))
            .unwrap()
            .to_string();
        assert_eq!(key, format!("195900/{}", ev.envelope.entity_id));
        got.push(ev);
    }
    got.sort_by(|a, b| a.envelope.entity_id.cmp(&b.envelope.entity_id));
    assert_eq!(got.len(), sent.len());
    for (g, s) in got.iter().zip(&sent) {
        // Field by field, so a mismatch names the field.
        assert_eq!(g.envelope, s.envelope);
        assert_eq!(g.payload.patient_id, s.payload.patient_id);
        assert_eq!(g.payload.first_name, s.payload.first_name);
        assert_eq!(g.payload.dob, s.payload.dob);
        assert_eq!(
            g.payload.previous_patient_ids,
            s.payload.previous_patient_ids
        );
        assert_eq!(g.payload.last_modified, s.payload.last_modified);
        assert_eq!(g.original, s.original);
        assert_eq!(g, s);
    }
}

#[tokio::test]
async fn undecodable_messages_are_typed_errors() {
    let stack = Stack::get().await;
    let codec = stack.codec();

    // Not the wire format at all.
    let e = codec
        .decode::<PatientChanged>(b"garbage bytes")
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NotWireFormat(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Permanent);

    // A schema id the registry has never issued.
    let e = codec
        .decode::<PatientChanged>(&frame(2_000_000_000, b"\x02\x04"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CoreError::UnknownSchemaId(2_000_000_000)),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Permanent);

    // A valid record of the wrong type.
    let topic = unique("results");
    let id = codec
        .registry()
        .register(&format!("{topic}-value"), &CommandResult::bundled_json())
        .await
        .expect("register");
    let result = CommandResult {
        command_id: "c".into(),
        command_type: "BookAppointment".into(),
        practice_id: "195900".into(),
        correlation_id: None,
        status: CommandStatus::Applied,
        athena_ids: Default::default(),
        error: None,
        attempts: 1,
        received_at: TimestampMillis(1),
        completed_at: TimestampMillis(2),
    };
    let bytes = Encoder::<CommandResult>::with_id(id)
        .unwrap()
        .encode(&result)
        .unwrap();
    let e = codec.decode::<PatientChanged>(&bytes).await.unwrap_err();
    assert!(
        matches!(e, CoreError::Decode(ref m) if m.contains("CommandResult")),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Permanent);
    // ... and the same bytes decode fine as what they are.
    assert_eq!(codec.decode::<CommandResult>(&bytes).await.unwrap(), result);

    // A truncated body of a known schema.
    let e = codec
        .decode::<CommandResult>(&bytes[..8])
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e:?}");
}

trait BundledJson {
    fn bundled_json() -> String;
}
impl<T: connector_core::avro::AvroRecord> BundledJson for T {
    fn bundled_json() -> String {
        T::bundled().json.clone()
    }
}

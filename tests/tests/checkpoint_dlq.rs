//! The compacted-topic checkpoint store and the dead-letter queue against the real broker.

use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore, checkpoint_record};
use connector_core::dlq::{DeadLetterQueue, DlqConfig, Reason, Stage};
use connector_core::error::CoreError;
use connector_core::headers::get_str;
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};

#[tokio::test]
async fn checkpoints_survive_a_new_store_and_last_value_wins() {
    let stack = Stack::get().await;
    let kafka = stack.kafka();
    let topic = unique("state");
    let store = KafkaCheckpointStore::open(&kafka, &topic, kafka.build_producer().unwrap())
        .await
        .unwrap();
    assert!(store.load().await.unwrap().is_empty());
    store.save("195900/patients", b"{\"v\":1}").await.unwrap();
    store
        .save("195900/appointments", b"{\"v\":1}")
        .await
        .unwrap();
    store.save("195900/patients", b"{\"v\":2}").await.unwrap();
    store.save("gone", b"x").await.unwrap();
    store.delete("gone").await.unwrap();

    // A fresh store (as after a restart) sees the last values.
    let reopened = KafkaCheckpointStore::open(&kafka, &topic, kafka.build_producer().unwrap())
        .await
        .unwrap();
    let state = reopened.load().await.unwrap();
    assert_eq!(state.len(), 2, "{state:?}");
    assert_eq!(state["195900/patients"], b"{\"v\":2}");
    assert_eq!(state["195900/appointments"], b"{\"v\":1}");
}

#[tokio::test]
async fn aborted_transactional_checkpoints_are_invisible() {
    let stack = Stack::get().await;
    let kafka = stack.kafka();
    let topic = unique("txstate");
    let store = KafkaCheckpointStore::open(&kafka, &topic, kafka.build_producer().unwrap())
        .await
        .unwrap();
    store.save("k", b"committed").await.unwrap();

    let tx = kafka.build_transactional_producer(&unique("txn")).unwrap();
    let t2 = tx.clone();
    tokio::task::spawn_blocking(move || {
        t2.init_transactions(Duration::from_secs(30)).unwrap();
        t2.begin_transaction().unwrap();
    })
    .await
    .unwrap();
    tx.send(
        checkpoint_record(&topic, "k", b"aborted"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || tx.abort_transaction(Duration::from_secs(30)).unwrap())
        .await
        .unwrap();

    let state = store.load().await.unwrap();
    assert_eq!(state["k"], b"committed");
}

#[tokio::test]
async fn dead_letters_keep_the_original_bytes_and_add_context() {
    let stack = Stack::get().await;
    let kafka = stack.kafka();
    let source = unique("cmds");
    stack.create_topic(&source, 1).await;
    stack.create_topic(&format!("{source}.dlq"), 1).await;
    let producer = kafka.build_producer().unwrap();
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]),
    });
    producer
        .send(
            FutureRecord::to(&source)
                .key(&b"practice/1"[..])
                .payload(&b"\x00\xff not avro \"Synthia\""[..])
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let original = stack
        .consume(&source, 1, Duration::from_secs(30))
        .await
        .remove(0);

    let dlq = DeadLetterQueue::new(producer, DlqConfig::default(), "athena-sink", "0");
    let err = CoreError::Decode("field first_name: String(\"Synthia\") unexpected".into());
    dlq.send_reason(&original, &Reason::from_core(&err, Stage::ValueConverter))
        .await
        .unwrap();

    let dead = stack
        .consume(&format!("{source}.dlq"), 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(dead.key(), original.key());
    assert_eq!(dead.payload(), original.payload());
    let h = dead.headers().expect("headers");
    assert_eq!(
        get_str(h, "traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(get_str(h, "__connect.errors.topic"), Some(source.as_str()));
    assert_eq!(get_str(h, "__connect.errors.offset"), Some("0"));
    assert_eq!(
        get_str(h, "__connect.errors.connector.name"),
        Some("athena-sink")
    );
    let msg = get_str(h, "__connect.errors.exception.message").unwrap();
    assert!(!msg.contains("Synthia"), "{msg}");
    // No header anywhere carries the synthetic name.
    for header in h.iter() {
        if header.key.starts_with("__connect") {
            let v = String::from_utf8_lossy(header.value.unwrap_or_default());
            assert!(!v.contains("Synthia"), "{}: {v}", header.key);
        }
    }
}

/// A store opened with a retention creates a topic that compacts *and* expires keys, and a
/// retention-less one a compact-only topic; what the broker reports is what the code asked for.
#[tokio::test]
async fn retention_makes_the_state_topic_compact_and_delete() {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};
    let stack = Stack::get().await;
    let kafka = stack.kafka();
    let bounded = unique("ledger-bounded");
    let forever = unique("ledger-forever");
    let week = Duration::from_secs(7 * 24 * 3600);
    KafkaCheckpointStore::open_with_retention(
        &kafka,
        &bounded,
        kafka.build_producer().unwrap(),
        Some(week),
    )
    .await
    .unwrap();
    KafkaCheckpointStore::open(&kafka, &forever, kafka.build_producer().unwrap())
        .await
        .unwrap();
    let admin = kafka.build_admin().unwrap();
    let described = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic(&bounded),
                &ResourceSpecifier::Topic(&forever),
            ],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let get = |i: usize, name: &str| -> String {
        let r = described[i].as_ref().expect("topic described");
        r.get(name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(get(0, "cleanup.policy"), "compact,delete");
    assert_eq!(get(0, "retention.ms"), week.as_millis().to_string());
    assert_eq!(get(1, "cleanup.policy"), "compact");
}

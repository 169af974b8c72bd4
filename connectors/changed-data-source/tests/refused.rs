//! An event Kafka refuses for good does not stall the feed (real broker and registry,
//! in-process simulator). The patients topic is created beforehand with a small
//! `max.message.bytes`; one patient's event is too large with its `original` JSON but fits
//! without it, another's is too large either way. The first lands without `original`, the
//! second is parked in the feed's dead-letter topic with a `KAFKA_PRODUCE` reason, and the rows
//! after them arrive: the cursor moved on. Both delivery modes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, unique};
use athena_contracts::PatientChanged;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use connector_core::headers::get_str;
use connector_core::runtime::{RunEnv, TaskState};
use rdkafka::message::Message;

/// The patients topic's `max.message.bytes`: a normal patient event (a few KB) fits.
const TOPIC_MAX_BYTES: usize = 16_384;

async fn refused_events_are_minimised_or_parked(mode: &str) {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let prefix = unique("cds.refused");
    let feeds = [Feed::Patients];
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, &format!("mode = \"{mode}\"")),
        &Default::default(),
        "X",
    )
    .expect("config");
    let topic = config.topic(Feed::Patients);
    let dlq_topic = format!("{topic}.dlq");

    // The event topic exists before the connector starts, with a limit one patient's event
    // exceeds.
    let kafka = small_topics(&stack, &[&topic], 1, TOPIC_MAX_BYTES).await;
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv { kafka, registry };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (handle, runner) = spawn_connector("refused-test", &config, &env, &athena);
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;

    // Rows in order: two normal, one too large only with `original` (the last name is in the
    // typed fields and in `original`), one too large either way, two normal.
    let slim_name = filler(1, 9_000);
    let huge_name = filler(2, 20_000);
    let names = [
        "Before-one".to_string(),
        "Before-two".to_string(),
        slim_name.clone(),
        huge_name.clone(),
        "After-one".to_string(),
        "After-two".to_string(),
    ];
    for name in &names {
        sim.state.add_patient(
            PRACTICE,
            NewPatient {
                lastname: name.clone(),
                ..NewPatient::default()
            },
        );
    }

    // The event id of each row, by last name, from what the simulator handed out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ids: HashMap<String, String> = loop {
        let rows = handed_out(&sim.state, Feed::Patients);
        let ids: HashMap<String, String> = rows
            .iter()
            .filter_map(|(id, r)| Some((r["lastname"].as_str()?.to_string(), id.clone())))
            .collect();
        if names.iter().all(|n| ids.contains_key(n)) {
            break ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connector did not poll every row ({} of {})",
            ids.len(),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let on_topic = |name: &str| ids[name].clone();

    // Wait until the last row's event is on Kafka: everything before it was handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let msgs = loop {
        let msgs = read_all(&stack, &topic);
        if msgs.iter().any(|m| event_id(m) == on_topic("After-two")) {
            break msgs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed stalled: the row after the refused events never arrived ({:?})",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(handle.status().state, TaskState::Running);

    let codec = stack.codec();
    let mut by_id: HashMap<String, PatientChanged> = HashMap::new();
    for m in &msgs {
        let e: PatientChanged = codec
            .decode(m.payload().expect("payload"))
            .await
            .expect("decode");
        by_id.insert(event_id(m), e);
    }
    for name in ["Before-one", "Before-two", "After-one", "After-two"] {
        let e = by_id
            .get(&on_topic(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(e.original.is_some(), "{name} lost its original");
    }
    let slim = by_id
        .get(&on_topic(&slim_name))
        .expect("the event too large only with `original` is on the topic");
    assert_eq!(slim.original, None);
    assert_eq!(slim.payload.last_name.as_deref(), Some(slim_name.as_str()));
    assert_eq!(slim.envelope.event_id, on_topic(&slim_name));
    assert!(
        !by_id.contains_key(&on_topic(&huge_name)),
        "the event too large either way is on the event topic"
    );

    // The huge one is in the dead-letter topic, whole, with the real stage and error.
    let dead = read_all(&stack, &dlq_topic);
    let dead: Vec<_> = dead
        .iter()
        .filter(|m| event_id(m) == on_topic(&huge_name))
        .collect();
    assert_eq!(dead.len(), 1, "one dead letter for the huge event");
    let h = dead[0].headers().expect("headers");
    assert_eq!(get_str(h, "__connect.errors.stage"), Some("KAFKA_PRODUCE"));
    assert_eq!(get_str(h, "__connect.errors.topic"), Some(topic.as_str()));
    assert_eq!(
        get_str(h, "__connect.errors.exception.class.name"),
        Some("kafka.MessageSizeTooLarge")
    );
    assert_eq!(
        get_str(h, "__connect.errors.athena_connect.error.class"),
        Some("permanent")
    );
    let parked: PatientChanged = codec
        .decode(dead[0].payload().expect("the whole event"))
        .await
        .expect("decode dead letter");
    assert_eq!(
        parked.payload.last_name.as_deref(),
        Some(huge_name.as_str())
    );
    assert!(parked.original.is_some());
    let message = get_str(h, "__connect.errors.exception.message").unwrap_or_default();
    assert!(!message.contains(&huge_name[..50]), "PHI in the DLQ header");

    stop_connector(&handle, runner).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_least_once_refused_events_do_not_stall_the_feed() {
    refused_events_are_minimised_or_parked("at_least_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_refused_events_do_not_stall_the_feed() {
    refused_events_are_minimised_or_parked("exactly_once").await;
}

//! Events for every configured feed land on Kafka (real broker and registry, in-process
//! simulator): decodable with the registered schemas, fields matching the simulator's records,
//! keys `practice/entity`, CloudEvents and event-id headers.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, unique};
use athena_contracts::events::lab_results::LabResultChanged;
use athena_contracts::{AppointmentChanged, PatientChanged};
use athena_sim::{RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use connector_core::headers::get_str;
use connector_core::runtime::{RunEnv, TaskState, task};
use rdkafka::message::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_configured_feed_lands_on_kafka_with_matching_fields() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let prefix = unique("cds.feeds");
    // Every generated feed, plus one the generator never writes (it must subscribe and idle).
    let mut feeds = GENERATED.to_vec();
    feeds.push(Feed::Vaccines);
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, ""),
        &Default::default(),
        "X",
    )
    .expect("config");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (control, handle) = task("feeds-test", changed_data_source::KIND);
    let runner = {
        let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
        tokio::spawn(async move {
            changed_data_source::run("feeds-test", &config, &env, &athena, control).await
        })
    };

    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;
    // Paused: no feed polls (the rows stay unprocessed in athena); resumed: they drain.
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.pause();
    tokio::time::sleep(Duration::from_millis(1000)).await; // let in-flight polls finish
    sim.state.generate(50);
    let queued = pending(&sim.state, &feeds);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queued > 0);
    assert_eq!(
        pending(&sim.state, &feeds),
        queued,
        "a paused connector polled"
    );
    handle.resume();
    sim.state.generate(350);
    // Wait until the connector drained every feed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending(&sim.state, &feeds) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "feeds not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more poll cycle so the last page's acknowledgements and cursor are through.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        handle.status().state,
        TaskState::Running,
        "{:?}",
        handle.status()
    );

    let codec = stack.codec();
    let mut fed = 0;
    for feed in &feeds {
        let topic = config.topic(*feed);
        let rows = handed_out(&sim.state, *feed);
        let msgs = read_all(&stack, &topic);
        let expected: HashSet<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let got: HashSet<String> = msgs.iter().map(event_id).collect();
        assert_eq!(
            expected.difference(&got).count(),
            0,
            "{feed:?}: {} of {} changes missing on {topic}",
            expected.difference(&got).count(),
            expected.len()
        );
        assert!(
            got.is_subset(&expected),
            "{feed:?}: unknown event ids on {topic}"
        );
        if !rows.is_empty() {
            fed += 1;
        }
        for m in &msgs {
            let h = m.headers().expect("headers");
            let key = std::str::from_utf8(m.key().expect("key")).unwrap();
            assert!(key.starts_with("195900/"), "{key}");
            assert_eq!(get_str(h, "ce_id"), Some(event_id(m).as_str()));
            assert_eq!(get_str(h, "ce_specversion"), Some("1.0"));
            assert_eq!(
                get_str(h, "ce_source"),
                Some(format!("athena://195900/{}", feed.path()).as_str())
            );
            assert_eq!(get_str(h, "ce_subject"), key.strip_prefix("195900/"));
            assert!(
                get_str(h, "ce_type")
                    .unwrap()
                    .starts_with("com.athenaconnect.events.")
            );
        }
        // Field-level checks on three feeds, against the simulator's own records.
        let by_id: std::collections::HashMap<&str, &serde_json::Value> =
            rows.iter().map(|(id, r)| (id.as_str(), r)).collect();
        for m in msgs.iter().take(25) {
            let rec = by_id[event_id(m).as_str()];
            let bytes = m.payload().expect("payload");
            match feed {
                Feed::Patients => {
                    let e: PatientChanged = codec.decode(bytes).await.expect("decode");
                    assert_eq!(e.payload.patient_id, rec["patientid"].as_str().unwrap());
                    assert_eq!(e.payload.first_name.as_deref(), rec["firstname"].as_str());
                    assert_eq!(e.payload.last_name.as_deref(), rec["lastname"].as_str());
                    let dob = athena_client::model::de::parse_date(rec["dob"].as_str().unwrap());
                    assert_eq!(e.payload.dob.and_then(|d| d.to_naive()), dob);
                    assert_eq!(e.envelope.entity_type, "patient");
                    assert_eq!(e.envelope.practice_id, "195900");
                    assert!(!e.envelope.replayed);
                    assert!(e.envelope.changed_at.is_some());
                    let orig: serde_json::Value =
                        serde_json::from_str(e.original.as_deref().unwrap()).unwrap();
                    assert_eq!(&orig, rec);
                }
                Feed::Appointments => {
                    let e: AppointmentChanged = codec.decode(bytes).await.expect("decode");
                    assert_eq!(
                        e.payload.appointment_id,
                        rec["appointmentid"].as_str().unwrap()
                    );
                    assert_eq!(
                        e.payload.status.as_deref(),
                        rec["appointmentstatus"].as_str()
                    );
                    assert_eq!(e.payload.provider_id.as_deref(), rec["providerid"].as_str());
                    assert_eq!(
                        e.payload.duration_minutes.map(i64::from),
                        rec["duration"].as_i64()
                    );
                }
                Feed::LabResults => {
                    let e: LabResultChanged = codec.decode(bytes).await.expect("decode");
                    assert_eq!(
                        e.payload.lab_result_id,
                        rec["labresultid"].as_u64().unwrap().to_string()
                    );
                    assert_eq!(e.payload.status.as_deref(), rec["status"].as_str());
                    assert!(e.payload.last_modified.is_some(), "ISO timestamp parsed");
                }
                _ => {}
            }
        }
    }
    assert!(fed >= 6, "the generator wrote to only {fed} feeds");

    stop_connector(&handle, runner).await;
    sim.shutdown().await;
}

/// Destructive polls of the patients feed answered so far (the simulator's poll log).
fn patient_polls(sim: &athena_sim::SimState) -> usize {
    sim.with_practice(PRACTICE, |p| {
        p.feeds
            .get(Feed::Patients.path())
            .map_or(0, |f| f.polled.len())
    })
    .unwrap_or(0)
}

/// A stop while athena keeps the feed full ends the drain after the page in hand, in both modes:
/// at most the poll in flight and the one read ahead of it are answered after the stop was
/// asked for, and rows stay queued for the next poll. (A drain that only ends on a short page
/// would hold the stop, and a leaving instance's tasks, for as long as the backlog lasts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_under_a_refilled_backlog_ends_after_the_page_in_hand() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        generator: Some(athena_sim::GeneratorConfig {
            rate_per_sec: 0.0,
            practices: vec![],
            mix: vec![
                athena_sim::ChangeKind::NewPatient,
                athena_sim::ChangeKind::UpdatePatient,
            ],
        }),
        token_rate_limit_per_minute: 10_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    // athena-like poll latency, so a stop always finds a drain in flight.
    sim.state.inject(
        athena_sim::FaultRule::new(
            athena_sim::Fault::Latency(Duration::from_millis(30)),
            u32::MAX,
        )
        .method("GET")
        .path("/patients/changed"),
    );
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    for mode in ["at_least_once", "exactly_once"] {
        let prefix = unique(&format!("cds.stop.{mode}"));
        let config: Config = connector_core::config::load_str(
            &connector_toml(
                &prefix,
                &[Feed::Patients],
                &format!("mode = \"{mode}\"\npage_size = 20"),
            ),
            &Default::default(),
            "X",
        )
        .expect("config");
        // The backlog, kept at 400 rows or more: every page is full.
        let refill = Arc::new(AtomicBool::new(true));
        let feeder = {
            let (state, refill) = (sim.state.clone(), refill.clone());
            tokio::spawn(async move {
                while refill.load(Ordering::Relaxed) {
                    let queued = state.pending_changes(PRACTICE, Feed::Patients.path());
                    if queued < 400 {
                        state.generate(400 - queued);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let name: &'static str = if mode == "exactly_once" {
            "stop-eos"
        } else {
            "stop-alo"
        };
        let (handle, runner) = spawn_connector(name, &config, &env, &athena);
        wait_subscribed(&sim.state, &[Feed::Patients], Duration::from_secs(60)).await;
        let before = patient_polls(&sim.state);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while patient_polls(&sim.state) < before + 5 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{mode}: the drain never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let at_stop = patient_polls(&sim.state);
        stop_connector(&handle, runner).await;
        let after = patient_polls(&sim.state) - at_stop;
        refill.store(false, Ordering::Relaxed);
        feeder.await.expect("feeder");
        assert!(
            after <= 2,
            "{mode}: {after} polls answered after the stop was asked for (the drain went on)"
        );
        assert!(
            sim.state.pending_changes(PRACTICE, Feed::Patients.path()) > 0,
            "{mode}: the backlog ran out, so the stop proved nothing"
        );
    }
    sim.shutdown().await;
}

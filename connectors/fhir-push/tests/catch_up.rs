//! The push gap catch-up on the real broker and registry, against the in-process simulator.
//!
//! - every push delivery dies (the Subscriptions point at a port nobody listens on): the gap
//!   fires, the catch-up reads the changed-data feeds non-destructively and produces every changed
//!   patient and appointment with `replayed = true` and exactly the events (whole payloads, not
//!   only ids) the changed-data source's mapping gives the same rows, apart from the per-path
//!   envelope fields (`source`, `replayed`, `observed_at`), which are checked explicitly; a
//!   destructive poll afterwards still returns every row, so the catch-up marked nothing
//!   processed;
//! - a feed without a changed-data subscription is reported (task error, counter), the other
//!   feed is still caught up and the connector keeps running;
//! - the start-up look-back reads the newest record time of the notifications topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use athena_client::api::changed::{Feed, PollParams, Subscribe};
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{Stack, unique};
use athena_contracts::events::FeedEvent;
use athena_contracts::mapping::{MapContext, changed_data_event, record_event_id};
use athena_contracts::{AppointmentChanged, PatientChanged, SourceKind, TimestampMillis};
use athena_sim::{ChangeKind, GeneratorConfig, RunningSim, SimConfig};
use connector_core::Secret;
use connector_core::headers::get_str;
use connector_core::metrics::global;
use connector_core::runtime::{RunEnv, TaskHandle, TaskState};
use fhir_push::adapter::{AthenaAdapter, PushAdapter};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use secrecy::SecretString;

mod common;
use common::{PRACTICE, SECRET, athena, free_port, high_watermark, stop, wait_for};

/// A simulator whose failed push deliveries die after about a second, with a change generator
/// limited to patient and appointment changes (run by hand, no background task).
async fn sim() -> RunningSim {
    RunningSim::start(SimConfig {
        push_retry_for: Duration::from_secs(1),
        push_retry_interval: Duration::from_millis(200),
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            practices: Vec::new(),
            mix: vec![
                ChangeKind::NewPatient,
                ChangeKind::UpdatePatient,
                ChangeKind::Booking,
                ChangeKind::CheckIn,
            ],
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A connector config whose receiver listens on one port while its Subscriptions point at
/// another, dead one: every push delivery fails.
async fn config(stack: &Stack) -> (fhir_push::Config, RunEnv) {
    let mut c = fhir_push::Config::new(
        PRACTICE,
        Secret::new(SECRET),
        format!("http://127.0.0.1:{}/notifications", free_port()),
    );
    c.listen = format!("127.0.0.1:{}", free_port());
    c.notifications_topic = unique("push.notifications");
    c.notifications_partitions = 2;
    c.patients_topic = Some(unique("patients"));
    c.appointments_topic = Some(unique("appointments"));
    c.fhir_resources_topic = Some(unique("fhir"));
    c.group_id = Some(unique("inflate"));
    c.subscription_topics = [
        "Patient.create",
        "Patient.update",
        "Appointment.schedule",
        "Appointment.check-in",
        "Encounter.check-in",
    ]
    .map(String::from)
    .to_vec();
    c.heartbeat_period = Duration::from_secs(2);
    for t in [c.patients_topic(), c.appointments_topic()] {
        stack.create_topic(&t, 2).await;
    }
    let mut registry = stack.registry();
    registry.auto_register = true;
    (
        c,
        RunEnv {
            kafka: stack.kafka(),
            registry,
        },
    )
}

/// Creates the connector's push Subscriptions up front (dead endpoint), so the changes made
/// next are pushed — and lost — before the connector starts.
async fn push_subscriptions(client: &AthenaClient, cfg: &fhir_push::Config) {
    let adapter = AthenaAdapter::new(Secret::new(SECRET));
    fhir_push::manage::reconcile(
        client,
        &adapter,
        adapter.hub_secret().as_ref(),
        &fhir_push::subscription_specs(cfg),
        true,
    )
    .await
    .unwrap();
}

fn start(
    name: &str,
    cfg: &fhir_push::Config,
    env: &RunEnv,
    client: &AthenaClient,
) -> (
    TaskHandle,
    tokio::task::JoinHandle<Result<(), fhir_push::Error>>,
) {
    let (control, handle) = connector_core::runtime::task(name, "fhir-push-source");
    let (name, cfg, env, client) = (name.to_string(), cfg.clone(), env.clone(), client.clone());
    let task =
        tokio::spawn(async move { fhir_push::run(&name, &cfg, &env, &client, control).await });
    (handle, task)
}

fn metric(line_start: &str) -> u64 {
    global()
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Every row of `feed` in the simulator (a test view; the connector never sees this).
fn sim_rows(sim: &RunningSim, feed: &str) -> Vec<serde_json::Value> {
    sim.state
        .with_practice(PRACTICE, |p| {
            p.feeds
                .get(feed)
                .map(|f| f.rows.iter().map(|r| r.snapshot.clone()).collect())
                .unwrap_or_default()
        })
        .unwrap()
}

/// The ids the changed-data source's mapping (the one in `athena-contracts`) gives these rows.
fn changed_data_ids(feed: Feed, rows: &[serde_json::Value]) -> BTreeSet<String> {
    let practice = PRACTICE.to_string();
    rows.iter()
        .map(|r| match feed {
            Feed::Patients => record_event_id::<PatientChanged>(&practice, r),
            Feed::Appointments => record_event_id::<AppointmentChanged>(&practice, r),
            other => panic!("no catch-up for {other:?}"),
        })
        .collect()
}

/// Asserts that every catch-up event is, field for field, the changed-data event of the same
/// row, except the envelope fields that belong to the path: `source` (changed data vs push),
/// `replayed` (a normal poll vs the catch-up) and `observed_at` (when each path read it).
fn assert_whole_events_match<T: FeedEvent + PartialEq + std::fmt::Debug + Clone>(
    got: &[T],
    rows: &[serde_json::Value],
    include_original: bool,
) {
    let practice = PRACTICE.to_string();
    let ctx = MapContext {
        practice_id: &practice,
        observed_at: TimestampMillis(0),
        replayed: false,
        keep_original: include_original,
    };
    let changed_data: BTreeMap<String, T> = rows
        .iter()
        .map(|r| {
            let (ev, _) = changed_data_event::<T>(&ctx, r);
            (ev.envelope().event_id.clone(), ev)
        })
        .collect();
    for ev in got {
        let env = ev.envelope();
        let mut want = changed_data[&env.event_id].clone();
        let w = want.envelope();
        assert_eq!(
            (w.source, w.replayed, w.snapshot),
            (SourceKind::ChangedData, false, false),
            "the changed-data source's own envelope"
        );
        assert_eq!(
            (env.source, env.replayed, env.snapshot),
            (SourceKind::FhirPush, true, false),
            "the catch-up's envelope"
        );
        assert!(
            env.observed_at > TimestampMillis(0),
            "observed_at is the read time"
        );
        let w = want.envelope_mut();
        w.source = env.source;
        w.replayed = env.replayed;
        w.observed_at = env.observed_at;
        assert_eq!(
            ev, &want,
            "the catch-up event is the changed-data event of the same row"
        );
    }
}

/// Decodes every record of the two entity topics.
async fn produced(
    stack: &Stack,
    cfg: &fhir_push::Config,
) -> (Vec<PatientChanged>, Vec<AppointmentChanged>) {
    let kafka = stack.kafka();
    let codec = stack.codec();
    let mut patients = Vec::new();
    let n = high_watermark(&kafka, &cfg.patients_topic()) as usize;
    for m in stack
        .consume(&cfg.patients_topic(), n, Duration::from_secs(30))
        .await
    {
        let ev: PatientChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        assert_eq!(key, format!("{PRACTICE}/{}", ev.payload.patient_id));
        assert_eq!(
            get_str(m.headers().unwrap(), "event_id"),
            Some(ev.envelope.event_id.as_str()),
            "the event_id header matches the envelope"
        );
        patients.push(ev);
    }
    let mut appointments = Vec::new();
    let n = high_watermark(&kafka, &cfg.appointments_topic()) as usize;
    for m in stack
        .consume(&cfg.appointments_topic(), n, Duration::from_secs(30))
        .await
    {
        let ev: AppointmentChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        assert_eq!(key, format!("{PRACTICE}/{}", ev.payload.appointment_id));
        assert_eq!(
            get_str(m.headers().unwrap(), "ce_id"),
            Some(ev.envelope.event_id.as_str()),
            "the CloudEvents id header matches the envelope"
        );
        appointments.push(ev);
    }
    (patients, appointments)
}

/// Drains `feed` destructively (repeated `limit` polls, no offset) and returns its rows.
async fn drain(client: &AthenaClient, feed: Feed) -> Vec<serde_json::Value> {
    let mut pager = client
        .practice(PRACTICE)
        .changed_pager(feed, PollParams::default(), 500);
    let mut rows = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        rows.extend(page.items);
    }
    rows
}

#[tokio::test]
async fn gap_catch_up_produces_every_change_with_the_changed_data_ids_and_marks_nothing() {
    let stack = Stack::get().await;
    let sim = sim().await;
    let client = athena(&sim);
    let practice = client.practice(PRACTICE);
    for feed in [Feed::Patients, Feed::Appointments] {
        practice
            .subscribe(feed, &Subscribe::default())
            .await
            .unwrap();
    }
    let (cfg, env) = config(&stack).await;
    push_subscriptions(&client, &cfg).await;
    // K changes, each pushed to a dead endpoint.
    sim.state.generate(30);
    let patient_rows = sim_rows(&sim, "patients");
    let appointment_rows = sim_rows(&sim, "appointments");
    assert!(
        !patient_rows.is_empty() && !appointment_rows.is_empty(),
        "the generator changed both entities: {} patients, {} appointments",
        patient_rows.len(),
        appointment_rows.len()
    );
    let want_patients = changed_data_ids(Feed::Patients, &patient_rows);
    let want_appointments = changed_data_ids(Feed::Appointments, &appointment_rows);

    let name = unique("catchup").replace('.', "-");
    let (handle, task) = start(&name, &cfg, &env, &client);
    let events = format!("athena_connect_push_catch_up_events_total{{connector=\"{name}\"}}");
    let want = (want_patients.len() + want_appointments.len()) as u64;
    wait_for("the catch-up events", Duration::from_secs(60), || {
        metric(&events) >= want
    })
    .await;
    let gaps = format!("athena_connect_push_gaps_total{{connector=\"{name}\"}}");
    assert!(metric(&gaps) >= 1, "a gap fired");
    let status = handle.status();
    assert_eq!(status.state, TaskState::Running, "{status:?}");
    stop(handle, task).await;
    let push = sim.state.push();
    assert_eq!(
        push.delivered.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no push delivery succeeded: the events came from the catch-up"
    );
    assert_eq!(
        high_watermark(&env.kafka, &cfg.notifications_topic),
        0,
        "no notification reached the receiver"
    );

    let (patients, appointments) = produced(&stack, &cfg).await;
    for e in patients
        .iter()
        .map(|e| &e.envelope)
        .chain(appointments.iter().map(|e| &e.envelope))
    {
        assert!(e.replayed, "catch-up events are marked replayed");
        assert_eq!(e.source, SourceKind::FhirPush);
        assert_eq!(e.practice_id, PRACTICE.to_string());
    }
    let got_patients: BTreeSet<String> = patients
        .iter()
        .map(|e| e.envelope.event_id.clone())
        .collect();
    let got_appointments: BTreeSet<String> = appointments
        .iter()
        .map(|e| e.envelope.event_id.clone())
        .collect();

    // The rows are all still unprocessed: a destructive poll returns every one of them, and the
    // changed-data source's own code gives them the ids the catch-up produced.
    assert_eq!(
        sim.state.pending_changes(PRACTICE, "patients"),
        patient_rows.len()
    );
    assert_eq!(
        sim.state.pending_changes(PRACTICE, "appointments"),
        appointment_rows.len()
    );
    let drained_patients = drain(&client, Feed::Patients).await;
    let drained_appointments = drain(&client, Feed::Appointments).await;
    assert_eq!(drained_patients.len(), patient_rows.len());
    assert_eq!(drained_appointments.len(), appointment_rows.len());
    assert_eq!(
        changed_data_ids(Feed::Patients, &drained_patients),
        got_patients
    );
    assert_eq!(
        changed_data_ids(Feed::Appointments, &drained_appointments),
        got_appointments
    );
    assert_eq!(got_patients, want_patients);
    assert_eq!(got_appointments, want_appointments);
    // Whole payloads, not only ids.
    assert_whole_events_match(&patients, &patient_rows, cfg.include_original);
    assert_whole_events_match(&appointments, &appointment_rows, cfg.include_original);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_feed_without_a_changed_data_subscription_is_reported_and_the_other_still_caught_up() {
    let stack = Stack::get().await;
    let sim = sim().await;
    let client = athena(&sim);
    // Only patients: the appointments feed answers 403 "not subscribed".
    client
        .practice(PRACTICE)
        .subscribe(Feed::Patients, &Subscribe::default())
        .await
        .unwrap();
    let (cfg, env) = config(&stack).await;
    push_subscriptions(&client, &cfg).await;
    sim.state.generate(10);
    let want_patients = changed_data_ids(Feed::Patients, &sim_rows(&sim, "patients"));
    assert!(!want_patients.is_empty());

    let name = unique("catchup-nosub").replace('.', "-");
    let (handle, task) = start(&name, &cfg, &env, &client);
    let failures = format!(
        "athena_connect_push_catch_up_failures_total{{connector=\"{name}\",feed=\"appointments\"}}"
    );
    let events = format!("athena_connect_push_catch_up_events_total{{connector=\"{name}\"}}");
    wait_for("the reported failure", Duration::from_secs(60), || {
        metric(&failures) >= 1 && metric(&events) >= want_patients.len() as u64
    })
    .await;
    let status = handle.status();
    assert_eq!(status.state, TaskState::Running, "not fatal: {status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("appointments is not subscribed")),
        "{status:?}"
    );
    // Patients still caught up; no subscription was created on the user's behalf.
    let uncovered = format!("athena_connect_push_catch_up_uncovered_total{{connector=\"{name}\"}}");
    assert!(
        metric(&uncovered) >= 1,
        "Encounter.check-in reported as not covered"
    );
    stop(handle, task).await;
    let st = client
        .practice(PRACTICE)
        .changed_subscription(Feed::Appointments)
        .await
        .unwrap();
    assert_eq!(st.status, "INACTIVE");
    let (patients, appointments) = produced(&stack, &cfg).await;
    assert!(appointments.is_empty());
    let got: BTreeSet<String> = patients
        .iter()
        .map(|e| e.envelope.event_id.clone())
        .collect();
    assert_eq!(got, want_patients);
    sim.shutdown().await;
}

#[tokio::test]
async fn start_up_look_back_reads_the_newest_notification_time() {
    let stack = Stack::get().await;
    let kafka = stack.kafka();
    let topic = unique("push.notifications");
    stack.create_topic(&topic, 3).await;
    let probe = unique("probe");
    assert_eq!(
        fhir_push::catch_up::newest_record_time(&kafka, &probe, &topic, Duration::from_secs(10))
            .await
            .unwrap(),
        None,
        "empty topic"
    );
    // A connector that was down for 40 minutes: its last notification is that old.
    let now = chrono::Utc::now();
    let stamps = [
        now - chrono::Duration::minutes(60),
        now - chrono::Duration::minutes(40),
    ];
    let producer = kafka.build_producer().unwrap();
    for (i, t) in stamps.iter().enumerate() {
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&format!("k{i}"))
                    .payload("{}")
                    .partition(i as i32)
                    .timestamp(t.timestamp_millis()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let newest =
        fhir_push::catch_up::newest_record_time(&kafka, &probe, &topic, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(
        newest.map(|t| t.timestamp_millis()),
        Some(stamps[1].timestamp_millis())
    );
    let (last_heard, capped) =
        fhir_push::catch_up::initial_last_heard(newest, now, Duration::from_secs(86_400));
    assert!(!capped);
    assert!(
        (now - last_heard).to_std().unwrap() > Duration::from_secs(39 * 60),
        "the look-back covers the downtime"
    );
}

#[tokio::test]
async fn max_rows_continues_at_the_next_step_and_an_outage_keeps_the_window() {
    let stack = Stack::get().await;
    let sim = sim().await;
    let mut cc = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().unwrap()),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    cc.rate_limit.qps = 200.0;
    cc.rate_limit.token_requests_per_minute = 60;
    cc.retry.max_attempts = 1;
    cc.scopes = common::push_scopes();
    let client = AthenaClient::new(cc).unwrap();
    let practice = client.practice(PRACTICE);
    for feed in [Feed::Patients, Feed::Appointments] {
        practice
            .subscribe(feed, &Subscribe::default())
            .await
            .unwrap();
    }
    let (mut cfg, env) = config(&stack).await;
    cfg.catch_up_max_rows = 3;
    sim.state.generate(20);
    let rows = sim_rows(&sim, "patients").len() + sim_rows(&sim, "appointments").len();
    let want: BTreeSet<String> = changed_data_ids(Feed::Patients, &sim_rows(&sim, "patients"))
        .into_iter()
        .chain(changed_data_ids(
            Feed::Appointments,
            &sim_rows(&sim, "appointments"),
        ))
        .collect();
    assert!(rows > 6, "enough rows to truncate: {rows}");
    let codec = connector_core::avro::AvroCodec::new(env.registry.clone()).unwrap();
    let heard = chrono::Utc::now();
    let mut cu = fhir_push::catch_up::CatchUp::new(
        "steps",
        &cfg,
        &codec,
        env.kafka.build_producer().unwrap(),
        client.clone(),
        heard,
    )
    .await
    .unwrap();

    // The first step reads at most 3 rows per feed and stays pending.
    let first = cu.step().await;
    assert!(first.truncated && !first.complete, "{first:?}");
    assert!(cu.pending());
    assert!(first.events <= 6);
    assert_eq!(
        cu.last_heard(),
        heard,
        "a truncated catch-up does not move last_heard"
    );

    // An outage of the appointments feed: reported, retried later, window kept.
    sim.state.inject(
        athena_sim::FaultRule::new(
            athena_sim::Fault::Status {
                code: 500,
                retry_after: None,
                body: None,
            },
            1000,
        )
        .path("/appointments/changed"),
    );
    let failed = cu.step().await;
    assert!(!failed.complete && cu.pending(), "{failed:?}");
    assert!(
        failed
            .failures
            .iter()
            .any(|f| f.feed == Feed::Appointments && !f.not_subscribed),
        "{failed:?}"
    );
    assert_eq!(cu.last_heard(), heard);
    sim.state.clear_faults();

    let mut total = first.events + failed.events;
    let mut steps = 2;
    loop {
        let r = cu.step().await;
        assert!(r.failures.is_empty(), "{r:?}");
        total += r.events;
        steps += 1;
        if r.complete {
            break;
        }
        assert!(steps < 50, "the catch-up makes progress");
    }
    assert!(!cu.pending());
    assert!(
        cu.last_heard() > heard,
        "a finished catch-up moves last_heard"
    );
    assert_eq!(
        total,
        want.len(),
        "every distinct change exactly once, none skipped"
    );
    let (patients, appointments) = produced(&stack, &cfg).await;
    let got: BTreeSet<String> = patients
        .iter()
        .map(|e| e.envelope.event_id.clone())
        .chain(appointments.iter().map(|e| e.envelope.event_id.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        patients.len() + appointments.len(),
        want.len(),
        "no duplicates"
    );
    // Nothing was marked processed.
    assert_eq!(
        sim.state.pending_changes(PRACTICE, "patients")
            + sim.state.pending_changes(PRACTICE, "appointments"),
        rows
    );
    sim.shutdown().await;
}

//! FHIR push on the real broker and registry, against the simulator's push platform.
//!
//! - forged, unsigned and wrongly signed notifications get 401 and nothing reaches Kafka;
//! - the whole connector (`run`): subscriptions created from config, a simulated change pushed,
//!   signed, made durable, inflated into a `PatientChanged` with the shared event id;
//! - the receiver *process* killed after Kafka acknowledged but before it answered: the
//!   simulator retries, and after dedup exactly one event comes out;
//! - Kafka unreachable (the receiver's bootstrap goes through a TCP proxy the test stops): no
//!   2xx, then once the proxy is back the retried notification lands, nothing lost.

use std::sync::Arc;
use std::time::Duration;

use athena_connect_tests::{Stack, TcpProxy};
use athena_contracts::mapping::{MapContext, changed_data_event};
use athena_contracts::{PatientChanged, SourceKind, TimestampMillis};
use athena_sim::{NewPatient, RunningSim, SimConfig};
use connector_core::Secret;
use connector_core::avro::AvroCodec;
use connector_core::runtime::RunEnv;
use fhir_push::adapter::{AthenaAdapter, PushAdapter, SubscriptionSpec};
use fhir_push::inflate::Inflater;
use fhir_push::signature::sign;
use rdkafka::message::Message;

mod common;
use common::{
    PRACTICE, RunProcess, SECRET, athena, config, free_port, high_watermark, patient_bundle,
    run_toml, wait_for, wait_listening,
};

async fn codec(env: &RunEnv) -> AvroCodec {
    AvroCodec::new(env.registry.clone()).unwrap()
}

#[tokio::test]
async fn forged_unsigned_and_wrongly_signed_get_401_and_nothing_reaches_kafka() {
    let stack = Stack::get().await;
    let (state, _gap, topic) = common::receiver_on_new_topic(&stack, "t").await;
    let kafka = stack.kafka();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = fhir_push::receiver::router(state, 64 * 1024);
    tokio::spawn(fhir_push::receiver::serve(
        listener,
        app,
        std::future::pending(),
    ));
    let url = format!("http://{addr}/notifications");
    let http = reqwest::Client::new();
    let body = patient_bundle("e-1", "1");
    let other = patient_bundle("e-2", "1");
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("unsigned", None, &body),
        (
            "forged with another key",
            Some(sign(b"not-the-secret", body.as_bytes())),
            &body,
        ),
        // A captured signature replayed over a different body.
        (
            "replayed signature",
            Some(sign(SECRET.as_bytes(), other.as_bytes())),
            &body,
        ),
        ("garbage header", Some("sha256=00ff".into()), &body),
        (
            "other method",
            Some(sign(SECRET.as_bytes(), body.as_bytes()).replace("sha256", "sha1")),
            &body,
        ),
    ];
    for (what, sig, b) in cases {
        let mut rb = http.post(&url).body(b.to_string());
        if let Some(s) = sig {
            rb = rb.header("X-Hub-Signature", s);
        }
        let status = rb.send().await.unwrap().status().as_u16();
        assert_eq!(status, 401, "{what}");
    }
    // Re-serialised JSON (whitespace differs) with the original signature is refused too.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .unwrap();
    let status = http
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(pretty)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    // Over the body limit: 413, nothing produced.
    let big = "x".repeat(70 * 1024);
    let status = http
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), big.as_bytes()))
        .body(big)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 413);
    assert_eq!(high_watermark(&kafka, &topic), 0, "nothing reached Kafka");
    // A heartbeat is acknowledged without producing.
    let hb = r#"{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"heartbeat"}}]}"#;
    let status = http
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), hb.as_bytes()))
        .body(hb)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(high_watermark(&kafka, &topic), 0);
    // The correctly signed one is accepted and is the only record.
    let status = http
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(high_watermark(&kafka, &topic), 1);
    let got = stack.consume(&topic, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got[0].payload().unwrap(),
        body.as_bytes(),
        "stored byte for byte"
    );
}

#[tokio::test]
async fn connector_subscribes_receives_and_inflates_with_shared_event_ids() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let client = athena(&sim);
    let port = free_port();
    let (mut cfg, env) = config(&stack, port);
    cfg.subscription_topics.extend([
        "Appointment.check-in".to_string(),
        "Encounter.check-in".to_string(),
    ]);
    for t in [
        cfg.patients_topic(),
        cfg.appointments_topic(),
        cfg.fhir_resources_topic(),
    ] {
        stack.create_topic(&t, 2).await;
    }
    let (control, handle) = connector_core::runtime::task("push", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), client.clone());
        tokio::spawn(async move { fhir_push::run("push", &cfg, &env, &client, control).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.state.push().subscriptions.lock().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions not created: {:?} {:?}",
            handle.status(),
            sim.state
                .push()
                .subscriptions
                .lock()
                .values()
                .map(|s| s.topic.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idempotent management: a second pass creates nothing.
    let adapter = AthenaAdapter::new(Secret::new(SECRET));
    let specs = fhir_push::subscription_specs(&cfg);
    let again = fhir_push::manage::reconcile(
        &client,
        &adapter,
        adapter.hub_secret().as_ref(),
        &specs,
        true,
    )
    .await
    .unwrap();
    assert!(
        again.iter().all(|s| !s.created && s.status == "active"),
        "{again:?}"
    );
    assert_eq!(sim.state.push().subscriptions.lock().len(), 4);

    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Synth",
            "Pushtest",
            chrono::NaiveDate::from_ymd_opt(1980, 5, 6).unwrap(),
        ),
    );
    let got = stack
        .consume(&cfg.patients_topic(), 1, Duration::from_secs(60))
        .await;
    let ev: PatientChanged = stack
        .codec()
        .decode(got[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(ev.payload.patient_id, patient);
    assert_eq!(ev.envelope.source, SourceKind::FhirPush);
    assert_eq!(
        connector_core::headers::get_str(got[0].headers().unwrap(), "event_id"),
        Some(ev.envelope.event_id.as_str()),
        "the event_id header matches the envelope"
    );
    assert_eq!(ev.envelope.event_name.as_deref(), Some("Patient.create"));
    // The same event (id and whole payload) the changed-data path maps from the same record;
    // only the envelope's per-path fields differ, and are checked as such.
    let rec = client
        .practice(PRACTICE)
        .get_patient(&patient)
        .await
        .unwrap();
    let practice = PRACTICE.to_string();
    let (mut expected, _) = changed_data_event::<PatientChanged>(
        &MapContext {
            practice_id: &practice,
            observed_at: TimestampMillis(0),
            replayed: false,
            keep_original: cfg.include_original,
        },
        &rec.raw,
    );
    assert_eq!(ev.envelope.event_id, expected.envelope.event_id);
    assert_eq!(
        (
            expected.envelope.source,
            expected.envelope.event_name.as_deref()
        ),
        (SourceKind::ChangedData, None),
        "changed data: its source, no event name"
    );
    assert!(!ev.envelope.replayed && !ev.envelope.snapshot);
    assert!(ev.envelope.observed_at > TimestampMillis(0));
    expected.envelope.source = SourceKind::FhirPush;
    expected.envelope.event_name = Some("Patient.create".into());
    expected.envelope.observed_at = ev.envelope.observed_at;
    assert_eq!(
        ev, expected,
        "push inflation and changed data: the same event"
    );
    assert_eq!(
        got[0]
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        Some(format!("{PRACTICE}/{patient}"))
    );
    assert!(
        sim.state
            .push()
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    common::stop(handle, task).await;
    sim.shutdown().await;
}

/// The push connector's receiver as a real process: `athena-connect run --only receiver` with
/// `role = "receiver"` (the webhook alone, durable on Kafka before 2xx); with `crash`, it dies
/// right after Kafka acknowledged a notification, before it answers.
fn start_receiver(bootstrap: &str, port: u16, topic: &str, crash: bool) -> RunProcess {
    let toml = run_toml(
        bootstrap,
        r#"[kafka.producer]
# Fail deliveries fast when Kafka is away: the receiver answers 503 anyway, and a message that
# lingers only turns into a harmless duplicate.
"message.timeout.ms" = "30000""#,
        "http://127.0.0.1:1/unused",
        "http://127.0.0.1:1",
        &format!(
            r#"[sources.fhir_push.receiver]
role = "receiver"
practice_id = {PRACTICE}
secret = "${{FHIR_PUSH_SECRET}}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}/notifications"
notifications_topic = "{topic}"
ack_budget = "1500ms"
manage_subscriptions = false"#
        ),
    );
    let env: &[(&str, &str)] = if crash {
        &[("FHIR_PUSH_CRASH_AFTER_DURABLE", "1")]
    } else {
        &[]
    };
    RunProcess::spawn(&toml, &["--only", "receiver"], env)
}

async fn subscribe(sim: &RunningSim, port: u16) {
    let client = athena(sim);
    let adapter = AthenaAdapter::new(Secret::new(SECRET));
    let spec = SubscriptionSpec {
        topic: "Patient.create".into(),
        endpoint: format!("http://127.0.0.1:{port}/notifications"),
        practice_id: PRACTICE,
    };
    fhir_push::manage::reconcile(
        &client,
        &adapter,
        adapter.hub_secret().as_ref(),
        &[spec],
        false,
    )
    .await
    .unwrap();
}

/// Inflates every notification on `cfg.notifications_topic` through a fresh `Inflater` and
/// returns how many events each produced.
async fn inflate_all(
    stack: &Stack,
    cfg: &fhir_push::Config,
    env: &RunEnv,
    sim: &RunningSim,
    n: usize,
) -> Vec<usize> {
    let adapter: Arc<dyn PushAdapter> = Arc::new(AthenaAdapter::new(Secret::new(SECRET)));
    let mut inflater = Inflater::new(
        "t",
        cfg,
        adapter,
        &codec(env).await,
        env.kafka.build_producer().unwrap(),
        athena(sim),
    )
    .await
    .unwrap();
    let raw = stack
        .consume(&cfg.notifications_topic, n, Duration::from_secs(30))
        .await;
    let mut out = Vec::new();
    for m in raw {
        out.push(inflater.handle(m.payload().unwrap()).await.unwrap());
    }
    out
}

#[tokio::test]
async fn receiver_killed_after_produce_before_answer_gives_exactly_one_event() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        push_retry_interval: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let (cfg, env) = config(&stack, port);
    stack.create_topic(&cfg.notifications_topic, 2).await;

    stack.create_topic(&cfg.patients_topic(), 1).await;
    let mut crashing = start_receiver(&stack.bootstrap, port, &cfg.notifications_topic, true);
    wait_listening(port).await;
    subscribe(&sim, port).await;
    sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Synth",
            "Killtest",
            chrono::NaiveDate::from_ymd_opt(1970, 1, 2).unwrap(),
        ),
    );
    // The receiver dies right after Kafka acknowledged, before answering.
    let status = tokio::task::spawn_blocking(move || crashing.0.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(137), "crash hook fired");
    assert_eq!(high_watermark(&env.kafka, &cfg.notifications_topic), 1);
    let push = sim.state.push();
    assert_eq!(push.delivered.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Restarted, the receiver takes athena's retry of the same notification.
    let _receiver = start_receiver(&stack.bootstrap, port, &cfg.notifications_topic, false);
    wait_for("the retried delivery", Duration::from_secs(60), || {
        push.delivered.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    assert!(push.attempts.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    // The restarted receiver rebuilt its replay memory from the notifications topic, so
    // athena's retry of the copy that was already durable is answered without a new record.
    assert_eq!(
        high_watermark(&env.kafka, &cfg.notifications_topic),
        1,
        "the retry is recognised as a replay across the restart"
    );
    let produced = inflate_all(&stack, &cfg, &env, &sim, 1).await;
    assert_eq!(
        produced.iter().sum::<usize>(),
        1,
        "dedup leaves exactly one event: {produced:?}"
    );
    assert_eq!(high_watermark(&env.kafka, &cfg.patients_topic()), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn with_kafka_unreachable_no_2xx_and_nothing_lost_after_it_returns() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        push_retry_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let (cfg, env) = config(&stack, port);
    stack.create_topic(&cfg.notifications_topic, 2).await;
    stack.create_topic(&cfg.patients_topic(), 1).await;
    // The proxy starts down: the receiver cannot reach any broker.
    let mut proxy = TcpProxy::new(&stack.bootstrap);
    let _receiver = start_receiver(
        &proxy.addr().to_string(),
        port,
        &cfg.notifications_topic,
        false,
    );
    wait_listening(port).await;
    subscribe(&sim, port).await;
    let push = sim.state.push();

    // A direct, correctly signed post: 503, not 2xx.
    let body = patient_bundle("direct-1", "1");
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/notifications"))
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 503);

    sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Synth",
            "Downtest",
            chrono::NaiveDate::from_ymd_opt(1971, 3, 4).unwrap(),
        ),
    );
    wait_for(
        "three failed delivery attempts",
        Duration::from_secs(60),
        || push.attempts.load(std::sync::atomic::Ordering::Relaxed) >= 3,
    )
    .await;
    assert_eq!(
        push.delivered.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "never 2xx while Kafka is away"
    );

    // Kafka "returns".
    proxy.start().await;
    wait_for(
        "delivery after Kafka returned",
        Duration::from_secs(90),
        || push.delivered.load(std::sync::atomic::Ordering::Relaxed) == 1,
    )
    .await;
    assert!(push.dead_letters.lock().is_empty());
    // Copies queued while Kafka was away may land too; whatever landed, one event per change
    // (plus the direct post's patient 1) comes out.
    let n = high_watermark(&env.kafka, &cfg.notifications_topic) as usize;
    assert!(n >= 1);
    let produced = inflate_all(&stack, &cfg, &env, &sim, n).await;
    let patients = stack
        .consume(
            &cfg.patients_topic(),
            produced.iter().sum(),
            Duration::from_secs(30),
        )
        .await;
    let mut ids = Vec::new();
    for m in &patients {
        let ev: PatientChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        ids.push(ev.payload.patient_id);
    }
    ids.sort();
    ids.dedup();
    assert!(ids.len() == patients.len(), "no duplicate events: {ids:?}");
    assert!(
        ids.iter().any(|i| i != "1"),
        "the pushed change arrived: {ids:?}"
    );
    proxy.stop();
    sim.shutdown().await;
}

/// A simulator that retries a failed push every 200 ms and gives up after 1 s.
async fn fast_giving_up_sim() -> RunningSim {
    RunningSim::start(SimConfig {
        push_retry_interval: Duration::from_millis(200),
        push_retry_for: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Subscribes `Patient.create` to `port` (where nobody listens), adds a patient and waits until
/// the simulator gives up on that notification: the dead letter.
async fn dead_letter_one(sim: &RunningSim, port: u16) -> athena_sim::push::DeadDelivery {
    subscribe(sim, port).await;
    sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Synth",
            "Deadtest",
            chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
        ),
    );
    let push = sim.state.push();
    wait_for("a dead letter", Duration::from_secs(30), || {
        !push.dead_letters.lock().is_empty()
    })
    .await;
    push.dead_letters.lock()[0].clone()
}

#[tokio::test]
async fn simulator_retries_for_the_configured_period_then_dead_letters() {
    let sim = fast_giving_up_sim().await;
    // Nobody listens on this port.
    let dead = dead_letter_one(&sim, free_port()).await;
    let push = sim.state.push();
    assert!(dead.attempts >= 3, "retried: {}", dead.attempts);
    assert_eq!(push.delivered.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(dead.body.contains("event-notification"));
    sim.shutdown().await;
}

/// Serves `state` on `port` until the returned sender is dropped or fired.
async fn serve_on(
    port: u16,
    state: fhir_push::receiver::ReceiverState,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = fhir_push::receiver::router(state, 64 * 1024);
    let task = tokio::spawn(fhir_push::receiver::serve(listener, app, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

#[tokio::test]
async fn dead_letters_replayed_after_an_outage_land_once_max_event_age_covers_them() {
    let stack = Stack::get().await;
    let sim = fast_giving_up_sim().await;
    let port = free_port();
    // The receiver is down: the notification is retried for a second, then dead-lettered.
    let dead = dead_letter_one(&sim, port).await;
    let push = sim.state.push();
    let topic = athena_connect_tests::unique("push.notifications");
    stack.create_topic(&topic, 1).await;
    let kafka = stack.kafka();

    // Up again, but with a max_event_age shorter than the outage: the replay is refused (422)
    // and athena parks it again; nothing reaches Kafka.
    let (state, _gap) = common::receiver_state(&kafka, "dl-strict", &topic);
    let (stop, task) = serve_on(port, state.with_max_event_age(Duration::from_millis(500))).await;
    let attempts = push.attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sim.state.replay_dead_letters(&dead.subscription), 1);
    wait_for(
        "the refused replay parked again",
        Duration::from_secs(30),
        || {
            push.attempts.load(std::sync::atomic::Ordering::Relaxed) > attempts
                && push.dead_letters.lock().len() == 1
        },
    )
    .await;
    assert_eq!(push.delivered.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        high_watermark(&kafka, &topic),
        0,
        "a stale event is not recorded"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    // With max_event_age raised to cover the outage (docs/connectors/fhir-push.md), the replay
    // through the admin route lands exactly once.
    let guard = Arc::new(fhir_push::replay::ReplayGuard::new(
        Duration::from_secs(3 * 3600),
        1000,
    ));
    let (state, _gap) = common::receiver_state(&kafka, "dl", &topic);
    let state = state
        .with_max_event_age(Duration::from_secs(2 * 3600))
        .with_replay_guard(guard);
    let (stop, task) = serve_on(port, state).await;
    let replayed: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/_sim/push/subscriptions/{}/replay",
            sim.base_url, dead.subscription
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 1);
    wait_for("the replayed delivery", Duration::from_secs(30), || {
        push.delivered.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    assert!(push.dead_letters.lock().is_empty());
    assert_eq!(high_watermark(&kafka, &topic), 1);
    // The same bytes again (a second replay, or a captured copy): replay protection answers
    // 200 without a new record.
    let status = common::post(&reqwest::Client::new(), port, &dead.body).await;
    assert_eq!(status, 200);
    assert_eq!(
        high_watermark(&kafka, &topic),
        1,
        "remembered, not recorded twice"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn subscription_management_creates_reports_and_deletes() {
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let client = athena(&sim);
    let adapter = AthenaAdapter::new(Secret::new(SECRET));
    let specs: Vec<SubscriptionSpec> = ["Patient.create", "Appointment.cancel"]
        .iter()
        .map(|t| SubscriptionSpec {
            topic: t.to_string(),
            endpoint: "https://hooks.example.invalid/athena".into(),
            practice_id: PRACTICE,
        })
        .collect();
    let st = fhir_push::manage::status(&client, &adapter, &specs)
        .await
        .unwrap();
    assert!(st.iter().all(|s| s.status == "missing"));
    let created = fhir_push::manage::reconcile(
        &client,
        &adapter,
        adapter.hub_secret().as_ref(),
        &specs,
        true,
    )
    .await
    .unwrap();
    assert!(created.iter().all(|s| s.created && s.id.is_some()));
    // The shared secret went along (the simulator signs with it) and is not in the listing.
    let subs = sim.state.push().subscriptions.lock().clone();
    assert!(subs.values().all(|s| s.secret.as_deref() == Some(SECRET)));
    let listed = client.list_subscriptions().await.unwrap();
    assert!(!serde_json::to_string(&listed).unwrap().contains(SECRET));
    // Dropping a topic from the config deletes its subscription on the next ensure.
    let kept = fhir_push::manage::reconcile(
        &client,
        &adapter,
        adapter.hub_secret().as_ref(),
        &specs[..1],
        true,
    )
    .await
    .unwrap();
    assert!(!kept[0].created);
    assert_eq!(sim.state.push().subscriptions.lock().len(), 1);
    let st = fhir_push::manage::status(&client, &adapter, &specs)
        .await
        .unwrap();
    assert_eq!(st[0].status, "active");
    assert_eq!(st[1].status, "missing");
    assert_eq!(
        fhir_push::manage::delete_all(&client, &adapter, &specs)
            .await
            .unwrap(),
        1
    );
    assert!(sim.state.push().subscriptions.lock().is_empty());
    // Deleting an unknown id counts as done.
    fhir_push::manage::delete(&client, "00000000-0000-4000-8000-000000000000")
        .await
        .unwrap();
    sim.shutdown().await;
}

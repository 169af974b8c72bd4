//! The push connector's edges on the real broker and registry (issue 11):
//!
//! - the versioned-reference notification that once stopped push ingestion for good is inflated
//!   (or counted and skipped) and a garbage reference is dead-lettered with the real stage and
//!   class, while later notifications still flow and the connector stays RUNNING;
//! - a few hundred slow clients (partial request head) are disconnected within the header-read
//!   timeout while a signed notification sent meanwhile is answered 2xx;
//! - the same signed notification posted many times gives one record, also across a restart
//!   of the connector (replay protection rebuilt from the notifications topic);
//! - a replayed heartbeat does not reset the gap timer.

use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::PatientChanged;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use connector_core::http_server::HttpServerConfig;
use connector_core::runtime::{RunEnv, TaskHandle, TaskState};
use fhir_push::signature::sign;
use rdkafka::message::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{
    PRACTICE, SECRET, athena, event_bundle, free_port, header, high_watermark, post, stop,
    wait_listening,
};

/// The shared config without subscription management or catch-up (the tests post directly).
fn config(stack: &Stack, port: u16) -> (fhir_push::Config, RunEnv) {
    let (mut c, env) = common::config(stack, port);
    c.subscription_topics.clear();
    c.manage_subscriptions = false;
    c.catch_up = false;
    (c, env)
}

/// The stack, a simulator, a port and a config whose output and dead-letter topics exist.
async fn setup() -> (Stack, RunningSim, u16, fhir_push::Config, RunEnv) {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let port = free_port();
    let (cfg, env) = config(&stack, port);
    for t in [
        cfg.patients_topic(),
        cfg.appointments_topic(),
        cfg.fhir_resources_topic(),
        format!("{}.dlq", cfg.notifications_topic),
    ] {
        stack.create_topic(&t, 1).await;
    }
    (stack, sim, port, cfg, env)
}

type Running = (
    TaskHandle,
    tokio::task::JoinHandle<Result<(), fhir_push::Error>>,
);

/// Starts the whole connector (`fhir_push::run`) and waits until its receiver listens.
async fn start(cfg: &fhir_push::Config, env: &RunEnv, sim: &RunningSim, port: u16) -> Running {
    let (control, handle) = connector_core::runtime::task("push", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), athena(sim));
        tokio::spawn(async move { fhir_push::run("push", &cfg, &env, &client, control).await })
    };
    wait_listening(port).await;
    (handle, task)
}

#[tokio::test]
async fn versioned_and_garbage_focus_never_stop_the_connector() {
    let (stack, sim, port, cfg, env) = setup().await;
    let running = start(&cfg, &env, &sim, port).await;
    let http = reqwest::Client::new();

    // The exact notification from the report: a versioned Encounter reference.
    let versioned = event_bundle(
        "11111111-0000-4000-8000-000000000001",
        serde_json::json!({"reference": "Encounter/a-195900.encounter-1/_history/2"}),
    );
    assert_eq!(post(&http, port, &versioned).await, 200);
    // A reference that can never be read, and no identifier to fall back on.
    let garbage = event_bundle(
        "11111111-0000-4000-8000-000000000002",
        serde_json::json!({"reference": "Encounter/_history/2"}),
    );
    assert_eq!(post(&http, port, &garbage).await, 200);
    // A later notification, itself a versioned reference to a patient that exists.
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Synth",
            "Versioned",
            chrono::NaiveDate::from_ymd_opt(1975, 3, 4).unwrap(),
        ),
    );
    let later = event_bundle(
        "11111111-0000-4000-8000-000000000003",
        serde_json::json!({"reference": format!("Patient/a-{PRACTICE}.E-{patient}/_history/7")}),
    );
    assert_eq!(post(&http, port, &later).await, 200);

    let got = stack
        .consume(&cfg.patients_topic(), 1, Duration::from_secs(60))
        .await;
    let ev: PatientChanged = stack
        .codec()
        .decode(got[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(ev.payload.patient_id, patient, "later notifications flow");

    let dead = stack
        .consume(
            &format!("{}.dlq", cfg.notifications_topic),
            1,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        dead[0].payload().unwrap(),
        garbage.as_bytes(),
        "the unreadable notification is dead-lettered byte for byte"
    );
    assert_eq!(header(&dead[0], "__connect.errors.stage"), Some("TASK_PUT"));
    assert_eq!(
        header(&dead[0], "__connect.errors.exception.class.name"),
        Some("fhir_push::UnsupportedFocus")
    );
    // The versioned Encounter is not in the simulator (404): counted and skipped, not
    // dead-lettered, so the DLQ holds exactly the garbage one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        high_watermark(&env.kafka, &format!("{}.dlq", cfg.notifications_topic)),
        1
    );
    let status = running.0.status();
    assert_eq!(status.state, TaskState::Running, "{status:?}");
    assert!(!running.1.is_finished(), "the connector is still running");
    stop(running.0, running.1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn same_notification_posted_many_times_gives_one_record_also_across_a_restart() {
    let (_stack, sim, port, cfg, env) = setup().await;
    let body = event_bundle(
        "22222222-0000-4000-8000-000000000001",
        serde_json::json!({"reference": format!("Patient/a-{PRACTICE}.E-999999")}),
    );
    let http = reqwest::Client::new();
    for round in 0..2 {
        let running = start(&cfg, &env, &sim, port).await;
        for i in 0..20 {
            assert_eq!(
                post(&http, port, &body).await,
                200,
                "round {round} copy {i}"
            );
        }
        assert_eq!(
            high_watermark(&env.kafka, &cfg.notifications_topic),
            1,
            "round {round}: one record for 20 copies"
        );
        stop(running.0, running.1).await;
        // The port is free again before the next round binds it.
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A notification whose events are older than max_event_age is refused, not recorded.
    let running = start(&cfg, &env, &sim, port).await;
    let old =
        serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "event-notification",
        "subscription": {"reference": "Subscription/s1"},
        "notificationEvent": [{"id": "22222222-0000-4000-8000-000000000002",
            "timestamp": (chrono::Utc::now() - chrono::Duration::hours(5)).to_rfc3339(),
            "focus": {"reference": "Patient/a-195900.E-1"}}]}}]})
        .to_string();
    assert_eq!(post(&http, port, &old).await, 422);
    assert_eq!(high_watermark(&env.kafka, &cfg.notifications_topic), 1);
    stop(running.0, running.1).await;
    sim.shutdown().await;
}

fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_a_signed_notification_gets_through() {
    let stack = Stack::get().await;
    let (state, gap, topic) = common::receiver_on_new_topic(&stack, "slow").await;
    let kafka = stack.kafka();
    let app = fhir_push::receiver::router(state, 64 * 1024);
    let limits = HttpServerConfig {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 1024,
        ..HttpServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(connector_core::http_server::serve(
            listener,
            None,
            app,
            limits.clone(),
            "slow",
            async move { stop.cancelled().await },
        ))
    };
    let rss_before = rss_kib();

    // 300 clients that send a partial request line and headers, then nothing.
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let partial = if i % 2 == 0 {
            "POST /notifications HT".to_string()
        } else {
            "POST /notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 10".to_string()
        };
        s.write_all(partial.as_bytes()).await.unwrap();
        slow.push(s);
    }
    // Meanwhile a correctly signed notification is answered 2xx.
    let body = event_bundle(
        "33333333-0000-4000-8000-000000000001",
        serde_json::json!({"reference": "Patient/a-195900.E-1"}),
    );
    let status = reqwest::Client::new()
        .post(format!("http://{addr}/notifications"))
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    assert_eq!(high_watermark(&kafka, &topic), 1);

    // Every slow client is disconnected: its read reaches EOF (or a reset). The guard is far
    // above the 2 s timeout only so a loaded machine cannot fail the test; 40 s is what the
    // report saw them survive before.
    let guard = Duration::from_secs(30);
    let mut closed = 0;
    for mut s in slow {
        let mut buf = Vec::new();
        match tokio::time::timeout(guard, s.read_to_end(&mut buf)).await {
            Ok(_) => closed += 1,
            Err(_) => panic!("a slow client is still connected after {guard:?}"),
        }
    }
    assert_eq!(closed, 300);
    let rss_after = rss_kib();
    eprintln!(
        "RSS of the test process: before {rss_before:?} KiB, after 300 slow clients {rss_after:?} KiB"
    );

    // A replayed heartbeat does not count as liveness (it would hide a gap).
    let hb =
        serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "heartbeat",
        "subscription": {"reference": "Subscription/s9"},
        "eventsSinceSubscriptionStart": "12"}}]})
        .to_string();
    let http = reqwest::Client::new();
    let send_hb = || {
        http.post(format!("http://{addr}/notifications"))
            .header("X-Hub-Signature", sign(SECRET.as_bytes(), hb.as_bytes()))
            .body(hb.clone())
            .send()
    };
    assert_eq!(send_hb().await.unwrap().status().as_u16(), 200);
    let first = gap.last_seen_at().expect("a first heartbeat counts");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(send_hb().await.unwrap().status().as_u16(), 200);
    assert_eq!(
        gap.last_seen_at(),
        Some(first),
        "the replayed heartbeat did not reset the gap timer"
    );
    assert_eq!(
        high_watermark(&kafka, &topic),
        1,
        "heartbeats produce nothing"
    );

    stop.cancel();
    tokio::time::timeout(limits.shutdown_timeout + Duration::from_secs(20), server)
        .await
        .expect("server stops within its shutdown deadline")
        .unwrap()
        .unwrap();
}

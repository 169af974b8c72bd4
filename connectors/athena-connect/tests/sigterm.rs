//! SIGTERM during a busy run: the real binary streams changes that a generator keeps creating,
//! gets SIGTERM mid-stream, and must exit 0 (every connector stopped within
//! `shutdown_timeout`; the process exits 1 otherwise). A second run drains what is left; every
//! change the simulator handed out must then be on Kafka: nothing was lost at the stop.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_sim::{RunningSim, SimConfig};
use common::*;
use rdkafka::message::Message;

const FEEDS: [(&str, &str, &str); 2] = [
    ("patients", "athena.patients.v1", "patientid"),
    ("appointments", "athena.appointments.v1", "appointmentid"),
];

/// Entity ids of every row the simulator queued on the subscribed feeds.
fn sim_ids(sim: &RunningSim, feed: &str, id_field: &str) -> BTreeSet<String> {
    sim.state
        .with_practice(PRACTICE, |p| {
            p.feeds
                .iter()
                .filter(|(path, _)| **path == feed)
                .flat_map(|(_, f)| f.rows.iter())
                .filter_map(|r| match &r.snapshot[id_field] {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_exits_cleanly_without_loss() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let prefix = format!("{}.", unique("sigterm"));
    let section = format!(
        r#"
[sources.changed_data.src]
practices = ["{PRACTICE}"]
topic_prefix = "{prefix}"
state_topic = "{prefix}state"
topic_partitions = 3
poll_interval = "200ms"
max_poll_interval = "1s"
page_size = 20

[sources.changed_data.src.feeds]
patients = {{}}
appointments = {{}}
"#
    );
    let config = base_config(&stack, &sim.base_url, "json", &section);

    // Busy: changes keep coming while the connector runs and while it stops.
    let generating = Arc::new(AtomicBool::new(true));
    let generator = {
        let state = sim.state.clone();
        let on = generating.clone();
        tokio::spawn(async move {
            while on.load(Ordering::SeqCst) {
                state.generate(5);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut first = Proc::start(&config, &[]);
    wait_state(&first.admin, "src", "RUNNING", Duration::from_secs(60)).await;
    let kafka = stack.kafka();
    let early = read_topic(
        &kafka,
        &format!("{prefix}athena.patients.v1"),
        Duration::from_secs(90),
        |m| m.len() >= 10,
    )
    .await;
    assert!(
        early.len() >= 10,
        "the source never got busy:\n{}",
        first.output()
    );

    // Alone, the instance owns both tasks, and says so in its status and metrics (decision 0025).
    let mut seen = Vec::new();
    let status = admin_call(
        &first.admin,
        "GET",
        "/connectors/src/status",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&status.text).expect("status JSON");
    let owned: BTreeSet<&str> = v["ownership"]["owned"]
        .as_array()
        .expect("ownership.owned")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    let want: BTreeSet<String> = FEEDS
        .iter()
        .map(|(feed, _, _)| format!("{PRACTICE}/{feed}"))
        .collect();
    assert_eq!(
        owned,
        want.iter().map(String::as_str).collect(),
        "{}",
        status.text
    );
    assert_eq!(v["ownership"]["tasks_total"], 2, "{}", status.text);
    assert!(
        !v["ownership"]["worker_id"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{}",
        status.text
    );
    let metrics = admin_call(
        &first.admin,
        "GET",
        "/metrics",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert!(
        metrics
            .text
            .contains("source_owned_tasks{connector=\"src\"} 2"),
        "{}",
        metrics.text
    );

    first.sigterm();
    let code = first.wait_exit(Duration::from_secs(90)).await;
    let out = first.output();
    assert_eq!(code, 0, "exit code after SIGTERM:\n{out}");
    assert!(out.contains("Shutdown requested"), "{out}");
    assert!(out.contains("stopped cleanly"), "{out}");

    // Second run drains whatever the first left behind.
    generating.store(false, Ordering::SeqCst);
    generator.await.unwrap();
    let mut second = Proc::start(&config, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while FEEDS
        .iter()
        .any(|(feed, _, _)| sim.state.pending_changes(PRACTICE, feed) > 0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second run did not drain the feeds:\n{}",
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.sigterm();
    let code = second.wait_exit(Duration::from_secs(90)).await;
    assert_eq!(code, 0, "{}", second.output());

    // Where the source stands, from the CLI; with the process stopped a reset is allowed.
    let (code, out) = cli(
        &["offsets", "show", "--connector", "src"],
        &second.config_path,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("src/{PRACTICE}/patients")), "{out}");
    let (code, out) = cli(
        &["offsets", "reset", "--connector", "src"],
        &second.config_path,
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        &["offsets", "show", "--connector", "src"],
        &second.config_path,
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("src/"), "cursors left after reset: {out}");

    for (feed, topic, id_field) in FEEDS {
        let want = sim_ids(&sim, feed, id_field);
        assert!(!want.is_empty(), "the simulator queued no {feed} changes");
        eprintln!("{feed}: {} changed entities to find on Kafka", want.len());
        let topic = format!("{prefix}{topic}");
        let got = read_topic(&kafka, &topic, Duration::from_secs(60), |msgs| {
            let keys: BTreeSet<String> = msgs
                .iter()
                .filter_map(|m| m.key())
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            want.iter()
                .all(|id| keys.contains(&format!("{PRACTICE}/{id}")))
        })
        .await;
        let keys: BTreeSet<String> = got
            .iter()
            .filter_map(|m| m.key())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let missing: Vec<&String> = want
            .iter()
            .filter(|id| !keys.contains(&format!("{PRACTICE}/{id}")))
            .collect();
        assert!(
            missing.is_empty(),
            "{feed}: {} of {} changed entities never reached {topic}: {missing:?}",
            missing.len(),
            want.len()
        );
    }
}

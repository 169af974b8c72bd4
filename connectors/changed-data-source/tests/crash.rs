//! The crash test: the source as a real process (`athena-connect run --only crash`) is killed
//! with SIGKILL at random moments (at least 10 times) and restarted while the simulator (in this test process, so it
//! outlives every kill) keeps generating changes. Afterwards every change the simulator handed
//! out is on Kafka, and every message carries the event id of a change it handed out (so a
//! duplicate carries its original's id). In exactly-once mode a `read_committed` reader sees no
//! change more often than the simulator handed it out.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, unique};
use athena_sim::{RunningSim, SimConfig};
use common::*;
use rand::Rng;
use tokio::process::Child;

const FEEDS: &[Feed] = &[
    Feed::Patients,
    Feed::Appointments,
    Feed::Problems,
    Feed::LabResults,
    Feed::Claims,
];
const KILLS: usize = 10;

fn write_config(dir: &Path, stack: &Stack, sim_url: &str, prefix: &str, mode: &str) -> String {
    let section = connector_toml(
        prefix,
        FEEDS,
        &format!("mode = \"{mode}\"\npage_size = 20\nreplay_margin = \"2s\""),
    );
    run_config(dir, stack, sim_url, "crash", &section)
}

fn spawn(config: &str, log: &Path) -> Child {
    spawn_run(config, "crash", log, &[])
}

async fn crash_and_restart(mode: &str) {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        token_rate_limit_per_minute: 10_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique(&format!("cds.crash.{mode}"));
    let config = write_config(dir.path(), &stack, &sim.base_url, &prefix, mode);
    let log = dir.path().join("connector.log");

    // The generator: about 100 changes a second until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (state, stop) = (sim.state.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                state.generate(2);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let mut rng = rand::rng();
    for i in 0..KILLS {
        let mut child = spawn(&config, &log);
        if i == 0 {
            wait_subscribed(&sim.state, FEEDS, Duration::from_secs(60)).await;
        }
        let alive = Duration::from_millis(rng.random_range(1200..4000));
        tokio::time::sleep(alive).await;
        assert!(
            child.try_wait().expect("status").is_none(),
            "the connector exited on its own; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        child.start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL on Unix
        child.wait().await.expect("reaped");
    }
    stop.store(true, Ordering::Relaxed);
    generator.await.expect("generator");

    // A last run drains what is left, then stops on SIGTERM.
    let child = spawn(&config, &log);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while pending(&sim.state, FEEDS) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_run(child, "crash").await;

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let replays = log_text.matches("replaying its window").count();
    let mut handed_total = 0;
    let mut dupes_total = 0;
    for feed in FEEDS {
        let rows = handed_out(&sim.state, *feed);
        handed_total += rows.len();
        let expected = expected_counts(&rows);
        let topic = format!(
            "{prefix}.{}",
            changed_data_source::events::spec(*feed).default_topic
        );
        let msgs = read_all(&stack, &topic);
        let got = id_counts(&msgs);
        let missing: Vec<&String> = expected
            .keys()
            .filter(|id| !got.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{mode} {feed:?}: {} of {} changes lost",
            missing.len(),
            expected.len()
        );
        let unknown: HashSet<&String> = got
            .keys()
            .filter(|id| !expected.contains_key(*id))
            .collect();
        assert!(
            unknown.is_empty(),
            "{mode} {feed:?}: ids that were never handed out"
        );
        for (id, n) in &got {
            let extra = n.saturating_sub(expected[id]);
            dupes_total += extra;
            if mode == "exactly_once" {
                assert_eq!(
                    extra, 0,
                    "{feed:?}: event {id} seen {n} times by read_committed"
                );
            }
        }
    }
    println!(
        "{mode}: {KILLS} SIGKILLs, {handed_total} changes handed out, all on Kafka; \
         {dupes_total} duplicates (same event id); {replays} replays"
    );
    assert!(
        handed_total > 200,
        "too few changes to mean anything: {handed_total}"
    );
    assert!(
        replays > 0,
        "no kill hit a poll in progress; the test proved nothing about replay"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_least_once_loses_nothing() {
    crash_and_restart("at_least_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_exactly_once_no_loss_no_duplicates() {
    crash_and_restart("exactly_once").await;
}

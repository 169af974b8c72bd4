//! The write-back sink as a real process (`athena-connect run --only kill`), killed with
//! SIGKILL at random moments at least ten times during a run of 2000 commands and restarted each time (the simulator runs in this test
//! process and outlives every kill). Afterwards: every command has exactly one result, and
//! athena (the simulator's write ledger) holds each write at most once, exactly when the
//! result says APPLIED. Bookings followed by cancels of the same slot also check per-key order.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use athena_connect_tests::Stack;
use athena_sim::{Fault, FaultRule, SimConfig};
use common::*;
use rand::Rng;

const BOOKINGS: usize = 1500;
const CANCELS: usize = 300;
const CLAIMS: usize = 200;
const CLAIM_PATIENTS: usize = 20;
const KILLS: usize = 10;

fn write_config(dir: &Path, stack: &Stack, sim_url: &str, n: &Names) -> std::path::PathBuf {
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1
[kafka.consumer]
# Static membership: a restarted sink takes over its partitions at once instead of waiting
# for the killed member's session to expire.
"group.instance.id" = "{group}.instance"
"session.timeout.ms" = "10000"

[schema_registry]
url = "{registry}"
subject_strategy = "topic_record_name"
auto_register = true

[athena]
base_url = "{sim_url}"
client_id = "sim-client"
client_secret = "sim-secret"
request_timeout = "2s"
[athena.retry]
base = "20ms"
cap = "200ms"
[athena.rate_limit]
qps = 100.0
burst = 20
token_requests_per_minute = 600
quota_pause_cap = "1s"
max_retry_after = "1s"

[admin]
enabled = false

[sinks.write_back.kill]
topics = ["{p}", "{a}", "{b}"]
results_topic = "{results}"
ledger_topic = "{ledger}"
group_id = "{group}"
transactional_id = "{group}.tx"
max_in_flight = 16
backoff_base = "20ms"
backoff_cap = "500ms"
commit_interval = "50ms"
topic_partitions = 3
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
        p = n.patients,
        a = n.appointments,
        b = n.billing,
        results = n.results,
        ledger = n.ledger,
        group = n.group,
    );
    let path = dir.join("sink.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_writes_once() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig {
        qps_limit: Some(100),
        ..Default::default()
    })
    .await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &stack, &sim.base_url, &n);
    let log = dir.path().join("sink.log");

    // Issue 14's lifecycle and insurance commands (their state made before any fault), with
    // lost answers of their own below.
    let lifecycle = lifecycle::Lifecycle::prepare(&sim, &athena, "k-appt", 20).await;
    // A few lost answers on top of the kills.
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 10)
            .method("PUT")
            .path("/appointments/"),
    );

    let workload = kill_run::Workload {
        prefix: "k",
        bookings: BOOKINGS,
        cancels: CANCELS,
        claims: CLAIMS,
        claim_patients: CLAIM_PATIENTS,
    };
    let p = Producer::new(&stack);
    lifecycle::inject_faults(&sim, 2);
    let produced = workload.produce(&sim, &n, &p).await;
    // Chart writes (issue 14): their own workload and faults (`common/chart_run.rs`).
    let chart = chart_run::ChartWorkload {
        prefix: "k",
        patients: 4,
    };
    chart.inject_faults(&sim);
    let chart_produced = chart.produce(&sim, &n, &p).await;
    let mut ids: Vec<String> = produced
        .ids
        .iter()
        .chain(&chart_produced.ids)
        .cloned()
        .collect();
    ids.extend(lifecycle.produce(&n, &p).await);
    let ids = &ids;
    let total = ids.len();
    let (seen, counter) = kill_run::count_results(&stack, &n.results);

    let mut child = kill_run::spawn_sink(&config, "kill", &log);
    let mut kills_during_run = 0;
    let mut kills = 0;
    while kills_during_run < KILLS && kills < KILLS * 3 {
        let wait = rand::rng().random_range(500..2000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let before = seen.load(Ordering::Relaxed);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
        if before < total {
            kills_during_run += 1;
        }
        child = kill_run::spawn_sink(&config, "kill", &log);
    }
    assert!(
        kills_during_run >= KILLS,
        "only {kills_during_run} kills landed while commands were pending (results seen: {})",
        seen.load(Ordering::Relaxed)
    );

    let msgs = read_until(&stack.kafka(), &n.results, total, Duration::from_secs(240)).await;
    let more = drain_more(&stack.kafka(), &n.results, total, Duration::from_secs(5)).await;
    let msgs = if more.len() > msgs.len() { more } else { msgs };
    // The last instance stops gracefully on SIGTERM, with exit code 0.
    kill_run::stop_gracefully(&mut child, "sink");
    counter.abort();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: String = log_text
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");

    let results = results_by_id(&p.codec, &msgs).await;
    let missing: Vec<&String> = ids.iter().filter(|i| !results.contains_key(*i)).collect();
    assert!(
        missing.is_empty(),
        "{} commands without a result, e.g. {:?}; sink log tail:\n{tail}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(results.len(), total);

    workload.assert_written_once(&sim, &produced, &results);
    chart.assert_written_once(&sim, &chart_produced, &results);
    lifecycle.assert_written_once(&sim, &results);
    eprintln!(
        "kill test: {total} commands, {kills} kills ({kills_during_run} during the run), {} result messages",
        msgs.len()
    );
    sim.shutdown().await;
}

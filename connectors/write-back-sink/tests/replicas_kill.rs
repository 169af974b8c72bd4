//! Two real `athena-connect run --only replica` processes as replicas of one sink (one
//! consumer group, distinct `transactional_id`s, command topics of six partitions): replica A is killed with SIGKILL at
//! random moments at least four times during a run of 720 commands and restarted each time,
//! while replica B keeps running (the simulator runs in this test process and outlives every
//! kill). No static membership and a short consumer session: the killed member's partitions are
//! handed over (cooperative-sticky, mostly to A's next incarnation, a new member) once its
//! session expires, and each kill lands while A is finishing commands, so the next owner must
//! reconcile A's intents. Afterwards (results read `read_committed`): every
//! command has exactly one result, athena (the simulator's write ledger) holds each write at most
//! once, exactly when the result says APPLIED, cancels follow their bookings (per-key order), and
//! both replicas handled commands.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use athena_connect_tests::Stack;
use athena_sim::{Fault, FaultRule, SimConfig};
use common::*;
use rand::Rng;

const PARTITIONS: i32 = 6;
const BOOKINGS: usize = 500;
const CANCELS: usize = 100;
const CLAIMS: usize = 120;
const CLAIM_PATIENTS: usize = 12;
const KILLS: usize = 4;

/// The config of replica `replica`: the same group, its own `transactional_id`.
fn write_config(
    dir: &Path,
    stack: &Stack,
    sim_url: &str,
    n: &Names,
    replica: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1
[kafka.consumer]
# No static membership: the killed member's partitions are reassigned as soon as its session
# expires (6 s is the broker's default group.min.session.timeout.ms).
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

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

[sinks.write_back.replica]
topics = ["{p}", "{a}", "{b}"]
results_topic = "{results}"
ledger_topic = "{ledger}"
group_id = "{group}"
transactional_id = "{group}.tx.{replica}"
max_in_flight = 4
backoff_base = "20ms"
backoff_cap = "500ms"
commit_interval = "50ms"
# The scenario of this test: dynamic members, so the killed member's partitions move.
static_membership = false
topic_partitions = {partitions}
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
        p = n.patients,
        a = n.appointments,
        b = n.billing,
        results = n.results,
        ledger = n.ledger,
        group = n.group,
        partitions = PARTITIONS,
    );
    let path = dir.join(format!("sink-{replica}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// How many "Command finished." lines the sink log at `log` holds so far.
fn finished_by(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("Command finished.")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_sigkilled_repeatedly_loses_nothing_and_writes_once() {
    let stack = Stack::get().await;
    let (sim, _athena) = start_sim(SimConfig {
        qps_limit: Some(100),
        ..Default::default()
    })
    .await;
    let n = Names::new();
    for t in [&n.patients, &n.appointments, &n.billing] {
        stack.create_topic(t, PARTITIONS).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config_a = write_config(dir.path(), &stack, &sim.base_url, &n, "a");
    let config_b = write_config(dir.path(), &stack, &sim.base_url, &n, "b");
    let log_a = dir.path().join("sink-a.log");
    let log_b = dir.path().join("sink-b.log");

    // A few lost answers on top of the kills (the first matching fault rule applies, so these
    // come before the latency): bookings, and claims, which athena cannot deduplicate.
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 10)
            .method("PUT")
            .path("/appointments/"),
    );
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 3)
            .method("POST")
            .path("/claims"),
    );
    // athena slowed down (below the client's 2 s timeout) so that commands are at athena when A
    // dies and while partitions move, and so that the work outlasts the kills whatever the
    // machine's speed (two replicas of 4 in flight finish about 11 commands/s: the 720 take
    // over a minute, the kill loop about 40 s). The slowdown is lifted once the kills are done.
    for (method, path) in [("PUT", "/appointments/"), ("POST", "/claims")] {
        sim.state.inject(
            FaultRule::new(Fault::Latency(Duration::from_millis(700)), 100_000)
                .method(method)
                .path(path),
        );
    }

    let workload = kill_run::Workload {
        prefix: "rk",
        bookings: BOOKINGS,
        cancels: CANCELS,
        claims: CLAIMS,
        claim_patients: CLAIM_PATIENTS,
    };
    let p = Producer::new(&stack);
    let produced = workload.produce(&sim, &n, &p).await;
    let ids = &produced.ids;
    let total = ids.len();
    let (seen, counter) = kill_run::count_results(&stack, &n.results);

    // B runs throughout; A is the one killed and restarted.
    let mut b = kill_run::spawn_sink(&config_b, "replica", &log_b);
    let mut child = kill_run::spawn_sink(&config_a, "replica", &log_a);
    let mut kills_during_run = 0;
    let mut kills = 0;
    let started = std::time::Instant::now();
    while kills_during_run < KILLS && kills < KILLS * 3 {
        // Kill A only once this incarnation owns partitions and finishes commands (after a
        // restart that takes a rebalance), then at a random moment of its work.
        let finished_before = finished_by(&log_a);
        let active_by = tokio::time::Instant::now() + Duration::from_secs(60);
        while finished_by(&log_a) == finished_before
            && seen.load(Ordering::Relaxed) < total
            && tokio::time::Instant::now() < active_by
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wait = rand::rng().random_range(200..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let before = seen.load(Ordering::Relaxed);
        let working = finished_by(&log_a) > finished_before;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
        if before < total && working {
            kills_during_run += 1;
        }
        if let Some(exit) = b.try_wait().expect("poll replica B") {
            panic!("replica B ended during the run: {exit:?}");
        }
        child = kill_run::spawn_sink(&config_a, "replica", &log_a);
    }
    // The lost answers (the first rules) are used up by now; what is left is the slowdown.
    sim.state.clear_faults();
    let kill_phase = started.elapsed();
    assert!(
        kills_during_run >= KILLS,
        "only {kills_during_run} kills landed while A was working and commands were pending \
         (results seen: {})",
        seen.load(Ordering::Relaxed)
    );

    let msgs = read_until(&stack.kafka(), &n.results, total, Duration::from_secs(150)).await;
    let more = drain_more(&stack.kafka(), &n.results, total, Duration::from_secs(5)).await;
    let msgs = if more.len() > msgs.len() { more } else { msgs };
    // Both replicas stop gracefully on SIGTERM, with exit code 0 (a fenced or failed replica
    // would have ended with an error).
    for (name, r) in [("A", &mut child), ("B", &mut b)] {
        kill_run::stop_gracefully(r, &format!("replica {name}"));
    }
    counter.abort();
    let log_a_text = std::fs::read_to_string(&log_a).unwrap_or_default();
    let log_b_text = std::fs::read_to_string(&log_b).unwrap_or_default();
    let tail = |text: &str| -> String {
        let mut lines: Vec<&str> = text.lines().rev().take(15).collect();
        lines.reverse();
        lines.join("\n")
    };
    let tail = format!("A:\n{}\nB:\n{}", tail(&log_a_text), tail(&log_b_text));

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
    // The work really was shared: each replica finished commands (its own log says so; A's
    // log covers all of its incarnations).
    let finished = |text: &str| text.matches("Command finished.").count();
    let (a_finished, b_finished) = (finished(&log_a_text), finished(&log_b_text));
    assert!(a_finished > 0, "replica A finished no command");
    assert!(b_finished > 0, "replica B finished no command");
    // Reported, not asserted: with cooperative-sticky assignment B mostly keeps its share (its
    // final revocation is the graceful stop); the handovers are A's, checked by the kill loop.
    let b_revoked = log_b_text.matches("Partitions revoked").count();
    let b_reloads = log_b_text
        .matches("Reloaded the command ledger after an assignment")
        .count();
    eprintln!(
        "replicas kill test: {total} commands, {kills} kills of A ({kills_during_run} while A was working), \
         {} result messages; commands finished by A {a_finished}, by B {b_finished}; B: {b_revoked} revocations, \
         {b_reloads} ledger reloads on assignment; kill phase {kill_phase:?}, whole run {:?}",
        msgs.len(),
        started.elapsed()
    );
    sim.shutdown().await;
}

//! Scale-out (decision 0025), real broker and registry, in-process simulator and instances:
//! - three instances of one config share 3 practices x 4 feeds: at every sample each task is
//!   owned by at most one instance, the work is spread, an instance that stops hands its tasks
//!   to the others, the simulator's poll log shows no two instances polling one feed in turns
//!   (its pollers change only as often as the status saw its owner change), and the union of
//!   the events covers every change;
//! - two instances of one connector in different groups (no shared membership) cannot both
//!   write a task's cursor: the second fences the first, which stops polling; nothing is lost;
//! - three real `athena-connect run --only` processes, one of them SIGKILLed and restarted at
//!   random moments (10 times): no change lost, duplicates only replayed with the original's id
//!   (exactly-once: none for a `read_committed` reader);
//! - three processes under the simulator's QPS limit stay within it (at most 1% throttled).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, unique};
use athena_contracts::events::allergies::AllergyChanged;
use athena_contracts::events::problems::ProblemChanged;
use athena_contracts::{AppointmentChanged, PatientChanged};
use athena_sim::{RunningSim, SimConfig, SimState};
use changed_data_source::Config;
use changed_data_source::ownership::{OwnershipView, ownership_of};
use common::*;
use connector_core::avro::AvroCodec;
use connector_core::runtime::{RunEnv, TaskState};
use rdkafka::message::Message;

const FEEDS: &[Feed] = &[
    Feed::Patients,
    Feed::Appointments,
    Feed::Problems,
    Feed::Allergies,
];

fn toml(prefix: &str, practices: &[u64], feeds: &[Feed], scale_out: &str) -> String {
    let list: Vec<String> = practices.iter().map(|p| format!("\"{p}\"")).collect();
    let mut s = format!(
        "practices = [{}]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
         topic_partitions = 3\npoll_interval = \"100ms\"\nmax_poll_interval = \"400ms\"\n\
         page_size = 50\nreplay_margin = \"2s\"\n[scale_out]\nsession_timeout = \"6s\"\n{scale_out}\n",
        list.join(", ")
    );
    for f in feeds {
        let key = serde_json::to_value(f).unwrap();
        s.push_str(&format!("[feeds.{}]\n", key.as_str().unwrap()));
    }
    s
}

fn env(stack: &Stack) -> RunEnv {
    let mut registry = stack.registry();
    registry.auto_register = true;
    RunEnv {
        kafka: stack.kafka(),
        registry,
    }
}

fn view(name: &str, worker: &str) -> OwnershipView {
    ownership_of(name, worker).unwrap_or_default()
}

/// Logs of the connectors on the test's output (shown for a failed test).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .try_init();
}

/// Waits (at most `timeout`) until `cond` holds.
async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}; ownership: {:?}",
            changed_data_source::ownership::all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Waits until every practice has every feed subscribed.
async fn subscribed(sim: &SimState, practices: &[u64], feeds: &[Feed]) {
    until("subscriptions", Duration::from_secs(60), || {
        practices.iter().all(|pr| {
            sim.with_practice(*pr, |p| {
                feeds.iter().all(|f| {
                    p.feeds
                        .get(f.path())
                        .is_some_and(|s| s.active.is_some() || !s.pending.is_empty())
                })
            })
            .unwrap_or(false)
        })
    })
    .await;
}

/// About 100 changes a second until the returned switch is set.
fn generate(sim: &SimState) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (state, s) = (sim.clone(), stop.clone());
    let h = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            state.generate(2);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (stop, h)
}

async fn replayed(codec: &AvroCodec, feed: Feed, bytes: &[u8]) -> bool {
    match feed {
        Feed::Patients => {
            codec
                .decode::<PatientChanged>(bytes)
                .await
                .unwrap()
                .envelope
        }
        Feed::Appointments => {
            codec
                .decode::<AppointmentChanged>(bytes)
                .await
                .unwrap()
                .envelope
        }
        Feed::Problems => {
            codec
                .decode::<ProblemChanged>(bytes)
                .await
                .unwrap()
                .envelope
        }
        Feed::Allergies => {
            codec
                .decode::<AllergyChanged>(bytes)
                .await
                .unwrap()
                .envelope
        }
        other => panic!("no decoder for {other:?}"),
    }
    .replayed
}

/// Every change the simulator handed out is on Kafka; every message carries a handed-out id;
/// an id seen more than once was re-sent by a replay (flagged `replayed`). Returns
/// (changes, duplicates).
async fn check_events(
    stack: &Stack,
    sim: &SimState,
    config: &Config,
    practices: &[u64],
    feeds: &[Feed],
) -> (usize, usize) {
    let codec = stack.codec();
    let (mut changes, mut dupes) = (0, 0);
    for feed in feeds {
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        for p in practices {
            for (id, _) in handed_out_in(sim, *p, *feed) {
                *expected.entry(id).or_default() += 1;
            }
        }
        changes += expected.values().sum::<usize>();
        let msgs = read_all(stack, &config.topic(*feed));
        let mut by_id: HashMap<String, Vec<&rdkafka::message::OwnedMessage>> = HashMap::new();
        for m in &msgs {
            by_id.entry(event_id(m)).or_default().push(m);
        }
        let missing = expected
            .keys()
            .filter(|id| !by_id.contains_key(*id))
            .count();
        assert_eq!(
            missing,
            0,
            "{feed:?}: {missing} of {} changes lost",
            expected.len()
        );
        assert!(
            by_id.keys().all(|id| expected.contains_key(id)),
            "{feed:?}: ids never handed out"
        );
        for (id, ms) in &by_id {
            let extra = ms.len().saturating_sub(expected[id]);
            if extra == 0 {
                continue;
            }
            dupes += extra;
            let mut flagged = 0;
            for m in ms {
                if replayed(&codec, *feed, m.payload().expect("payload")).await {
                    flagged += 1;
                }
            }
            assert!(
                flagged >= extra,
                "{feed:?}: event {id} sent {} times, only {flagged} flagged replayed",
                ms.len()
            );
        }
    }
    (changes, dupes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_the_tasks_one_owner_each() {
    logs();
    let stack = Stack::get().await;
    let practices = [195_900u64, 195_901, 195_902];
    let sim = RunningSim::start(SimConfig {
        practices: practices.to_vec(),
        ..Default::default()
    })
    .await
    .expect("sim");
    let prefix = unique("cds.scale");
    let name = "scale";
    let workers = ["w1", "w2", "w3"];
    // Dynamic membership: an instance that stops leaves the group at once (its tasks move
    // without waiting for the session timeout).
    let configs: Vec<Config> = workers
        .iter()
        .map(|w| {
            connector_core::config::load_str(
                &toml(
                    &prefix,
                    &practices,
                    FEEDS,
                    &format!("worker_id = \"{w}\"\nstatic_membership = false"),
                ),
                &Default::default(),
                "X",
            )
            .expect("config")
        })
        .collect();
    let total = practices.len() * FEEDS.len();
    let env = env(&stack);
    // One client (so one access token) per instance, as separate processes would have: the
    // simulator's poll log tells the instances apart by their token.
    let athena: Vec<AthenaClient> = workers
        .iter()
        .map(|_| AthenaClient::new(athena_config(&sim.base_url)).expect("client"))
        .collect();

    // The monitor: at every sample, no task is owned by two instances; per task, the owners
    // in the order the status showed them (consecutive repeats collapsed).
    let overlaps = Arc::new(Mutex::new(Vec::<String>::new()));
    let owners = Arc::new(Mutex::new(BTreeMap::<String, Vec<&str>>::new()));
    let watching = Arc::new(AtomicBool::new(true));
    let monitor = {
        let (overlaps, owners, watching) = (overlaps.clone(), owners.clone(), watching.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let mut seen: BTreeMap<String, &str> = BTreeMap::new();
                let views: Vec<(&str, OwnershipView)> =
                    workers.iter().map(|w| (*w, view(name, w))).collect();
                for (w, v) in &views {
                    for t in &v.owned {
                        if let Some(other) = seen.insert(t.clone(), w) {
                            overlaps
                                .lock()
                                .unwrap()
                                .push(format!("{t} owned by {other} and {w}"));
                        }
                        let mut owners = owners.lock().unwrap();
                        let history = owners.entry(t.clone()).or_default();
                        if history.last() != Some(w) {
                            history.push(w);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let (h1, r1) = spawn_connector(name, &configs[0], &env, &athena[0]);
    until("w1 owns every task", Duration::from_secs(60), || {
        view(name, "w1").owned.len() == total
    })
    .await;
    subscribed(&sim.state, &practices, FEEDS).await;
    let (stop_gen, generator) = generate(&sim.state);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (h2, r2) = spawn_connector(name, &configs[1], &env, &athena[1]);
    let (h3, r3) = spawn_connector(name, &configs[2], &env, &athena[2]);
    let spread = until("the tasks spread", Duration::from_secs(45), || {
        let vs: Vec<OwnershipView> = workers.iter().map(|w| view(name, w)).collect();
        vs.iter().all(|v| !v.owned.is_empty())
            && vs.iter().map(|v| v.owned.len()).sum::<usize>() == total
    })
    .await;
    let counts: Vec<usize> = workers.iter().map(|w| view(name, w).owned.len()).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // w2 stops: its tasks are released (cursors written) and taken over by w1 and w3.
    let moved = view(name, "w2").owned;
    let stopping = Instant::now();
    stop_connector(&h2, r2).await;
    let released = stopping.elapsed();
    let stopped_at = chrono::Utc::now();
    let handover = until("w2's tasks taken over", Duration::from_secs(30), || {
        view(name, "w1").owned.len() + view(name, "w3").owned.len() == total
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // As athena saw the handover: per moved task, from w2's last destructive poll to the new
    // owner's first (printed, not asserted: timing).
    let mut gaps = Vec::new();
    for p in practices {
        for f in FEEDS {
            if !moved.contains(&format!("{p}/{}", changed_data_source::task::feed_name(*f))) {
                continue;
            }
            let polled = sim
                .state
                .with_practice(p, |pr| pr.feeds[f.path()].polled.clone())
                .unwrap_or_default();
            let last = polled.iter().rev().find(|p| p.at <= stopped_at);
            let first = polled.iter().find(|p| p.at > stopped_at);
            if let (Some(l), Some(n)) = (last, first) {
                gaps.push((n.at - l.at).num_milliseconds());
            }
        }
    }
    gaps.sort_unstable();
    stop_gen.store(true, Ordering::Relaxed);
    generator.await.expect("generator");

    until("every feed drained", Duration::from_secs(60), || {
        practices.iter().all(|p| {
            FEEDS
                .iter()
                .all(|f| sim.state.pending_changes(*p, f.path()) == 0)
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for h in [&h1, &h3] {
        assert_eq!(h.status().state, TaskState::Running, "{:?}", h.status());
    }
    stop_connector(&h1, r1).await;
    stop_connector(&h3, r3).await;
    watching.store(false, Ordering::Relaxed);
    monitor.await.expect("monitor");
    let overlaps = overlaps.lock().unwrap().clone();
    assert!(overlaps.is_empty(), "tasks with two owners: {overlaps:?}");
    // As athena saw it: per feed, the runs of consecutive polls by one caller (access token).
    // A caller's polls end before the next caller's begin, so the pollers change at most as
    // often as the owners did; two instances polling one feed in turns would show as many
    // more runs than owners.
    let owners = owners.lock().unwrap().clone();
    let mut callers = BTreeSet::new();
    for p in practices {
        for f in FEEDS {
            let task = format!("{p}/{}", changed_data_source::task::feed_name(*f));
            let polled = sim
                .state
                .with_practice(p, |pr| pr.feeds[f.path()].polled.clone())
                .unwrap_or_default();
            let mut runs: Vec<&str> = Vec::new();
            for poll in &polled {
                callers.insert(poll.caller.clone());
                if runs.last() != Some(&poll.caller.as_str()) {
                    runs.push(&poll.caller);
                }
            }
            let history = owners.get(&task).cloned().unwrap_or_default();
            assert!(
                runs.len() <= history.len(),
                "{task}: polled by callers in {} runs {runs:?}, owned in turn by {history:?}",
                runs.len()
            );
            if moved.contains(&task) {
                assert!(
                    runs.len() >= 2,
                    "{task} moved from w2, but the poll log shows one caller: {runs:?}"
                );
            }
        }
    }
    assert_eq!(
        callers.len(),
        workers.len(),
        "each instance polls with its own token: callers {callers:?}"
    );
    assert!(
        ownership_of(name, "w1").is_none(),
        "a stopped instance owns nothing"
    );

    let (changes, dupes) = check_events(&stack, &sim.state, &configs[0], &practices, FEEDS).await;
    assert!(changes > 300, "too few changes to mean anything: {changes}");
    println!(
        "3 instances, {total} tasks: spread {counts:?} after {spread:?}; w2 stopped in {released:?}, \
         its tasks owned again {handover:?} later; moved tasks unpolled (last poll of the old owner to the \
         first of the new, ms) {gaps:?}; {changes} changes, all on Kafka, {dupes} duplicates (replayed)"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_outside_the_group_fences_the_first() {
    logs();
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let prefix = unique("cds.fence");
    let name = "fence";
    let feeds = &FEEDS[..2];
    let practices = [PRACTICE];
    // Same connector (same cursors, same transactional ids), different groups: nothing
    // coordinates them but the fencing of the cursor writes.
    let config = |w: &str| -> Config {
        connector_core::config::load_str(
            &toml(
                &prefix,
                &practices,
                feeds,
                &format!("worker_id = \"{w}\"\ngroup_id = \"{prefix}.group-{w}\""),
            ),
            &Default::default(),
            "X",
        )
        .expect("config")
    };
    let (ca, cb) = (config("old"), config("new"));
    let env = env(&stack);
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");

    let (ha, ra) = spawn_connector(name, &ca, &env, &athena);
    until(
        "the old instance owns every task",
        Duration::from_secs(60),
        || view(name, "old").owned.len() == feeds.len(),
    )
    .await;
    subscribed(&sim.state, &practices, feeds).await;
    let (stop_gen, generator) = generate(&sim.state);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (hb, rb) = spawn_connector(name, &cb, &env, &athena);
    let fenced = until(
        "the old instance is fenced",
        Duration::from_secs(30),
        || {
            let (a, b) = (view(name, "old"), view(name, "new"));
            a.owned.is_empty() && a.fenced.len() == feeds.len() && b.owned.len() == feeds.len()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_gen.store(true, Ordering::Relaxed);
    generator.await.expect("generator");
    until("every feed drained", Duration::from_secs(60), || {
        feeds
            .iter()
            .all(|f| sim.state.pending_changes(PRACTICE, f.path()) == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The fenced instance keeps running (it owns its group's partitions) but polls nothing;
    // it is not failed, or a supervisor restart would fence the new one in turn.
    assert_eq!(ha.status().state, TaskState::Running, "{:?}", ha.status());
    let a = view(name, "old");
    assert_eq!(
        a.fenced,
        feeds
            .iter()
            .map(|f| format!("{PRACTICE}/{}", changed_data_source::task::feed_name(*f)))
            .collect::<BTreeSet<_>>()
    );
    stop_connector(&ha, ra).await;
    stop_connector(&hb, rb).await;

    let (changes, dupes) = check_events(&stack, &sim.state, &ca, &practices, feeds).await;
    assert!(changes > 100, "too few changes to mean anything: {changes}");
    println!(
        "the old instance fenced on every task {fenced:?} after the new one started (incl. its start-up); \
         {changes} changes, all on Kafka, {dupes} duplicates (replayed)"
    );
    sim.shutdown().await;
}

const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_sigkilled_repeatedly_lose_nothing() {
    sigkill_one_of_three("at_least_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_sigkilled_repeatedly_exactly_once_no_duplicates() {
    sigkill_one_of_three("exactly_once").await;
}

/// Three processes of one config; one after the other is SIGKILLed at a random moment and
/// restarted, [`KILLS`] times, under the change generator.
async fn sigkill_one_of_three(mode: &str) {
    use rand::Rng;
    let stack = Stack::get().await;
    let practices = [195_900u64, 195_901, 195_902];
    let feeds = &FEEDS[..3];
    let sim = RunningSim::start(SimConfig {
        practices: practices.to_vec(),
        token_rate_limit_per_minute: 10_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    // athena-like poll latency: a drain then spans most of a poll cycle, so a kill at a random
    // moment of a polling process usually lands inside one (with an instant simulator the
    // marker was set for a few ms per cycle, and a run of 10 kills could miss them all).
    sim.state.inject(
        athena_sim::FaultRule::new(
            athena_sim::Fault::Latency(Duration::from_millis(150)),
            1_000_000,
        )
        .method("GET")
        .path("/changed"),
    );
    let prefix = unique(&format!("cds.scalekill.{mode}"));
    let name = "scalekill";
    let section = format!(
        "mode = \"{mode}\"\n{}",
        toml(&prefix, &practices, feeds, "")
    );
    let config: Config =
        connector_core::config::load_str(&section, &Default::default(), "X").expect("config");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = run_config(dir.path(), &stack, &sim.base_url, name, &section);
    let log = dir.path().join("run.log");
    let workers = ["w1", "w2", "w3"];
    // Static membership (the default) with the worker id as group.instance.id: a restarted
    // process gets its tasks back at once.
    let spawn = |w: &str| {
        spawn_run(
            &path,
            name,
            &log,
            &[
                (
                    "ATHENA_CONNECT__SOURCES__CHANGED_DATA__SCALEKILL__SCALE_OUT__WORKER_ID",
                    w,
                ),
                // Small pages: drains are longer, so more kills land inside one (a replay).
                (
                    "ATHENA_CONNECT__SOURCES__CHANGED_DATA__SCALEKILL__PAGE_SIZE",
                    "10",
                ),
            ],
        )
    };
    // Who has polled so far, as athena saw it (each process polls with its own access token):
    // a kill is aimed at a process that is polling, not at one still starting (on a loaded
    // machine a restart can take longer than the pause between kills).
    let callers = || -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in practices {
            for f in feeds {
                let polled = sim
                    .state
                    .with_practice(p, |pr| pr.feeds[f.path()].polled.clone())
                    .unwrap_or_default();
                out.extend(polled.into_iter().map(|poll| poll.caller));
            }
        }
        out
    };
    let mut children: Vec<_> = workers.iter().map(|w| spawn(w)).collect();
    subscribed(&sim.state, &practices, feeds).await;
    let (stop_gen, generator) = generate(&sim.state);
    until("all three processes poll", Duration::from_secs(60), || {
        callers().len() >= workers.len()
    })
    .await;
    let mut rng = rand::rng();
    for i in 0..KILLS {
        let k = i % workers.len();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        assert!(
            children[k].try_wait().expect("status").is_none(),
            "{} exited on its own; log:\n{}",
            workers[k],
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        children[k].start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL on Unix
        children[k].wait().await.expect("reaped");
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        let before = callers().len();
        children[k] = spawn(workers[k]);
        // The new incarnation polls (a new token) before the next kill is aimed.
        until(
            "the restarted process polls",
            Duration::from_secs(60),
            || callers().len() > before,
        )
        .await;
    }
    stop_gen.store(true, Ordering::Relaxed);
    generator.await.expect("generator");
    until("every feed drained", Duration::from_secs(90), || {
        practices.iter().all(|p| {
            feeds
                .iter()
                .all(|f| sim.state.pending_changes(*p, f.path()) == 0)
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (w, child) in workers.iter().zip(children) {
        stop_run(child, w).await;
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let replays = log_text.matches("replaying its window").count();
    let (changes, dupes) = check_events(&stack, &sim.state, &config, &practices, feeds).await;
    println!(
        "{mode}: 3 processes, {KILLS} SIGKILLs: {changes} changes, all on Kafka; {dupes} duplicates \
         (replayed, original ids); {replays} replays"
    );
    if mode == "exactly_once" {
        assert_eq!(dupes, 0, "read_committed saw changes more than once");
    }
    assert!(changes > 300, "too few changes to mean anything: {changes}");
    assert!(
        replays > 0,
        "no kill hit a poll in progress; the test proved nothing about replay"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_the_keys_qps_limit() {
    let stack = Stack::get().await;
    let practices = [195_900u64, 195_901, 195_902];
    let limit = 20u32;
    let sim = RunningSim::start(SimConfig {
        practices: practices.to_vec(),
        qps_limit: Some(limit),
        token_rate_limit_per_minute: 10_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let prefix = unique("cds.scaleqps");
    let name = "scaleqps";
    let section = toml(&prefix, &practices, FEEDS, "");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = run_config(dir.path(), &stack, &sim.base_url, name, &section);
    let log = dir.path().join("run.log");
    // Each process is configured with (about) the key's whole limit; together they must keep
    // within it by taking their share of the tasks.
    let children: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| {
            spawn_run(
                &path,
                name,
                &log,
                &[
                    (
                        "ATHENA_CONNECT__SOURCES__CHANGED_DATA__SCALEQPS__SCALE_OUT__WORKER_ID",
                        w,
                    ),
                    ("ATHENA_CONNECT__ATHENA__RATE_LIMIT__QPS", "19"),
                    ("ATHENA_CONNECT__ATHENA__RATE_LIMIT__BURST", "4"),
                    // Small pages: the backlog takes a few hundred requests.
                    (
                        "ATHENA_CONNECT__SOURCES__CHANGED_DATA__SCALEQPS__PAGE_SIZE",
                        "10",
                    ),
                ],
            )
        })
        .collect();
    subscribed(&sim.state, &practices, FEEDS).await;
    // Let the group settle, then a backlog: every poll cycle drains full pages back to back.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let requests = |s: &SimState| -> u64 {
        s.request_counts()
            .iter()
            .filter(|(k, _)| !k.contains("oauth2"))
            .map(|(_, n)| *n)
            .sum()
    };
    let (r0, t0) = (requests(&sim.state), sim.state.qps_throttled());
    let start = Instant::now();
    sim.state.generate(2500);
    until("the backlog drained", Duration::from_secs(60), || {
        practices.iter().all(|p| {
            FEEDS
                .iter()
                .all(|f| sim.state.pending_changes(*p, f.path()) == 0)
        })
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let (sent, throttled) = (requests(&sim.state) - r0, sim.state.qps_throttled() - t0);
    for mut child in children {
        child.start_kill().expect("kill");
        child.wait().await.expect("reaped");
    }
    println!(
        "3 processes under a {limit} qps limit: {sent} requests in {elapsed:.1} s ({:.1}/s, {:.0}% of the limit), {throttled} throttled",
        sent as f64 / elapsed,
        100.0 * sent as f64 / elapsed / f64::from(limit)
    );
    assert!(sent > 150, "too few requests to mean anything: {sent}");
    assert!(
        throttled * 100 <= sent,
        "{throttled} of {sent} requests throttled (more than 1%); log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_with_the_same_worker_id_stops_the_first_for_good() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let prefix = unique("cds.sameid");
    let name = "sameid";
    let feeds = &FEEDS[..2];
    let config: Config = connector_core::config::load_str(
        &toml(&prefix, &[PRACTICE], feeds, "worker_id = \"same\""),
        &Default::default(),
        "X",
    )
    .expect("config");
    let env = env(&stack);
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (ha, ra) = spawn_connector(name, &config, &env, &athena);
    until(
        "the first instance owns every task",
        Duration::from_secs(60),
        || view(name, "same").owned.len() == feeds.len(),
    )
    .await;
    // Same group.instance.id: the group takes the membership from the first instance, which
    // releases its tasks and fails fatally (a supervisor restart would only take it back).
    let (hb, rb) = spawn_connector(name, &config, &env, &athena);
    let first = tokio::time::timeout(Duration::from_secs(30), ra)
        .await
        .expect("the first instance stops")
        .expect("no panic");
    let e = first.expect_err("the first instance fails");
    assert!(e.to_string().contains("scale_out.worker_id"), "{e}");
    assert_eq!(e.class(), connector_core::ErrorClass::Fatal);
    assert_eq!(ha.status().state, TaskState::Failed);
    until("the second instance runs", Duration::from_secs(30), || {
        hb.status().state == TaskState::Running
    })
    .await;
    stop_connector(&hb, rb).await;
    sim.shutdown().await;
}

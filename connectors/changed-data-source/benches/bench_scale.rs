//! Benchmark: the changed-data source's handover and the rebalance's effect on throughput
//! (decision 0025). Three in-process instances of one config (3 practices x 4 feeds, each
//! instance with its own athena client, so its own access token) drain a backlog that is kept
//! topped up; every changed-data poll gets `BENCH_POLL_LATENCY_MS` of simulator latency, so the
//! rate depends on how many tasks are being polled, as with athena. After a steady period one
//! instance stops (dynamic membership: it releases its tasks and leaves at once), later it
//! joins again. For each rebalance it prints, from the simulator's poll log (who polled each
//! feed, when): the handover per moved task (the old owner's last poll, i.e. the revocation, to
//! the new owner's first poll), and the events/s in the window around the rebalance (from the
//! trigger until every moved task was polled by its new owner, plus one second) against the
//! steady state before it, and their ratio.
//!
//! Run (needs the local stack):
//! ```sh
//! export $(./dev env)
//! cargo bench -p changed-data-source --bench bench-scale
//! ```
//! Not a test: it prints figures (`BENCH|…` lines) and asserts nothing about speed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::bench::figure;
use athena_connect_tests::{Stack, unique};
use athena_sim::{ChangeKind, GeneratorConfig, RunningSim, SimConfig, SimState};
use changed_data_source::Config;
use changed_data_source::ownership::ownership_of;
use changed_data_source::task::feed_name;
use chrono::{DateTime, Utc};
use connector_core::metrics::{FeedLabels, global};
use connector_core::runtime::{RunEnv, TaskHandle, TaskState, task};

// The integration tests' simulator client config (its own token per client).
#[path = "../tests/common/mod.rs"]
mod common;
use common::athena_config;

const PRACTICES: [u64; 3] = [195_900, 195_901, 195_902];
const FEEDS: &[Feed] = &[
    Feed::Patients,
    Feed::Appointments,
    Feed::Problems,
    Feed::Allergies,
];
const NAME: &str = "scalebench";
/// Unprocessed rows per (practice, feed) the backlog is kept above.
const BACKLOG: usize = 400;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(prefix: &str, worker: &str, page_size: u32) -> Config {
    let list: Vec<String> = PRACTICES.iter().map(|p| format!("\"{p}\"")).collect();
    let mut s = format!(
        "practices = [{}]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
         topic_partitions = 3\npoll_interval = \"100ms\"\nmax_poll_interval = \"400ms\"\n\
         page_size = {page_size}\n[scale_out]\nsession_timeout = \"6s\"\n\
         worker_id = \"{worker}\"\nstatic_membership = false\n",
        list.join(", ")
    );
    for f in FEEDS {
        // The config key is the feed's serde name (`lab_results`), not its athena spelling.
        let key = serde_json::to_value(f).expect("feed");
        s.push_str(&format!("[feeds.{}]\n", key.as_str().expect("feed key")));
    }
    connector_core::config::load_str(&s, &Default::default(), "X").expect("config")
}

fn task_of(p: u64, f: Feed) -> String {
    format!("{p}/{}", feed_name(f))
}

/// Events acknowledged by Kafka so far, all instances together (they share the process's
/// metrics).
fn produced() -> u64 {
    FEEDS
        .iter()
        .map(|f| {
            global()
                .source_records_produced
                .get_or_create(&FeedLabels::of(NAME, feed_name(*f)))
                .get()
        })
        .sum()
}

fn owned(worker: &str) -> usize {
    ownership_of(NAME, worker).map_or(0, |v| v.owned.len())
}

async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Instance {
    handle: TaskHandle,
    runner: tokio::task::JoinHandle<Result<(), changed_data_source::Error>>,
}

fn start(config: &Config, env: &RunEnv, athena: &AthenaClient) -> Instance {
    let (control, handle) = task(NAME, changed_data_source::KIND);
    let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
    let runner = tokio::spawn(async move {
        changed_data_source::run(NAME, &config, &env, &athena, control).await
    });
    Instance { handle, runner }
}

async fn stop(i: Instance) {
    i.handle.shutdown();
    i.runner.await.expect("join").expect("instance");
}

/// The poll log of every task: (time, caller).
fn poll_log(sim: &SimState) -> BTreeMap<String, Vec<(DateTime<Utc>, String)>> {
    let mut out = BTreeMap::new();
    for p in PRACTICES {
        for f in FEEDS {
            let polls = sim
                .with_practice(p, |pr| {
                    pr.feeds[f.path()]
                        .polled
                        .iter()
                        .map(|x| (x.at, x.caller.clone()))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(task_of(p, *f), polls);
        }
    }
    out
}

/// Per task whose poller changed after `from`: (the old caller's last poll, the new caller's
/// first poll).
fn handovers(sim: &SimState, from: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    for polls in poll_log(sim).values() {
        let before = polls.iter().rev().find(|(t, _)| *t <= from);
        let Some((_, old)) = before else { continue };
        if let Some(i) = polls.iter().position(|(t, c)| *t > from && c != old) {
            out.push((polls[i - 1].0, polls[i].0));
        }
    }
    out
}

/// Events/s over [a, b] from the sampled (instant, produced) series.
fn rate(samples: &[(Instant, u64)], a: Instant, b: Instant) -> f64 {
    let at = |t: Instant| {
        samples
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .copied()
            .unwrap_or(samples[0])
    };
    let ((ta, na), (tb, nb)) = (at(a), at(b));
    (nb - na) as f64 / (tb - ta).as_secs_f64().max(1e-3)
}

/// Waits for the handover after a rebalance triggered at `trigger` (`moved` tasks change
/// pollers), then prints its figures against the steady rate over `steady`.
async fn report(
    what: &str,
    sim: &SimState,
    samples: &std::sync::Mutex<Vec<(Instant, u64)>>,
    steady: (Instant, Instant),
    trigger: (Instant, DateTime<Utc>),
    moved: usize,
) {
    let wait = Instant::now();
    while handovers(sim, trigger.1).len() < moved {
        assert!(
            wait.elapsed() < Duration::from_secs(30),
            "{what}: {} of {moved} tasks polled by a new owner within 30 s",
            handovers(sim, trigger.1).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hs = handovers(sim, trigger.1);
    let done = hs.iter().map(|(_, n)| *n).max().expect("a handover");
    let done_at = trigger.0 + (done - trigger.1).to_std().unwrap_or_default();
    let window_end = done_at + Duration::from_secs(1);
    tokio::time::sleep(
        window_end.saturating_duration_since(Instant::now()) + Duration::from_millis(200),
    )
    .await;
    let samples = samples.lock().unwrap().clone();
    let steady_rate = rate(&samples, steady.0, steady.1);
    let window_rate = rate(&samples, trigger.0, window_end);
    let mut gaps: Vec<i64> = hs
        .iter()
        .map(|(o, n)| (*n - *o).num_milliseconds())
        .collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    let max = *gaps.last().expect("a gap");
    let all = (done - trigger.1).num_milliseconds();
    println!(
        "{what}: {} tasks moved; handover (revocation = old owner's last poll, to the new owner's \
         first) {gaps:?} ms; trigger to the last moved task polled {all} ms; events/s over the \
         rebalance window ({:.1} s) {window_rate:.0} vs steady {steady_rate:.0} (ratio {:.2})",
        hs.len(),
        (window_end - trigger.0).as_secs_f64(),
        window_rate / steady_rate
    );
    figure(
        &format!("scale.{what}.handover.p50"),
        median as f64,
        None,
        "ms",
    );
    figure(
        &format!("scale.{what}.handover.max"),
        max as f64,
        None,
        "ms",
    );
    figure(
        &format!("scale.{what}.trigger_to_all_polled"),
        all as f64,
        None,
        "ms",
    );
    figure(
        &format!("scale.{what}.events_per_s_around_rebalance"),
        window_rate,
        Some(steady_rate),
        "events/s",
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        // The connectors' logs on stderr (rebalances, releases, replays), e.g.
        // `BENCH_LOG=info` or `BENCH_LOG=changed_data_source=debug`.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let latency: u64 = env_or("BENCH_POLL_LATENCY_MS", 50);
    let page_size: u32 = env_or("BENCH_PAGE_SIZE", 50);
    let steady_secs: u64 = env_or("BENCH_STEADY_SECONDS", 8);
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        practices: PRACTICES.to_vec(),
        // Only changes of the four feeds polled (no queue grows unread).
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            practices: vec![],
            // NewPatient .. Allergy: patients, appointments, problems, allergies.
            mix: ChangeKind::ALL[..7].to_vec(),
        }),
        token_rate_limit_per_minute: 1000,
        daily_quota: 100_000_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    if latency > 0 {
        sim.state.inject(
            athena_sim::FaultRule::new(
                athena_sim::Fault::Latency(Duration::from_millis(latency)),
                u32::MAX,
            )
            .method("GET")
            .path("/changed"),
        );
    }
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let prefix = unique("bench.scale");
    let workers = ["w1", "w2", "w3"];
    let configs: Vec<Config> = workers
        .iter()
        .map(|w| config(&prefix, w, page_size))
        .collect();
    // One client per instance: its own token, so the poll log tells the instances apart.
    let clients: Vec<AthenaClient> = workers
        .iter()
        .map(|_| AthenaClient::new(athena_config(&sim.base_url)).expect("client"))
        .collect();
    let total = PRACTICES.len() * FEEDS.len();

    let mut instances: Vec<Option<Instance>> = (0..3)
        .map(|i| Some(start(&configs[i], &env, &clients[i])))
        .collect();
    until("subscriptions", Duration::from_secs(60), || {
        PRACTICES.iter().all(|pr| {
            sim.state
                .with_practice(*pr, |p| {
                    FEEDS
                        .iter()
                        .all(|f| p.feeds.get(f.path()).is_some_and(|s| s.active.is_some()))
                })
                .unwrap_or(false)
        })
    })
    .await;
    until("the tasks spread", Duration::from_secs(60), || {
        workers.iter().all(|w| owned(w) > 0)
            && workers.iter().map(|w| owned(w)).sum::<usize>() == total
    })
    .await;

    // The backlog, kept topped up; and the produced count sampled every 100 ms.
    let running = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (state, running) = (sim.state.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let pending: usize = PRACTICES
                    .iter()
                    .flat_map(|p| FEEDS.iter().map(|f| state.pending_changes(*p, f.path())))
                    .sum();
                let want = BACKLOG * PRACTICES.len() * FEEDS.len();
                if pending < want {
                    state.generate((want - pending).min(1000));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let samples = Arc::new(std::sync::Mutex::new(vec![(Instant::now(), produced())]));
    let sampler = {
        let (samples, running) = (samples.clone(), running.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                samples.lock().unwrap().push((Instant::now(), produced()));
            }
        })
    };
    // Warm-up, then the steady state with three instances.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    let steady = (s0, Instant::now());

    // 1. One instance stops: it releases its tasks, the other two take them.
    let moved = owned("w3");
    let trigger = (Instant::now(), Utc::now());
    stop(instances[2].take().expect("w3")).await;
    println!(
        "w3 (owning {moved} tasks) stopped in {} ms",
        trigger.0.elapsed().as_millis()
    );
    report("stop", &sim.state, &samples, steady, trigger, moved).await;
    until(
        "two instances own every task",
        Duration::from_secs(30),
        || owned("w1") + owned("w2") == total,
    )
    .await;

    // 2. Steady with two instances, then the third joins again and takes its share.
    let s0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady_secs)).await;
    let steady = (s0, Instant::now());
    let trigger = (Instant::now(), Utc::now());
    instances[2] = Some(start(&configs[2], &env, &clients[2]));
    until(
        "the third instance owns tasks",
        Duration::from_secs(30),
        || owned("w3") > 0,
    )
    .await;
    // Cooperative-sticky may take two rounds; wait until the spread settles.
    let mut last = (owned("w3"), Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = owned("w3");
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    report("join", &sim.state, &samples, steady, trigger, last.0).await;

    running.store(false, Ordering::Relaxed);
    feeder.await.expect("feeder");
    sampler.await.expect("sampler");
    for i in instances.into_iter().flatten() {
        assert_eq!(i.handle.status().state, TaskState::Running);
        stop(i).await;
    }
    sim.shutdown().await;
}

//! Benchmark: FHIR-enriched events per second through the changed-data source (decision 0023)
//! with athena-like read latency, against the client's QPS budget, and the share of that budget
//! the enrichment used while it had a backlog.
//!
//! Run (needs the local stack):
//! ```sh
//! export $(./dev env)
//! cargo bench -p changed-data-source --bench bench-enrich
//! BENCH_ROWS=400 BENCH_QPS=20 BENCH_READ_LATENCY_MS=100 BENCH_CONCURRENCY=8 \
//!   cargo bench -p changed-data-source --bench bench-enrich
//! ```
//! It queues `BENCH_ROWS` vaccine changes in the simulator (one Immunization each, spread over
//! the seeded patients), adds `BENCH_READ_LATENCY_MS` to every FHIR read, and lets one connector
//! with `vaccines = { enrich = true }` drain them through a client limited to `BENCH_QPS`. Not a
//! test: it prints figures and asserts nothing about speed.

use std::time::{Duration, Instant};

use athena_client::api::changed::{Feed, Subscribe};
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{Stack, unique};
use athena_sim::clinical_changes::ClinicalKind;
use athena_sim::{RunningSim, SimConfig};
use changed_data_source::Config;
use connector_core::metrics::{FeedLabels, global};
use connector_core::runtime::{RunEnv, TaskState, task};

const PRACTICE: u64 = 195_900;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fhir_reads(athena: &AthenaClient) -> u64 {
    athena
        .stats()
        .requests
        .iter()
        .filter(|(k, _)| k.route.starts_with("/fhir/r4/"))
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = env_or("BENCH_ROWS", 300);
    let qps: f64 = env_or("BENCH_QPS", 20.0);
    let latency_ms: u64 = env_or("BENCH_READ_LATENCY_MS", 100);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 8);
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        token_rate_limit_per_minute: 1000,
        daily_quota: 10_000_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let mut cfg = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().expect("sim url")),
        "sim-client",
        "sim-secret".to_string().into(),
    );
    cfg.request_timeout = Duration::from_secs(30);
    cfg.rate_limit.qps = qps;
    cfg.rate_limit.burst = (qps as u32).max(1);
    // The simulator enforces scopes per route: the feed needs the proprietary API, enrichment
    // the FHIR read scope of what it reads (without them every read is a 403).
    cfg.scopes = athena_client::scopes::with_fhir_reads(
        &[athena_client::scopes::MDP],
        athena_contracts::events::FHIR_RESOURCE_TYPES,
    );
    let athena = AthenaClient::new(cfg).expect("client");
    athena
        .practice(PRACTICE)
        .subscribe(Feed::Vaccines, &Subscribe::default())
        .await
        .expect("subscribe");
    let patients: Vec<u64> = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.keys().copied().collect())
        .unwrap();
    eprintln!(
        "Queuing {rows} vaccine changes over {} patients...",
        patients.len()
    );
    for i in 0..rows {
        sim.state
            .clinical_change(
                PRACTICE,
                ClinicalKind::Vaccine,
                patients[i % patients.len()],
                false,
            )
            .expect("change");
    }
    sim.state.inject(
        athena_sim::FaultRule::new(
            athena_sim::Fault::Latency(Duration::from_millis(latency_ms)),
            u32::MAX,
        )
        .method("GET")
        .path("/fhir/r4/"),
    );
    let prefix = unique("bench-enrich");
    let config: Config = connector_core::config::load_str(
        &format!(
            "practices = [\"{PRACTICE}\"]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
             topic_partitions = 3\npoll_interval = \"100ms\"\nmax_poll_interval = \"200ms\"\n\
             page_size = 100\nmanage_subscriptions = false\nenrich_concurrency = {concurrency}\n\
             [feeds.vaccines]\nenrich = true\n"
        ),
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
    let enriched = global()
        .source_records_produced
        .get_or_create(&FeedLabels {
            connector: prefix.clone(),
            feed: "fhir_enrichment".into(),
        })
        .clone();
    let reads_before = fhir_reads(&athena);
    let (control, handle) = task(prefix.clone(), changed_data_source::KIND);
    let runner = {
        let (config, env, athena, name) =
            (config.clone(), env.clone(), athena.clone(), prefix.clone());
        tokio::spawn(async move {
            changed_data_source::run(&name, &config, &env, &athena, control).await
        })
    };
    while handle.status().state != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while (enriched.get() as usize) < rows {
        assert!(
            Instant::now() < deadline,
            "enrichment did not finish: {:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reads = fhir_reads(&athena) - reads_before;
    handle.shutdown();
    runner.await.expect("join").expect("connector");
    let events = enriched.get() as f64;
    let reads_per_s = reads as f64 / elapsed;
    println!(
        "enriched events: {events:.0} in {elapsed:.2} s = {:.1} events/s; FHIR reads {reads} = {reads_per_s:.1}/s \
         of a {qps:.0} QPS budget ({:.0} % used); read latency {latency_ms} ms, concurrency {concurrency}",
        events / elapsed,
        100.0 * reads_per_s / qps,
    );
    sim.shutdown().await;
}

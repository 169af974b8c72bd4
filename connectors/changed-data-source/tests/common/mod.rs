//! Helpers shared by the integration tests: simulator client config, connector configs,
//! what the simulator handed out, and reading a topic to its end.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use athena_client::api::changed::Feed;
use athena_client::{ClientConfig, Environment};
use athena_connect_tests::Stack;
use athena_sim::SimState;
use changed_data_source::events;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Practice the tests use.
pub const PRACTICE: u64 = 195_900;

/// The feeds the simulator's generator writes to.
pub const GENERATED: &[Feed] = &[
    Feed::Patients,
    Feed::Appointments,
    Feed::Problems,
    Feed::Allergies,
    Feed::Medications,
    Feed::LabResults,
    Feed::Claims,
    Feed::Providers,
];

/// An athena client config for a simulator at `base_url`.
pub fn athena_config(base_url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        Environment::Custom(base_url.parse().expect("sim url")),
        "sim-client",
        "sim-secret".to_string().into(),
    );
    c.request_timeout = Duration::from_secs(5);
    c.retry.base = Duration::from_millis(20);
    c.retry.cap = Duration::from_millis(200);
    c.rate_limit.qps = 500.0;
    c.rate_limit.burst = 100;
    c.rate_limit.token_requests_per_minute = 600;
    // The simulator enforces scopes per route: feeds need the proprietary API, enrichment a FHIR
    // read scope per type it reads.
    c.scopes = athena_client::scopes::with_fhir_reads(
        &[athena_client::scopes::MDP],
        &[athena_contracts::events::FHIR_RESOURCE_TYPES, &["Patient"]].concat(),
    );
    c
}

/// The `[sources.changed_data.<name>]` table as TOML text.
pub fn connector_toml(prefix: &str, feeds: &[Feed], extra: &str) -> String {
    let mut s = format!(
        "practices = [\"{PRACTICE}\"]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
         topic_partitions = 3\npoll_interval = \"100ms\"\nmax_poll_interval = \"400ms\"\n{extra}\n"
    );
    for f in feeds {
        // The config key is the feed's serde name (`lab_results`), not its athena spelling.
        let key = serde_json::to_value(f).unwrap();
        s.push_str(&format!("[feeds.{}]\n", key.as_str().unwrap()));
    }
    s
}

/// Starts connector `name` as a task in this process: its control handle and its join handle.
pub fn spawn_connector(
    name: &'static str,
    config: &changed_data_source::Config,
    env: &connector_core::runtime::RunEnv,
    athena: &athena_client::AthenaClient,
) -> (
    connector_core::runtime::TaskHandle,
    tokio::task::JoinHandle<Result<(), changed_data_source::Error>>,
) {
    let (control, handle) = connector_core::runtime::task(name, changed_data_source::KIND);
    let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
    let runner = tokio::spawn(async move {
        changed_data_source::run(name, &config, &env, &athena, control).await
    });
    (handle, runner)
}

/// Asks the connector to stop and waits (at most 30 s) until it returned `Ok` and is `Stopped`.
pub async fn stop_connector(
    handle: &connector_core::runtime::TaskHandle,
    runner: tokio::task::JoinHandle<Result<(), changed_data_source::Error>>,
) {
    handle.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("stops promptly")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        handle.status().state,
        connector_core::runtime::TaskState::Stopped
    );
}

/// Every row the simulator handed out (processed) on `feed`, as (event id, snapshot).
pub fn handed_out(sim: &SimState, feed: Feed) -> Vec<(String, serde_json::Value)> {
    handed_out_in(sim, PRACTICE, feed)
}

/// Every row the simulator handed out (processed) on `feed` of `practice`.
pub fn handed_out_in(
    sim: &SimState,
    practice: u64,
    feed: Feed,
) -> Vec<(String, serde_json::Value)> {
    let codec = events::codec_with_id(feed, 1).expect("codec");
    sim.with_practice(practice, |p| {
        p.feeds
            .get(feed.path())
            .map(|f| {
                f.rows
                    .iter()
                    .filter(|r| r.processed_at.is_some())
                    .map(|r| {
                        (
                            codec.event_id(&practice.to_string(), &r.snapshot),
                            r.snapshot.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// Unprocessed rows on all `feeds`.
pub fn pending(sim: &SimState, feeds: &[Feed]) -> usize {
    feeds
        .iter()
        .map(|f| sim.pending_changes(PRACTICE, f.path()))
        .sum()
}

/// Waits until every subscription of `feeds` is effective in the simulator.
pub async fn wait_subscribed(sim: &SimState, feeds: &[Feed], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let all = sim
            .with_practice(PRACTICE, |p| {
                feeds.iter().all(|f| {
                    p.feeds
                        .get(f.path())
                        .is_some_and(|s| s.active.is_some() || !s.pending.is_empty())
                })
            })
            .unwrap_or(false);
        if all {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connector did not subscribe to {feeds:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `topic` from the beginning to its end (read_committed), every partition.
pub fn read_all(stack: &Stack, topic: &str) -> Vec<OwnedMessage> {
    let kafka = stack.kafka();
    let mut cfg = kafka.consumer_config(&athena_connect_tests::unique("reader"));
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cfg.create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    assert!(!parts.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while eof.len() < parts.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} did not reach its end"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(m.detach()),
        }
    }
    out
}

/// The `event_id` header of a message.
pub fn event_id(m: &OwnedMessage) -> String {
    let h = m.headers().expect("headers");
    connector_core::headers::get_str(h, "event_id")
        .expect("event_id header")
        .to_string()
}

/// Counts of each event id among `msgs`.
pub fn id_counts(msgs: &[OwnedMessage]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for msg in msgs {
        *m.entry(event_id(msg)).or_insert(0) += 1;
    }
    m
}

/// Counts of each event id among the rows handed out.
pub fn expected_counts(rows: &[(String, serde_json::Value)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (id, _) in rows {
        *m.entry(id.clone()).or_insert(0) += 1;
    }
    m
}

/// Writes a whole `athena-connect` config (local stack, simulator at `sim_url`, admin off) with
/// `section` (a connector table as [`connector_toml`] makes it) as connector `name`; returns
/// its path.
pub fn run_config(
    dir: &std::path::Path,
    stack: &Stack,
    sim_url: &str,
    name: &str,
    section: &str,
) -> String {
    // The section's own sub-tables (`[feeds.x]`, `[scale_out]`) nest under the connector.
    let section: String = section
        .lines()
        .map(|l| match l.strip_prefix('[') {
            Some(rest) => format!("[sources.changed_data.{name}.{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1

[schema_registry]
url = "{registry}"
auto_register = true

[athena]
base_url = "{sim_url}"
client_id = "sim-client"
client_secret = "sim-secret"
request_timeout = "5s"
[athena.retry]
base = "20ms"
cap = "200ms"
[athena.rate_limit]
qps = 500.0
burst = 100
token_requests_per_minute = 600

[admin]
enabled = false

[sources.changed_data.{name}]
{section}
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

/// Starts `athena-connect run --config <config> --only <name>` with `env` set, appending its
/// log to `log`; killed when dropped.
pub fn spawn_run(
    config: &str,
    name: &str,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    tokio::process::Command::new(athena_connect_tests::athena_connect_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--only", name])
        .env("RUST_LOG", "warn,changed_data_source=info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start the connector binary")
}

/// Stops a `run` process with SIGTERM and asserts it exits successfully within 30 s.
pub async fn stop_run(mut child: tokio::process::Child, what: &str) {
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops on SIGTERM")
        .expect("status");
    assert!(status.success(), "{what}: exit {status:?}");
}

/// `n` pseudo-random lower-case letters (synthetic, and not a repetition a codec could shrink).
pub fn filler(seed: u64, n: usize) -> String {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// Creates `topic` (`partitions`, `max.message.bytes` = `max_bytes`) before the connector starts
/// (it leaves an existing topic as it is), and returns a Kafka config whose producer keeps
/// record batches uncompressed and well under the limit (the limit applies to a whole batch),
/// so what decides is the size of one large event.
pub async fn small_topics(
    stack: &Stack,
    topics: &[&str],
    partitions: i32,
    max_bytes: usize,
) -> connector_core::kafka::KafkaConfig {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let mut kafka = stack.kafka();
    let admin = kafka.build_admin().expect("admin");
    let limit = max_bytes.to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(1))
                .set("max.message.bytes", &limit)
        })
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topic")
    {
        r.expect("create topic");
    }
    kafka
        .producer
        .insert("compression.type".into(), "none".into());
    kafka.producer.insert("batch.size".into(), "8000".into());
    kafka
}

//! Benchmark: events per second from the simulator to Kafka (Avro, acks=all, idempotent
//! producer, cursor protocol included) beside the raw rdkafka produce ceiling for the same
//! keys, payloads and headers, measured in the same run, and their ratio.
//!
//! Run (needs the local stack: `./dev up`):
//! ```sh
//! export $(./dev env)
//! cargo bench -p changed-data-source --bench bench-source            # 50,000 events
//! BENCH_EVENTS=200000 cargo bench -p changed-data-source --bench bench-source
//! BENCH_POLL_LATENCY_MS=100 cargo bench -p changed-data-source --bench bench-source  # athena-like polls
//! ```
//! `BENCH_POLL_LATENCY_MS` adds that much simulator latency to every changed-data poll: the
//! simulator answers in a few milliseconds, athena over the internet does not, and the
//! connector overlaps polling with mapping and producing to hide it.
//! Not a test: it prints figures and asserts nothing about speed.

use std::time::{Duration, Instant};

use athena_client::api::changed::{Feed, Subscribe};
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::bench::{figure, process_cpu_seconds};
use athena_connect_tests::{Stack, unique};
use athena_sim::{ChangeKind, GeneratorConfig, RunningSim, SimConfig};
use changed_data_source::Config;
use connector_core::metrics::{FeedLabels, global};
use connector_core::runtime::{RunEnv, TaskState, task};
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;

const PRACTICE: u64 = 195_900;

fn athena_config(base_url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        Environment::Custom(base_url.parse().expect("sim url")),
        "sim-client",
        "sim-secret".to_string().into(),
    );
    c.request_timeout = Duration::from_secs(30);
    c.rate_limit.qps = 1000.0;
    c.rate_limit.burst = 100;
    c
}

/// The connector's config: one practice, the patients feed, topics under `prefix`.
fn source_config(prefix: &str, page_size: u32) -> Config {
    connector_core::config::load_str(
        &format!(
            "practices = [\"{PRACTICE}\"]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
             topic_partitions = 6\npoll_interval = \"100ms\"\nmax_poll_interval = \"200ms\"\n\
             page_size = {page_size}\n[feeds.patients]\n"
        ),
        &Default::default(),
        "X",
    )
    .expect("config")
}

fn read_topic(stack: &Stack, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let mut cfg = stack.kafka().consumer_config(&unique("bench"));
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cfg.create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(n);
    let mut eof = std::collections::HashSet::new();
    while eof.len() < parts.len() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let page_size: u32 = std::env::var("BENCH_PAGE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            practices: vec![],
            mix: vec![ChangeKind::NewPatient, ChangeKind::UpdatePatient],
        }),
        token_rate_limit_per_minute: 1000,
        daily_quota: 10_000_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    athena
        .practice(PRACTICE)
        .subscribe(Feed::Patients, &Subscribe::default())
        .await
        .expect("subscribe");
    eprintln!("Generating {n} patient changes in the simulator...");
    sim.state.generate(n);
    let queued = sim.state.pending_changes(PRACTICE, "patients");
    let poll_latency_ms: u64 = std::env::var("BENCH_POLL_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if poll_latency_ms > 0 {
        sim.state.inject(
            athena_sim::FaultRule::new(
                athena_sim::Fault::Latency(Duration::from_millis(poll_latency_ms)),
                u32::MAX,
            )
            .method("GET")
            .path("/patients/changed"),
        );
    }

    // 1. The connector: simulator -> athena client -> Avro -> Kafka (acks=all) with the cursor.
    let prefix = unique("bench");
    let config = source_config(&prefix, page_size);
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let labels = FeedLabels {
        connector: prefix.clone(),
        feed: "patients".into(),
    };
    let produced = global()
        .source_records_produced
        .get_or_create(&labels)
        .clone();
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
    let cpu = process_cpu_seconds();
    // When athena handed out the first page: what comes before it is the connector's start-up
    // (schema lookup, the marker write), not its throughput.
    let mut first_page = None;
    while (produced.get() as usize) < queued {
        if first_page.is_none() && sim.state.pending_changes(PRACTICE, "patients") < queued {
            first_page = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pipeline = started.elapsed();
    let first_page = first_page.unwrap_or_default();
    let pipeline_cpu = process_cpu_seconds() - cpu;
    handle.shutdown();
    runner.await.expect("join").expect("connector");

    // 2. The ceiling: the same records (key, Avro value, headers) through a raw idempotent
    // acks=all producer, all sent and then all awaited, in the same run.
    let topic = config.topic(Feed::Patients);
    let msgs = read_topic(&stack, &topic, queued);
    assert!(msgs.len() >= queued, "{} of {queued} on Kafka", msgs.len());
    let raw_topic = format!("{prefix}.raw");
    stack.create_topic(&raw_topic, 6).await;
    let producer = stack.kafka().build_producer().expect("producer");
    let bytes: usize = msgs
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len))
        .sum();
    let started = Instant::now();
    let cpu = process_cpu_seconds();
    let futs = msgs.iter().map(|m| {
        let headers: OwnedHeaders = m.headers().cloned().unwrap_or_default();
        producer.send(
            FutureRecord::to(&raw_topic)
                .key(m.key().unwrap_or_default())
                .payload(m.payload().unwrap_or_default())
                .headers(headers),
            Timeout::After(Duration::from_secs(120)),
        )
    });
    for r in join_all(futs).await {
        r.expect("raw delivery");
    }
    let raw = started.elapsed();
    let raw_cpu = process_cpu_seconds() - cpu;

    // 3. Where the connector's time goes: fetching the same rows again (non-destructive replay
    // window, same page size) and mapping + Avro-encoding them, each without Kafka.
    let client = athena.practice(PRACTICE);
    let window = (
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now() + chrono::Duration::seconds(5),
    );
    let started = Instant::now();
    let cpu = process_cpu_seconds();
    let mut records = Vec::with_capacity(queued);
    let mut offset = 0usize;
    loop {
        let page = client
            .poll_changed(
                Feed::Patients,
                &athena_client::api::changed::PollParams {
                    leave_unprocessed: true,
                    replay: Some(window),
                    limit: Some(page_size),
                    extra: vec![("offset".into(), offset.to_string())],
                    ..Default::default()
                },
            )
            .await
            .expect("fetch");
        let got = page.items.len();
        offset += got;
        records.extend(page.items);
        if got < page_size as usize {
            break;
        }
    }
    let fetch = started.elapsed();
    let fetch_cpu = process_cpu_seconds() - cpu;
    let codec = changed_data_source::events::codec_with_id(Feed::Patients, 1).expect("codec");
    let ctx = changed_data_source::events::MapContext {
        practice_id: "195900",
        observed_at: athena_contracts::TimestampMillis::now(),
        replayed: false,
        keep_original: true,
    };
    let started = Instant::now();
    let mapped: usize = records
        .iter()
        .map(|r| codec.map(&ctx, r).expect("map").value.len())
        .sum();
    let map = started.elapsed();
    std::hint::black_box(mapped);
    // The map's stages, each timed over every row: the canonical JSON and its hash (event id,
    // `original`), the typed event (that plus the payload fields), and what remains of the map
    // (Avro encoding, key).
    let started = Instant::now();
    let canon: usize = records
        .iter()
        .map(|r| athena_contracts::mapping::canonical(r).0.len())
        .sum();
    let canonical = started.elapsed();
    std::hint::black_box(canon);
    let started = Instant::now();
    for r in &records {
        std::hint::black_box(athena_contracts::mapping::changed_data_event::<
            athena_contracts::PatientChanged,
        >(&ctx, r));
    }
    let typed = started.elapsed();

    // Throughput from the first page athena handed out to the last event acknowledged: the
    // raw producer's clock also starts at its first send. The start-up before that first page
    // (group join, the cursor producer's transactions, schema lookup, the marker) is its own
    // figure, `source.start_to_first_page`.
    let steady = pipeline
        .saturating_sub(first_page)
        .max(Duration::from_millis(1));
    let pipe_rate = queued as f64 / steady.as_secs_f64();
    let raw_rate = msgs.len() as f64 / raw.as_secs_f64();
    println!(
        "changed-data-source benchmark ({} events, avg {} bytes key+value, page_size {page_size}, added poll latency {poll_latency_ms} ms)",
        queued,
        bytes / msgs.len().max(1)
    );
    println!(
        "  connector  sim -> Kafka (Avro, acks=all, cursor): {pipe_rate:>10.0} events/s ({steady:.2?} from the first page; {pipeline:.2?} from Running)"
    );
    println!(
        "  raw rdkafka produce, same records (acks=all):     {raw_rate:>10.0} msgs/s   ({raw:.2?})"
    );
    println!(
        "  ratio connector / raw ceiling:                    {:>10.2}",
        pipe_rate / raw_rate
    );
    println!("  first page taken from athena {first_page:.2?} after the task reported Running");
    println!(
        "  breakdown, without Kafka: fetch {} rows from the simulator {fetch:.2?}, map + encode {map:.2?} \
         (canonical JSON + hash {canonical:.2?}, typed event {typed:.2?}, encode + key {:.2?})",
        records.len(),
        map.saturating_sub(typed)
    );
    // CPU per event: this process holds the simulator too, so the connector's own share is the
    // pipeline's CPU minus that of fetching the same rows again (simulator + client parsing).
    let per_event_us = |cpu: f64, n: usize| 1e6 * cpu / n.max(1) as f64;
    let connector_us = per_event_us((pipeline_cpu - fetch_cpu).max(0.0), queued);
    let raw_us = per_event_us(raw_cpu, msgs.len());
    println!(
        "  CPU per event (user+system of this process): connector {connector_us:.1} us \
         (pipeline {:.1} us minus fetching from the simulator {:.1} us), raw producer {raw_us:.1} us, \
         ratio {:.2}",
        per_event_us(pipeline_cpu, queued),
        per_event_us(fetch_cpu, records.len()),
        connector_us / raw_us.max(f64::MIN_POSITIVE)
    );
    // `./dev bench` gives Kafka's own ProducerPerformance records of this size.
    figure(
        "source.record_bytes",
        (bytes / msgs.len().max(1)) as f64,
        None,
        "bytes",
    );
    figure("source.events_per_s", pipe_rate, Some(raw_rate), "events/s");
    figure(
        "source.start_to_first_page",
        first_page.as_secs_f64() * 1000.0,
        None,
        "ms",
    );
    figure("source.cpu_per_event", connector_us, Some(raw_us), "us");
    latency_at_steady_rate(&stack, &sim, &env, &athena, page_size).await;
    sim.shutdown().await;
}

/// Row polled to event readable: changes made at a steady rate (`BENCH_LATENCY_RATE`, default
/// 1,000/s, for 3 s) while the connector polls every 100 ms; for each event, the moment a
/// `read_committed` consumer receives it minus its `observed_at` (set when the page was read,
/// before mapping). An event is readable only after Kafka acknowledged it, so this bounds
/// polled-to-acknowledged from above (the consumer's fetch is included).
async fn latency_at_steady_rate(
    stack: &Stack,
    sim: &RunningSim,
    env: &RunEnv,
    athena: &AthenaClient,
    page_size: u32,
) {
    use athena_connect_tests::bench::{distribution, distribution_figures};
    use athena_contracts::{PatientChanged, TimestampMillis};
    use connector_core::avro::AvroCodec;
    use rdkafka::consumer::StreamConsumer;
    let rate: u64 = std::env::var("BENCH_LATENCY_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let n = (rate * 3) as usize;
    let prefix = unique("benchlat");
    let config = source_config(&prefix, page_size);
    let topic = config.topic(Feed::Patients);
    stack.create_topic(&topic, 6).await;
    let reader: StreamConsumer = stack
        .kafka()
        .build_consumer(&unique("benchlat-reader"))
        .expect("reader");
    reader.subscribe(&[&topic]).expect("subscribe");
    let codec = AvroCodec::new(env.registry.clone()).expect("codec");
    // Nothing queued from the throughput run: it consumed every change.
    let (control, handle) = task(prefix.clone(), changed_data_source::KIND);
    let runner = {
        let (config, env, athena, name) = (config.clone(), env.clone(), athena.clone(), prefix);
        tokio::spawn(async move {
            changed_data_source::run(&name, &config, &env, &athena, control).await
        })
    };
    while handle.status().state != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let generator = {
        let state = sim.state.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut made = 0usize;
            while made < n {
                let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(n);
                if due > made {
                    state.generate(due - made);
                    made = due;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut lat = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while lat.len() < n {
        let m = match tokio::time::timeout_at(deadline, reader.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                eprintln!("reading {topic}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => break,
        };
        let now = TimestampMillis::now().0;
        if let Ok(e) = codec
            .decode::<PatientChanged>(m.payload().unwrap_or_default())
            .await
        {
            lat.push(now - e.envelope.observed_at.0);
        }
    }
    generator.abort();
    handle.shutdown();
    let _ = runner.await;
    lat.sort_unstable();
    println!(
        "  row polled to event readable at {rate} changes/s ({} of {n} events): {}",
        lat.len(),
        distribution(&lat, "ms")
    );
    distribution_figures(
        &format!("source.{rate}_per_s.polled_to_readable"),
        &lat,
        None,
        "ms",
    );
}

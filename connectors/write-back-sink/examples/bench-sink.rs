//! `cargo run --release -p write-back-sink --example bench-sink [-- --commands 3000 --budget 50]`
//!
//! Benchmarks the write-back sink on the real Kafka broker and registry
//! (`KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`: `export $(./dev env)`) against an
//! in-process simulator, and prints:
//! 1. the ceiling: bookings per second made straight through the athena client with the same
//!    concurrency (no Kafka), measured in this run;
//! 2. unthrottled throughput: a backlog of bookings drained by the sink, in commands per second
//!    and as a share of the ceiling;
//! 3. command-to-result latency (p50/p99/p99.9/max) at fixed offered loads (`--rates`,
//!    default 100, 1,000 and 2,000 commands/s): from the command's `issued_at` to the moment
//!    another `read_committed` consumer receives its result, beside athena's own answer time
//!    (the result's `completed_at - received_at`) and the part the sink adds after athena's
//!    answer (received by the reader - `completed_at`);
//! 4. with the simulator enforcing a QPS budget and the client configured to that budget: the
//!    achieved rate as a share of the budget and the share of throttled answers;
//! 5. with `--binary <athena-connect>`: restart to first command of the real process, after a
//!    clean stop (SIGTERM) and after SIGKILL: from the new process's start to the result of a
//!    command sent at that moment.
//!
//! Every figure is also printed as a `BENCH|name|value|ceiling|unit` line for `./dev bench`.
//! Figures only; nothing here passes or fails on timing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use athena_client::api::appointments::BookAppointment as AthenaBooking;
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::bench::{distribution, distribution_figures, figure};
use athena_contracts::{BookAppointment, CommandResult, TimestampMillis};
use athena_sim::{NewPatient, RunningSim, SimConfig};
use clap::Parser;
use connector_core::avro::{AvroCodec, RegistryConfig, SubjectStrategy};
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};
use connector_core::runtime::{RunEnv, task};
use futures::future::join_all;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use secrecy::SecretString;
use write_back_sink::Config;

const PRACTICE: u64 = 195_900;

#[derive(Parser)]
#[command(about = "write-back sink benchmark (figures only)")]
struct Args {
    /// Bookings in the unthrottled backlog run.
    #[arg(long, default_value_t = 3000)]
    commands: usize,
    /// The simulator's QPS budget in the throttled run.
    #[arg(long, default_value_t = 50)]
    budget: u32,
    /// Seconds of work in the throttled run.
    #[arg(long, default_value_t = 20)]
    budget_seconds: u32,
    /// The sink's max_in_flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Offered loads of the latency runs, commands/s.
    #[arg(long, value_delimiter = ',', default_values_t = vec![100u32, 1000, 2000])]
    rates: Vec<u32>,
    /// Seconds of commands per latency run.
    #[arg(long, default_value_t = 3)]
    rate_seconds: u32,
    /// The sink's commit_interval in milliseconds (default: the sink's default).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// The `athena-connect` binary for the restart runs (skipped without it).
    #[arg(long)]
    binary: Option<std::path::PathBuf>,
    /// Skip the throttled (QPS budget) run.
    #[arg(long)]
    skip_budget: bool,
}

struct Env {
    kafka: KafkaConfig,
    registry: RegistryConfig,
}

fn env() -> anyhow::Result<Env> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .context("KAFKA_BOOTSTRAP_SERVERS is not set: start the stack with `./dev up` and `export $(./dev env)`")?;
    let url = std::env::var("SCHEMA_REGISTRY_URL").context(
        "SCHEMA_REGISTRY_URL is not set: start the stack with `./dev up` and `export $(./dev env)`",
    )?;
    let mut registry = RegistryConfig::new(url);
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    registry.auto_register = true;
    Ok(Env {
        kafka: KafkaConfig::plaintext(bootstrap),
        registry,
    })
}

fn client_config(base_url: &str, qps: f64, burst: u32) -> ClientConfig {
    let mut c = ClientConfig::new(
        Environment::Custom(base_url.parse().expect("sim url")),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    c.request_timeout = Duration::from_secs(5);
    c.rate_limit.qps = qps;
    c.rate_limit.burst = burst;
    c.rate_limit.token_requests_per_minute = 600;
    c
}

fn slots(sim: &RunningSim, n: usize, offset_days: i64) -> Vec<String> {
    let times: Vec<String> = (0..96)
        .map(|i| format!("{:02}:{:02}", i / 4, (i % 4) * 15))
        .collect();
    let times: Vec<&str> = times.iter().map(String::as_str).collect();
    let base = chrono::Utc::now().date_naive() + chrono::Duration::days(30 + offset_days);
    let mut out = Vec::with_capacity(n);
    let mut day = 0;
    while out.len() < n {
        for provider in ["71", "72", "73", "74"] {
            out.extend(sim.state.add_open_slots(
                PRACTICE,
                "1",
                provider,
                base + chrono::Duration::days(day),
                &times,
            ));
        }
        day += 1;
    }
    out.truncate(n);
    out
}

fn booking(id: String, slot: &str, patient: &str) -> BookAppointment {
    BookAppointment {
        command_id: id,
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: Some(TimestampMillis::now()),
        appointment_id: slot.to_string(),
        patient_id: patient.to_string(),
        department_id: Some("1".into()),
        appointment_type_id: Some("82".into()),
        reason_id: None,
        booking_note: None,
        ignore_schedulable_permission: true,
        no_patient_case: false,
    }
}

/// The simulated patient every booking is for.
fn test_patient(sim: &RunningSim) -> String {
    sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            chrono::NaiveDate::from_ymd_opt(1980, 2, 3).expect("date"),
        ),
    )
}

/// New topics under a unique `<prefix>.<uuid>` base: (base, command topic, results topic),
/// plus the command topic's DLQ.
async fn fresh_topics(
    env: &Env,
    prefix: &str,
    partitions: i32,
) -> anyhow::Result<(String, String, String)> {
    let base = format!("{prefix}.{}", uuid::Uuid::new_v4().simple());
    let topic = format!("{base}.cmd.appointments");
    let results = format!("{base}.results");
    ensure_topics(
        &env.kafka.build_admin()?,
        1,
        &[
            TopicSpec::new(&topic, partitions),
            TopicSpec::new(&results, partitions),
            TopicSpec::new(format!("{topic}.dlq"), 1),
        ],
    )
    .await?;
    Ok((base, topic, results))
}

/// A `read_committed` reader of a results topic, as a latency-sensitive client would set it up.
/// `BENCH_READER_FETCH_WAIT_MS` sets its `fetch.wait.max.ms` (librdkafka's default: 500).
fn result_reader(env: &Env, group: &str) -> anyhow::Result<StreamConsumer> {
    let mut c = env.kafka.consumer_config(group);
    if let Ok(ms) = std::env::var("BENCH_READER_FETCH_WAIT_MS") {
        c.set("fetch.wait.max.ms", ms);
    }
    c.create().context("reader")
}

/// One sink over fresh topics.
struct Run {
    topic: String,
    results: String,
    producer: FutureProducer,
    codec: AvroCodec,
    handle: connector_core::runtime::TaskHandle,
    join: tokio::task::JoinHandle<Result<(), write_back_sink::Error>>,
    reader: StreamConsumer,
}

impl Run {
    async fn start(
        env: &Env,
        athena: AthenaClient,
        in_flight: usize,
        commit_interval: Option<Duration>,
    ) -> anyhow::Result<Run> {
        let (base, topic, results) = fresh_topics(env, "bench.wb", 6).await?;
        let config = Config {
            topics: vec![topic.clone()],
            results_topic: results.clone(),
            ledger_topic: format!("{base}.ledger"),
            group_id: Some(format!("{base}.group")),
            max_in_flight: in_flight,
            max_buffered: 20_000,
            ..Default::default()
        };
        let config = Config {
            commit_interval: commit_interval.unwrap_or(config.commit_interval),
            ..config
        };
        let run_env = RunEnv {
            kafka: env.kafka.clone(),
            registry: env.registry.clone(),
        };
        let (control, handle) = task("bench", write_back_sink::KIND);
        let join = tokio::spawn(async move {
            write_back_sink::run("bench", &config, &run_env, &athena, control).await
        });
        let reader = result_reader(env, &format!("{base}.reader"))?;
        reader.subscribe(&[&results])?;
        Ok(Run {
            topic,
            results,
            producer: env.kafka.build_producer()?,
            codec: AvroCodec::new(env.registry.clone())?,
            handle,
            join,
            reader,
        })
    }

    /// Produces `commands` (all sends first, then every delivery awaited).
    async fn produce(&self, commands: &[BookAppointment]) -> anyhow::Result<()> {
        let encoder = self.codec.encoder::<BookAppointment>(&self.topic).await?;
        let payloads: Vec<(String, Vec<u8>)> = commands
            .iter()
            .map(|c| Ok((format!("195900/{}", c.appointment_id), encoder.encode(c)?)))
            .collect::<anyhow::Result<_>>()?;
        let futures: Vec<_> = payloads
            .iter()
            .map(|(k, v)| {
                self.producer
                    .send_result(FutureRecord::to(&self.topic).key(k).payload(&v[..]))
                    .map_err(|(e, _)| e)
            })
            .collect::<Result<_, _>>()?;
        for r in join_all(futures).await {
            r?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Reads results until `n` distinct command ids: (command id -> (result, the reader's
    /// receive time in ms since the epoch), wall time of the first and the last).
    async fn collect(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<(HashMap<String, (CommandResult, i64)>, Instant, Instant)> {
        let mut out = HashMap::with_capacity(n);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = None;
        let mut last = Instant::now();
        while out.len() < n {
            let m = match tokio::time::timeout_at(deadline, self.reader.recv()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Ok(Err(e)) => bail!("reading {}: {e}", self.results),
                Err(_) => bail!("only {} of {n} results within {timeout:?}", out.len()),
            };
            let ts = TimestampMillis::now().0;
            let r: CommandResult = self.codec.decode(m.payload().unwrap_or_default()).await?;
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            out.insert(r.command_id.clone(), (r, ts));
        }
        Ok((out, first.unwrap_or(last), last))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.handle.shutdown();
        self.join.await??;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs only when asked (`RUST_LOG=write_back_sink=debug` shows each commit's duration).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let env = env()?;
    env.kafka
        .check_connectivity(Duration::from_secs(10))
        .await
        .context("Kafka does not answer: start the stack with `./dev up`")?;

    // --- 1. Ceiling: straight client calls, same concurrency, no Kafka.
    let sim = RunningSim::start(SimConfig::default()).await?;
    let patient = test_patient(&sim);
    let athena = AthenaClient::new(client_config(&sim.base_url, 10_000.0, 1_000))?;
    let ceiling_slots = slots(&sim, args.commands, 0);
    let practice = athena.practice(PRACTICE);
    let sem = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let t = Instant::now();
    let calls = ceiling_slots.iter().map(|s| {
        let practice = practice.clone();
        let sem = sem.clone();
        let patient = patient.clone();
        async move {
            let _p = sem.acquire().await.expect("semaphore");
            let req = AthenaBooking {
                patient_id: patient,
                appointment_type_id: Some("82".into()),
                ignore_schedulable_permission: true,
                ..Default::default()
            };
            practice.book_appointment(s, &req).await
        }
    });
    let ok = join_all(calls).await.iter().filter(|r| r.is_ok()).count();
    let ceiling = ok as f64 / t.elapsed().as_secs_f64();
    println!(
        "ceiling (client only, {} concurrent): {ceiling:.0} bookings/s ({ok} calls)",
        args.in_flight
    );

    // --- 2. Unthrottled backlog through the sink.
    let backlog_slots = slots(&sim, args.commands, 60);
    let commit_interval = args.commit_interval_ms.map(Duration::from_millis);
    let run = Run::start(&env, athena.clone(), args.in_flight, commit_interval).await?;
    let cmds: Vec<BookAppointment> = backlog_slots
        .iter()
        .enumerate()
        .map(|(i, s)| booking(format!("bench-a-{i}"), s, &patient))
        .collect();
    run.produce(&cmds).await?;
    // From the sink's first read of a command (`received_at`) to the last result's record
    // timestamp: the consumer group's join delay is not the sink's.
    let (results, _, _) = run.collect(cmds.len(), Duration::from_secs(600)).await?;
    let start_ms = results
        .values()
        .map(|(r, _)| r.received_at.0)
        .min()
        .unwrap_or(0);
    let end_ms = results.values().map(|(_, ts)| *ts).max().unwrap_or(0);
    let rate = results.len() as f64 / ((end_ms - start_ms).max(1) as f64 / 1000.0);
    let applied = results
        .values()
        .filter(|(r, _)| r.status == athena_contracts::CommandStatus::Applied)
        .count();
    println!(
        "unthrottled backlog: {} commands, {rate:.0} commands/s = {:.0}% of the ceiling ({applied} applied)",
        results.len(),
        100.0 * rate / ceiling
    );

    figure("sink.backlog_cmd_per_s", rate, Some(ceiling), "commands/s");

    // --- 3. Latency at fixed offered loads.
    for (i, r) in args.rates.iter().enumerate() {
        latency_at(
            &run,
            &sim,
            &patient,
            f64::from(*r),
            args.rate_seconds,
            120 + 30 * i as i64,
        )
        .await?;
    }
    run.stop().await?;
    sim.shutdown().await;

    if let Some(bin) = &args.binary {
        restart(&env, bin).await?;
    }
    if args.skip_budget {
        return Ok(());
    }
    budget(&env, &args).await
}

/// Commands at `steady` per second for `seconds`; prints the latency distributions.
async fn latency_at(
    run: &Run,
    sim: &RunningSim,
    patient: &str,
    steady: f64,
    seconds: u32,
    offset_days: i64,
) -> anyhow::Result<()> {
    let n = ((steady * f64::from(seconds)) as usize).max(100);
    let lat_slots = slots(sim, n, offset_days);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..8];
    let mut sent = 0usize;
    let start = Instant::now();
    let collector = {
        let n = lat_slots.len();
        let run_ref = &run;
        async move { run_ref.collect(n, Duration::from_secs(600)).await }
    };
    let producer = async {
        let mut issued: HashMap<String, i64> = HashMap::new();
        while sent < lat_slots.len() {
            let due = (start.elapsed().as_secs_f64() * steady) as usize + 1;
            let upto = due.min(lat_slots.len());
            if upto > sent {
                let batch: Vec<BookAppointment> = (sent..upto)
                    .map(|i| booking(format!("bench-l-{tag}-{i}"), &lat_slots[i], patient))
                    .collect();
                for c in &batch {
                    issued.insert(c.command_id.clone(), c.issued_at.map(|t| t.0).unwrap_or(0));
                }
                run.produce(&batch).await?;
                sent = upto;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::Ok(issued)
    };
    let (all, issued) = tokio::join!(collector, producer);
    let issued = issued?;
    let (all, _, _) = all?;
    let mut lat: Vec<i64> = all
        .values()
        .filter_map(|(r, ts)| issued.get(&r.command_id).map(|i| ts - i))
        .collect();
    lat.sort_unstable();
    let mine = || {
        all.values()
            .filter(|(r, _)| issued.contains_key(&r.command_id))
    };
    let mut answer: Vec<i64> = mine()
        .map(|(r, _)| r.completed_at.0 - r.received_at.0)
        .collect();
    answer.sort_unstable();
    let mut added: Vec<i64> = mine().map(|(r, ts)| ts - r.completed_at.0).collect();
    added.sort_unstable();
    println!(
        "latency at {steady:.0} commands/s offered ({} commands): command-to-result {}; \
         athena's answer (read to decided) {}; added after athena's answer {}",
        lat.len(),
        distribution(&lat, "ms"),
        distribution(&answer, "ms"),
        distribution(&added, "ms")
    );
    let r = steady as u64;
    // Ceiling: athena's own answer time at the same quantile.
    distribution_figures(
        &format!("sink.{r}_cmd_s.command_to_result"),
        &lat,
        Some(&answer),
        "ms",
    );
    distribution_figures(
        &format!("sink.{r}_cmd_s.added_after_answer"),
        &added,
        None,
        "ms",
    );
    Ok(())
}

/// The throttled run: the simulator enforces a QPS budget and the client is set to it.
async fn budget(env: &Env, args: &Args) -> anyhow::Result<()> {
    // --- 4. Throttled: the simulator enforces a QPS budget; the client is set to it.
    let sim = RunningSim::start(SimConfig {
        qps_limit: Some(args.budget),
        throttle_status: 403,
        ..Default::default()
    })
    .await?;
    let patient = test_patient(&sim);
    // A small burst lets the bucket make up for timer overshoot without exceeding the budget.
    let burst = (args.budget / 10).max(1);
    let athena = AthenaClient::new(client_config(&sim.base_url, f64::from(args.budget), burst))?;
    let n = (args.budget * args.budget_seconds) as usize;
    let budget_slots = slots(&sim, n, 0);
    let commit_interval = args.commit_interval_ms.map(Duration::from_millis);
    let run = Run::start(env, athena.clone(), args.in_flight, commit_interval).await?;
    let cmds: Vec<BookAppointment> = budget_slots
        .iter()
        .enumerate()
        .map(|(i, s)| booking(format!("bench-b-{i}"), s, &patient))
        .collect();
    let before = athena.stats();
    run.produce(&cmds).await?;
    let (results, first, last) = run.collect(n, Duration::from_secs(600)).await?;
    let after = athena.stats();
    let window = last.duration_since(first).as_secs_f64().max(0.001);
    let achieved = (results.len() - 1) as f64 / window;
    let requests: u64 =
        after.requests.values().sum::<u64>() - before.requests.values().sum::<u64>();
    let throttled = after.throttled - before.throttled;
    println!(
        "budget {} QPS: achieved {achieved:.1} commands/s = {:.1}% of the budget; throttled {throttled} of {requests} answers = {:.2}%",
        args.budget,
        100.0 * achieved / f64::from(args.budget),
        100.0 * throttled as f64 / requests.max(1) as f64
    );
    figure(
        "sink.budget_share",
        achieved,
        Some(f64::from(args.budget)),
        "commands/s",
    );
    run.stop().await?;
    sim.shutdown().await;
    Ok(())
}

/// Restart to first command of the real process (`athena-connect run --only bench`), after a
/// clean stop (SIGTERM) and after SIGKILL: from the new process's start until a reader receives
/// the result of a command sent at that moment.
async fn restart(env: &Env, bin: &std::path::Path) -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let sim = RunningSim::start(SimConfig::default()).await?;
    let patient = test_patient(&sim);
    let free = slots(&sim, 8, 200);
    let (base, topic, results) = fresh_topics(env, "bench.wr", 3).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sink.toml");
    // The sink's defaults (static membership, session timeout, commit interval); no QPS budget.
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1
[schema_registry]
url = "{registry}"
subject_strategy = "topic_record_name"
auto_register = true
[athena]
base_url = "{sim}"
client_id = "sim-client"
client_secret = "sim-secret"
[athena.rate_limit]
qps = 1000.0
burst = 100
[admin]
enabled = false
[sinks.write_back.bench]
topics = ["{topic}"]
results_topic = "{results}"
ledger_topic = "{base}.ledger"
group_id = "{base}.group"
topic_partitions = 3
"#,
            bootstrap = env.kafka.bootstrap_servers,
            registry = env.registry.url,
            sim = sim.base_url,
        ),
    )?;
    let log = dir.path().join("sink.log");
    let spawn = || -> anyhow::Result<std::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--only", "bench"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("start {}", bin.display()))
    };
    let reader = result_reader(env, &format!("{base}.reader"))?;
    reader.subscribe(&[&results])?;
    let producer = env.kafka.build_producer()?;
    let codec = AvroCodec::new(env.registry.clone())?;
    let encoder = codec.encoder::<BookAppointment>(&topic).await?;
    let mut next = free.iter();
    // Sends one booking and waits for its result.
    let mut one = async |label: &str| -> anyhow::Result<()> {
        let slot = next.next().context("slots")?;
        let c = booking(format!("bench-r-{label}"), slot, &patient);
        let key = format!("{PRACTICE}/{slot}");
        let payload = encoder.encode(&c)?;
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let m = match tokio::time::timeout_at(deadline, reader.recv()).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Err(e)) => bail!("reading {results}: {e}"),
                Err(_) => bail!(
                    "no result for {label} within 120 s (sink log: {})",
                    log.display()
                ),
            };
            let r: CommandResult = codec.decode(m.payload().unwrap_or_default()).await?;
            if r.command_id == c.command_id {
                return Ok(());
            }
        }
    };
    let t = Instant::now();
    let mut child = spawn()?;
    one("first").await?;
    let first = t.elapsed().as_secs_f64();
    println!("first start to first command: {first:.2} s");
    figure("sink.start_to_first_command", first, None, "s");
    for how in ["clean", "sigkill"] {
        if how == "clean" {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
        } else {
            child.kill()?;
        }
        child.wait()?;
        let t = Instant::now();
        child = spawn()?;
        one(how).await?;
        let took = t.elapsed().as_secs_f64();
        println!("restart to first command after a {how} stop: {took:.2} s");
        figure(
            &format!("sink.restart_to_first_command.{how}"),
            took,
            None,
            "s",
        );
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    sim.shutdown().await;
    Ok(())
}

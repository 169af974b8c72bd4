//! The real `write-back-sink` binary, killed with SIGKILL at random moments at least ten times
//! during a run of 2000 commands and restarted each time (the simulator runs in this test
//! process and outlives every kill). Afterwards: every command has exactly one result, and
//! athena (the simulator's write ledger) holds each write at most once, exactly when the
//! result says APPLIED. Bookings followed by cancels of the same slot also check per-key order.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_sim::{Fault, FaultRule, NewPatient, SimConfig};
use chrono::NaiveDate;
use common::*;
use connector_core::contracts::CommandStatus;
use futures::future::join_all;
use rand::Rng;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use write_back_sink::commands::*;

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

fn spawn_sink(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_write-back-sink"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn,write_back_sink=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start write-back-sink")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_writes_once() {
    let stack = Stack::get().await;
    let (sim, _athena) = start_sim(SimConfig {
        qps_limit: Some(100),
        ..Default::default()
    })
    .await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &stack, &sim.base_url, &n);
    let log = dir.path().join("sink.log");

    // A few lost answers on top of the kills.
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 10)
            .method("PUT")
            .path("/appointments/"),
    );

    let booker = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    let claimants: Vec<String> = (0..CLAIM_PATIENTS)
        .map(|i| {
            sim.state.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Sampla",
                    &format!("Sampleton{}", (b'a' + i as u8) as char),
                    NaiveDate::from_ymd_opt(1970, 1, 1 + i as u32).unwrap(),
                ),
            )
        })
        .collect();
    let slots = open_slots(&sim, BOOKINGS);

    // Produce everything up front: all sends first, then await every delivery.
    let p = Producer::new(&stack);
    let mut records: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut ids = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let id = format!("k-book-{i}");
        let bytes = p.encode(&n.appointments, &book(&id, slot, &booker)).await;
        records.push((n.appointments.clone(), format!("195900/{slot}"), bytes));
        ids.push(id);
    }
    for (i, slot) in slots.iter().take(CANCELS).enumerate() {
        let id = format!("k-cancel-{i}");
        let cancel = CancelAppointment {
            command_id: id.clone(),
            practice_id: PRACTICE.to_string(),
            correlation_id: None,
            issued_at: None,
            appointment_id: slot.clone(),
            patient_id: booker.clone(),
            cancel_reason_id: None,
            cancellation_reason: None,
        };
        let bytes = p.encode(&n.appointments, &cancel).await;
        records.push((n.appointments.clone(), format!("195900/{slot}"), bytes));
        ids.push(id);
    }
    let service_date = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    for i in 0..CLAIMS {
        let id = format!("k-claim-{i}");
        let patient = &claimants[i % CLAIM_PATIENTS];
        let claim = standalone_claim(&id, patient, service_date);
        let bytes = p.encode(&n.billing, &claim).await;
        records.push((n.billing.clone(), format!("195900/{patient}"), bytes));
        ids.push(id);
    }
    let total = ids.len();
    let futures: Vec<_> = records
        .iter()
        .map(|(topic, key, bytes)| {
            p.producer
                .send_result(FutureRecord::to(topic).key(key).payload(&bytes[..]))
                .expect("enqueue")
        })
        .collect();
    for r in join_all(futures).await {
        r.expect("delivery").expect("acknowledged");
    }

    // Count results as they arrive (read_committed, so aborted transactions do not count).
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = {
        let seen = seen.clone();
        let kafka = stack.kafka();
        let topic = n.results.clone();
        tokio::spawn(async move {
            let consumer: StreamConsumer =
                kafka.build_consumer(&unique("count")).expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            loop {
                match consumer.recv().await {
                    Ok(_) => {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    };

    let mut child = spawn_sink(&config, &log);
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
        child = spawn_sink(&config, &log);
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
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let exit = child.wait().expect("reap");
    assert!(exit.success(), "graceful stop on SIGTERM: {exit:?}");
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

    let ledger = sim.state.ledger();
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for e in &ledger {
        *per.entry((e.operation.clone(), e.entity_id.clone()))
            .or_default() += 1;
    }
    let not_applied: Vec<_> = results
        .values()
        .filter(|r| r.status != CommandStatus::Applied)
        .take(5)
        .collect();
    for (i, slot) in slots.iter().enumerate() {
        let b = per
            .get(&("BookAppointment".into(), slot.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            b,
            1,
            "slot {slot}: {b} bookings; {:?}",
            results[&format!("k-book-{i}")]
        );
        assert_eq!(
            results[&format!("k-book-{i}")].status,
            CommandStatus::Applied,
            "{not_applied:?}"
        );
    }
    for (i, slot) in slots.iter().take(CANCELS).enumerate() {
        let c = per
            .get(&("CancelAppointment".into(), slot.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(c, 1, "slot {slot}: {c} cancels");
        assert_eq!(
            results[&format!("k-cancel-{i}")].status,
            CommandStatus::Applied,
            "cancel after its booking (per-key order): {:?}",
            results[&format!("k-cancel-{i}")]
        );
    }
    let claims = ledger
        .iter()
        .filter(|e| e.operation == "CreateClaim")
        .count();
    let applied_claims = results
        .values()
        .filter(|r| r.command_type == "CreateClaim" && r.status == CommandStatus::Applied)
        .count();
    assert_eq!(
        claims, applied_claims,
        "each stand-alone claim written at most once"
    );
    assert_eq!(applied_claims, CLAIMS, "{not_applied:?}");
    eprintln!(
        "kill test: {total} commands, {kills} kills ({kills_during_run} during the run), {} result messages",
        msgs.len()
    );
    sim.shutdown().await;
}

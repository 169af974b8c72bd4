//! The shared parts of the real-binary kill tests (`kill.rs`, `replicas_kill.rs`): the sink
//! process (`athena-connect run --only <name>`), the command workload (bookings, cancels of the same slots, stand-alone claims), a
//! live result counter, and the check that athena holds each write at most once.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use athena_connect_tests::{Stack, athena_connect_bin, unique};
use athena_contracts::commands::CancelAppointment;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::{NewPatient, RunningSim};
use chrono::NaiveDate;
use futures::future::join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;

use super::{Names, PRACTICE, Producer, book, open_slots, standalone_claim};

/// An `athena-connect run --only <sink>` process that is killed when dropped, so a failing
/// assertion leaves no sink behind.
pub struct Sink(pub Child);

impl std::ops::Deref for Sink {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on `config`, running only the sink `name`, appending its log to `log`.
pub fn spawn_sink(config: &Path, name: &str, log: &Path) -> Sink {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(athena_connect_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--only", name])
        .env("RUST_LOG", "warn,write_back_sink=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map(Sink)
        .expect("start athena-connect run")
}

/// Sizes and id prefix of a kill-test workload.
pub struct Workload {
    /// Command id prefix (`<prefix>-book-<i>`, `<prefix>-cancel-<i>`, `<prefix>-claim-<i>`).
    pub prefix: &'static str,
    /// Bookings, one per open slot.
    pub bookings: usize,
    /// Cancels of the first slots, after their bookings (same key: per-key order).
    pub cancels: usize,
    /// Stand-alone claims, spread over `claim_patients` patients.
    pub claims: usize,
    /// Patients the claims are spread over.
    pub claim_patients: usize,
}

/// What was produced.
pub struct Produced {
    /// Every command id.
    pub ids: Vec<String>,
    /// The booked slots, in booking order.
    pub slots: Vec<String>,
}

impl Workload {
    /// Creates the patients and slots in the simulator and produces every command up front
    /// (all sends first, then every delivery awaited).
    pub async fn produce(&self, sim: &RunningSim, n: &Names, p: &Producer) -> Produced {
        let booker = sim.state.add_patient(
            PRACTICE,
            NewPatient::new(
                "Testa",
                "Testperson",
                NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
            ),
        );
        let claimants: Vec<String> = (0..self.claim_patients)
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
        let slots = open_slots(sim, self.bookings);
        let prefix = self.prefix;
        let mut records: Vec<(String, String, Vec<u8>)> = Vec::new();
        let mut ids = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let id = format!("{prefix}-book-{i}");
            let bytes = p.encode(&n.appointments, &book(&id, slot, &booker)).await;
            records.push((n.appointments.clone(), format!("195900/{slot}"), bytes));
            ids.push(id);
        }
        for (i, slot) in slots.iter().take(self.cancels).enumerate() {
            let id = format!("{prefix}-cancel-{i}");
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
        for i in 0..self.claims {
            let id = format!("{prefix}-claim-{i}");
            let patient = &claimants[i % self.claim_patients];
            let claim = standalone_claim(&id, patient, service_date);
            let bytes = p.encode(&n.billing, &claim).await;
            records.push((n.billing.clone(), format!("195900/{patient}"), bytes));
            ids.push(id);
        }
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
        Produced { ids, slots }
    }

    /// athena (the simulator's write ledger) holds each booking and cancel exactly once and
    /// each stand-alone claim at most once, exactly when its result says APPLIED; every command
    /// was applied.
    pub fn assert_written_once(
        &self,
        sim: &RunningSim,
        produced: &Produced,
        results: &HashMap<String, CommandResult>,
    ) {
        let prefix = self.prefix;
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
        for (i, slot) in produced.slots.iter().enumerate() {
            let b = per
                .get(&("BookAppointment".into(), slot.clone()))
                .copied()
                .unwrap_or(0);
            let result = &results[&format!("{prefix}-book-{i}")];
            assert_eq!(b, 1, "slot {slot}: {b} bookings; {result:?}");
            assert_eq!(result.status, CommandStatus::Applied, "{not_applied:?}");
        }
        for (i, slot) in produced.slots.iter().take(self.cancels).enumerate() {
            let c = per
                .get(&("CancelAppointment".into(), slot.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(c, 1, "slot {slot}: {c} cancels");
            let result = &results[&format!("{prefix}-cancel-{i}")];
            assert_eq!(
                result.status,
                CommandStatus::Applied,
                "cancel after its booking (per-key order): {result:?}"
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
        assert_eq!(applied_claims, self.claims, "{not_applied:?}");
    }
}

/// Counts the results on `topic` as they arrive (`read_committed`, so aborted transactions do
/// not count); abort the handle when done.
pub fn count_results(
    stack: &Stack,
    topic: &str,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = {
        let seen = seen.clone();
        let kafka = stack.kafka();
        let topic = topic.to_string();
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
    (seen, counter)
}

/// Sends SIGTERM to `child` and asserts it stops with exit code 0 (a sink that failed for good,
/// e.g. fenced, makes `athena-connect run` exit 1).
pub fn stop_gracefully(child: &mut Child, name: &str) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let exit = child.wait().expect("reap");
    assert!(exit.success(), "{name}: graceful stop on SIGTERM: {exit:?}");
}

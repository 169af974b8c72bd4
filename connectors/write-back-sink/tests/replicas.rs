//! Scale-out on the real broker and registry: three sink instances in one consumer group (distinct
//! `transactional_id`s) over command topics of six partitions, with athena slowed down so
//! commands are at athena while partitions move. Mid-run a third instance joins and then the
//! first one is stopped abruptly (its task aborted: no graceful drain, no final commit).
//! Properties: every command has exactly one `read_committed` result, none is lost, athena (the
//! simulator's write ledger) holds each booking, claim and document at most once, and every
//! command is APPLIED (a second replica must reconcile, not re-send and not answer DUPLICATE).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use athena_connect_tests::{LogCapture, Stack};
use athena_contracts::commands::UploadClinicalDocument;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::{Fault, FaultRule, NewPatient, SimConfig};
use chrono::NaiveDate;
use common::*;
use write_back_sink::Config;

const PARTITIONS: i32 = 6;
const PATIENTS: usize = 6;
const BOOKINGS: usize = 216;
const CLAIMS: usize = 36;
const DOCS: usize = 36;
/// Commands are produced in this many waves: before the start, after the third instance joins,
/// after the first one is aborted.
const WAVES: usize = 3;

fn doc(command_id: &str, patient: &str, i: usize) -> UploadClinicalDocument {
    UploadClinicalDocument {
        command_id: command_id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.into(),
        department_id: "1".into(),
        document_subclass: "CLINICALDOCUMENT".into(),
        attachment: format!("%PDF-1.4 synthetic {i}").into_bytes(),
        attachment_type: "PDF".into(),
        original_filename: None,
        document_type_id: None,
        autoclose: false,
        observation_date: None,
        provider_id: None,
        internal_note: None,
    }
}

/// `athena_connect_sink_commands_total` summed over the series of connector `name`.
fn commands_handled_by(name: &str) -> f64 {
    let rendered = connector_core::metrics::global().render();
    let label = format!("connector=\"{name}\"");
    rendered
        .lines()
        .filter(|l| l.starts_with("athena_connect_sink_commands_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_work_and_a_rebalance_neither_loses_nor_repeats() {
    // The sink's own log lines say when partitions were revoked and the ledger reloaded.
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("write_back_sink=info"))
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    for t in [&n.patients, &n.appointments, &n.billing] {
        stack.create_topic(t, PARTITIONS).await;
    }
    let p = Producer::new(&stack);
    let patients: Vec<String> = (0..PATIENTS)
        .map(|i| {
            sim.state.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Testa",
                    &format!("Replica{i}"),
                    NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
                ),
            )
        })
        .collect();
    let slots = open_slots(&sim, BOOKINGS);

    // Slow athena down (below the client's 2 s timeout) so that commands are under way while
    // partitions move; a few answers are lost after the write was applied, so some commands
    // carry an intent that the next owner must reconcile.
    sim.state.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(250)), 1000)
            .method("PUT")
            .path("/appointments/"),
    );
    for path in ["/claims", "/clinicaldocument"] {
        sim.state.inject(
            FaultRule::new(Fault::ApplyThenDrop, 3)
                .method("POST")
                .path(path),
        );
        sim.state.inject(
            FaultRule::new(Fault::Latency(Duration::from_millis(400)), 1000)
                .method("POST")
                .path(path),
        );
    }

    // Commands of every wave, produced later: (topic, key, id, kind, index).
    let service_date = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    let mut ids: Vec<String> = Vec::new();
    let mut waves: Vec<Vec<(String, String, String, usize)>> = vec![Vec::new(); WAVES];
    for (i, slot) in slots.iter().enumerate() {
        let id = format!("r-book-{i}");
        waves[i % WAVES].push((
            n.appointments.clone(),
            format!("195900/{slot}"),
            id.clone(),
            i,
        ));
        ids.push(id);
    }
    for i in 0..CLAIMS {
        let id = format!("r-claim-{i}");
        let patient = &patients[i % PATIENTS];
        // One key per patient: a patient's claims run in order, so each baseline is exact.
        waves[i % WAVES].push((
            n.billing.clone(),
            format!("195900/{patient}"),
            id.clone(),
            i,
        ));
        ids.push(id);
    }
    for i in 0..DOCS {
        let id = format!("r-doc-{i}");
        let patient = &patients[i % PATIENTS];
        waves[i % WAVES].push((
            n.patients.clone(),
            format!("195900/{patient}"),
            id.clone(),
            i,
        ));
        ids.push(id);
    }
    let total = ids.len();
    let produce = |wave: Vec<(String, String, String, usize)>| {
        let p = &p;
        let slots = &slots;
        let patients = &patients;
        async move {
            for (topic, key, id, i) in wave {
                if id.starts_with("r-book-") {
                    p.send(&topic, &key, &book(&id, &slots[i], &patients[i % PATIENTS]))
                        .await;
                } else if id.starts_with("r-claim-") {
                    let c = standalone_claim(&id, &patients[i % PATIENTS], service_date);
                    p.send(&topic, &key, &c).await;
                } else {
                    p.send(&topic, &key, &doc(&id, &patients[i % PATIENTS], i))
                        .await;
                }
            }
        }
    };
    let mut waves = waves.into_iter();

    let config = |instance: &str| Config {
        // Distinct transactional ids, one group: the documented way to run replicas.
        transactional_id: Some(format!("{}.tx.{instance}", n.group)),
        topic_partitions: PARTITIONS,
        max_in_flight: 4,
        max_attempts: 10,
        ..sink_config(&n)
    };
    let kafka = stack.kafka();
    let started = Instant::now();
    produce(waves.next().expect("wave 1")).await;
    let a = start_sink_named(&stack, "replica-a", config("a"), athena.clone());
    let mut b = start_sink_named(&stack, "replica-b", config("b"), athena.clone());

    // Rebalance 1: a third replica joins while the first wave is under way.
    let first = read_until(&kafka, &n.results, 30, Duration::from_secs(120)).await;
    assert!(
        first.len() >= 30,
        "the first results arrived: {}",
        first.len()
    );
    produce(waves.next().expect("wave 2")).await;
    let mut c = start_sink_named(&stack, "replica-c", config("c"), athena.clone());
    let joined_at = started.elapsed();

    // Rebalance 2: replica A is stopped abruptly while its commands are at athena.
    let second = read_until(&kafka, &n.results, total / 2, Duration::from_secs(180)).await;
    assert!(
        second.len() >= total / 2,
        "half of the results arrived: {}",
        second.len()
    );
    let a_handled = commands_handled_by("replica-a");
    a.join.abort();
    let aborted_at = started.elapsed();
    let _ = a.join.await;
    produce(waves.next().expect("wave 3")).await;

    let msgs = read_until(&kafka, &n.results, total, Duration::from_secs(240)).await;
    let done_at = started.elapsed();
    // Give a late duplicate the chance to show up.
    let more = drain_more(&kafka, &n.results, total, Duration::from_secs(5)).await;
    let msgs = if more.len() > msgs.len() { more } else { msgs };
    let results = results_by_id(&p.codec, &msgs).await;
    let missing: Vec<&String> = ids.iter().filter(|i| !results.contains_key(*i)).collect();
    assert!(
        missing.is_empty(),
        "no result for {} commands: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(results.len(), total);

    // The surviving replicas are still healthy and stop cleanly (a fenced or failed one would
    // have ended with an error).
    for (name, r) in [("B", &mut b), ("C", &mut c)] {
        if r.join.is_finished() {
            let end = (&mut r.join).await;
            panic!("replica {name} ended during the run: {end:?}");
        }
    }
    let (b_handled, c_handled) = (
        commands_handled_by("replica-b"),
        commands_handled_by("replica-c"),
    );
    b.stop().await;
    c.stop().await;

    // athena's side: each write at most once; every command applied.
    let writes = sim_writes(&sim);
    for slot in &slots {
        let w = writes
            .get(&("BookAppointment".to_string(), slot.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(w, 1, "slot {slot} booked {w} times");
    }
    let ledger = sim.state.ledger();
    let count = |op: &str| ledger.iter().filter(|e| e.operation == op).count();
    assert_eq!(
        count("CreateClaim"),
        CLAIMS,
        "stand-alone claims written once each"
    );
    assert_eq!(
        count("UploadClinicalDocument"),
        DOCS,
        "documents written once each"
    );
    let not_applied: Vec<&CommandResult> = results
        .values()
        .filter(|r| r.status != CommandStatus::Applied)
        .collect();
    assert!(
        not_applied.is_empty(),
        "{} commands not APPLIED: {:?}",
        not_applied.len(),
        &not_applied[..not_applied.len().min(5)]
    );
    let reconciled: usize = results.values().filter(|r| r.attempts == 0).count();
    let mut by_type: HashMap<&str, usize> = HashMap::new();
    for r in results.values() {
        *by_type.entry(r.command_type.as_str()).or_default() += 1;
    }
    // The work really was shared: every replica answered commands.
    assert!(
        a_handled > 0.0,
        "replica A handled commands before the abort"
    );
    assert!(b_handled > 0.0, "replica B handled commands");
    assert!(c_handled > 0.0, "replica C handled commands");
    // Partitions really moved: revocations (C joining) and ledger reloads on assignment.
    let logs = capture.text();
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(&format!("{name}=")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let revoked: Vec<u64> = logs
        .lines()
        .filter(|l| l.contains("Partitions revoked"))
        .filter_map(|l| field(l, "waited_ms"))
        .collect();
    let reloads: Vec<u64> = logs
        .lines()
        .filter(|l| l.contains("Reloaded the command ledger after an assignment"))
        .filter_map(|l| field(l, "elapsed_ms"))
        .collect();
    assert!(!revoked.is_empty(), "some partitions were revoked");
    assert!(
        reloads.len() >= 3,
        "each replica reloaded the ledger on assignment: {reloads:?}"
    );
    eprintln!(
        "replicas: {total} commands {by_type:?}; handled a={a_handled} b={b_handled} c={c_handled}; \
         C joined at {joined_at:?}, A aborted at {aborted_at:?}, all results at {done_at:?}; \
         {reconciled} results without a new athena write (reconciled); \
         revocations waited {revoked:?} ms; ledger reloads took {reloads:?} ms; athena stats {:?}",
        athena.stats()
    );
    sim.shutdown().await;
}

//! Fault runs on the real broker and registry: 5xx bursts, applied-but-lost answers, dropped
//! connections, latency past the client timeout, 403 throttling storms (the simulator's QPS
//! budget) and exhausted-quota answers. Properties: no command lost, exactly one result per
//! command, and athena (the simulator's write ledger) holds each write at most once, exactly
//! when the result says APPLIED.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::{Fault, FaultRule, NewPatient, SimConfig};
use chrono::NaiveDate;
use common::*;
use write_back_sink::Config;

fn status(code: u16) -> Fault {
    Fault::Status {
        code,
        retry_after: None,
        body: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_run_loses_nothing_answers_once_and_writes_at_most_once() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig {
        qps_limit: Some(60),
        throttle_status: 403,
        ..Default::default()
    })
    .await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);

    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    const BOOKINGS: usize = 240;
    const CLAIMS: usize = 30;
    const DOCS: usize = 30;
    let slots = open_slots(&sim, BOOKINGS);
    // Issue 14's lifecycle and insurance commands (their state made before any fault).
    let lifecycle = lifecycle::Lifecycle::prepare(&sim, &athena, "f-appt", 8).await;

    let put = |f: Fault, times: u32| {
        FaultRule::new(f, times)
            .method("PUT")
            .path("/appointments/")
    };
    sim.state.inject(put(status(500), 15));
    sim.state.inject(put(Fault::ApplyThenDrop, 12));
    sim.state.inject(put(Fault::DropConnection, 8));
    sim.state
        .inject(put(Fault::Latency(Duration::from_secs(3)), 6));
    sim.state
        .inject(FaultRule::new(Fault::ExhaustQuota, 3).method("PUT"));
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 5)
            .method("POST")
            .path("/claims"),
    );
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 5)
            .method("POST")
            .path("/clinicaldocument"),
    );
    sim.state.inject(
        FaultRule::new(status(503), 3)
            .method("POST")
            .path("/clinicaldocument"),
    );
    lifecycle::inject_faults(&sim, 3);

    let mut ids = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let id = format!("f-book-{i}");
        p.send(
            &n.appointments,
            &format!("195900/{slot}"),
            &book(&id, slot, &patient),
        )
        .await;
        ids.push(id);
    }
    let service_date = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
    for i in 0..CLAIMS {
        let id = format!("f-claim-{i}");
        let claim = standalone_claim(&id, &patient, service_date);
        // Same key: claims of one patient run in order, so each baseline is exact.
        p.send(&n.billing, &format!("195900/{patient}"), &claim)
            .await;
        ids.push(id);
    }
    for i in 0..DOCS {
        let id = format!("f-doc-{i}");
        let doc = UploadClinicalDocument {
            command_id: id.clone(),
            practice_id: PRACTICE.to_string(),
            correlation_id: None,
            issued_at: None,
            patient_id: patient.clone(),
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
        };
        p.send(&n.patients, &format!("195900/{patient}"), &doc)
            .await;
        ids.push(id);
    }
    // Chart writes (issue 14): their own workload and faults (`common/chart_run.rs`).
    let chart = chart_run::ChartWorkload {
        prefix: "f",
        patients: 4,
    };
    chart.inject_faults(&sim);
    let chart_produced = chart.produce(&sim, &n, &p).await;
    ids.extend(chart_produced.ids.iter().cloned());
    ids.extend(lifecycle.produce(&n, &p).await);

    // Headroom above the injected faults: on a loaded 2-core machine the 2 s client timeout
    // adds ambiguous attempts of its own, and this test is about loss and duplication, not
    // about the retry budget (the default is 5).
    let config = write_back_sink::Config {
        max_attempts: 10,
        ..sink_config(&n)
    };
    let sink = start_sink(&stack, config, athena.clone());
    let total = ids.len();
    let msgs = read_until(&stack.kafka(), &n.results, total, Duration::from_secs(180)).await;
    let msgs = if msgs.len() == total {
        // Give a late duplicate the chance to show up.
        let more = drain_more(&stack.kafka(), &n.results, total, Duration::from_secs(3)).await;
        if more.len() > msgs.len() { more } else { msgs }
    } else {
        msgs
    };
    let results = results_by_id(&p.codec, &msgs).await;
    let missing: Vec<&String> = ids.iter().filter(|i| !results.contains_key(*i)).collect();
    assert!(
        missing.is_empty(),
        "no result for {} commands: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(results.len(), total);
    sink.stop().await;

    // athena's side: each write at most once, and exactly when APPLIED.
    let ledger = sim.state.ledger();
    let mut booked: HashMap<String, usize> = HashMap::new();
    for e in ledger.iter().filter(|e| e.operation == "BookAppointment") {
        *booked.entry(e.entity_id.clone()).or_default() += 1;
    }
    let mut by_status: HashMap<CommandStatus, usize> = HashMap::new();
    for (i, slot) in slots.iter().enumerate() {
        let r: &CommandResult = &results[&format!("f-book-{i}")];
        *by_status.entry(r.status).or_default() += 1;
        let writes = booked.get(slot).copied().unwrap_or(0);
        assert!(writes <= 1, "slot {slot} booked {writes} times");
        match r.status {
            CommandStatus::Applied | CommandStatus::Duplicate => {
                assert_eq!(writes, 1, "{r:?}")
            }
            _ => assert_eq!(writes, 0, "{r:?} but athena holds the booking"),
        }
    }
    let applied = |prefix: &str| {
        results
            .values()
            .filter(|r| r.command_id.starts_with(prefix) && r.status == CommandStatus::Applied)
            .count()
    };
    let claims_written = ledger
        .iter()
        .filter(|e| e.operation == "CreateClaim")
        .count();
    assert_eq!(
        claims_written,
        applied("f-claim-"),
        "stand-alone claims written once each"
    );
    let docs_written = ledger
        .iter()
        .filter(|e| e.operation == "UploadClinicalDocument")
        .count();
    assert_eq!(
        docs_written,
        applied("f-doc-"),
        "documents written once each"
    );
    // The faults are all recoverable within the retry budget: everything is applied.
    assert_eq!(
        by_status.get(&CommandStatus::Applied).copied().unwrap_or(0),
        BOOKINGS,
        "booking outcomes: {by_status:?}"
    );
    let not_applied: Vec<&CommandResult> = results
        .values()
        .filter(|r| r.status != CommandStatus::Applied)
        .collect();
    assert_eq!(applied("f-claim-"), CLAIMS, "{not_applied:?}");
    assert_eq!(applied("f-doc-"), DOCS, "{not_applied:?}");
    chart.assert_written_once(&sim, &chart_produced, &results);
    lifecycle.assert_written_once(&sim, &results);
    // The faults really happened.
    let stats = athena.stats();
    assert!(
        stats.throttled > 0,
        "the QPS budget throttled some calls: {stats:?}"
    );
    assert!(
        stats.ambiguous >= 20,
        "ambiguous write outcomes were reconciled: {stats:?}"
    );
    // ...and the sink counted them in errors_total, by class.
    let rendered = connector_core::metrics::global().render();
    let count = |class: &str| -> f64 {
        let prefix =
            format!("athena_connect_errors_total{{connector=\"test\",class=\"{class}\"}} ");
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("ambiguous") >= stats.ambiguous as f64,
        "every ambiguous write is counted: {} < {stats:?}",
        count("ambiguous")
    );
    // A 5xx on a write is ambiguous (it may have been applied); the quota faults are counted
    // as rate limiting.
    assert!(
        count("rate_limited") > 0.0,
        "the throttled writes are counted"
    );
    sim.shutdown().await;
}

/// One partition, a booking held up 1.5 s at athena: the bookings behind it on other keys go
/// to athena meanwhile (the simulator's ledger order shows it), and nothing is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_key_does_not_stall_the_other_keys() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    for t in [&n.patients, &n.appointments, &n.billing] {
        stack.create_topic(t, 1).await;
    }
    let p = Producer::new(&stack);
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    let slots = open_slots(&sim, 30);
    sim.state.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(1500)), 1)
            .method("PUT")
            .path(&format!("/appointments/{}", slots[0])),
    );
    for (i, slot) in slots.iter().enumerate() {
        p.send(
            &n.appointments,
            &format!("195900/{slot}"),
            &book(&format!("s-{i}"), slot, &patient),
        )
        .await;
    }
    let config = Config {
        max_in_flight: 4,
        ..sink_config(&n)
    };
    let sink = start_sink(&stack, config, athena);
    let msgs = read_until(
        &stack.kafka(),
        &n.results,
        slots.len(),
        Duration::from_secs(60),
    )
    .await;
    let results = results_by_id(&p.codec, &msgs).await;
    assert_eq!(results.len(), slots.len());
    assert!(
        results.values().all(|r| r.status == CommandStatus::Applied),
        "{results:?}"
    );
    sink.stop().await;

    let seq: HashMap<String, u64> = sim
        .state
        .ledger()
        .into_iter()
        .filter(|e| e.operation == "BookAppointment")
        .map(|e| (e.entity_id, e.seq))
        .collect();
    let stuck = seq[&slots[0]];
    let before = slots[1..].iter().filter(|s| seq[*s] < stuck).count();
    assert!(
        before >= slots.len() / 2,
        "only {before} other bookings reached athena while the first was held up"
    );
    sim.shutdown().await;
}

/// A buffer of two commands: the sink pauses and resumes its partitions all the time, and every
/// command still gets exactly one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_and_resuming_loses_and_repeats_nothing() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    let slots = open_slots(&sim, 150);
    for (i, slot) in slots.iter().enumerate() {
        p.send(
            &n.appointments,
            &format!("195900/{slot}"),
            &book(&format!("q-{i}"), slot, &patient),
        )
        .await;
    }
    let config = Config {
        max_in_flight: 2,
        max_buffered: 2,
        ..sink_config(&n)
    };
    let sink = start_sink(&stack, config, athena);
    let msgs = read_until(
        &stack.kafka(),
        &n.results,
        slots.len(),
        Duration::from_secs(120),
    )
    .await;
    let more = drain_more(
        &stack.kafka(),
        &n.results,
        slots.len(),
        Duration::from_secs(3),
    )
    .await;
    let msgs = if more.len() > msgs.len() { more } else { msgs };
    let results = results_by_id(&p.codec, &msgs).await;
    assert_eq!(results.len(), slots.len());
    assert!(results.values().all(|r| r.status == CommandStatus::Applied));
    let booked = sim
        .state
        .ledger()
        .iter()
        .filter(|e| e.operation == "BookAppointment")
        .count();
    assert_eq!(booked, slots.len());
    sink.stop().await;
    sim.shutdown().await;
}

/// One athena resource answering 503 forever: its command ends `FAILED` after `max_attempts`
/// and the commands behind it on the same key and partition are performed and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_answering_5xx_forever_does_not_block_its_partition() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics_with(&stack, &n, 1).await;
    let p = Producer::new(&stack);
    let patient = test_patient(&sim);
    let slots = open_slots(&sim, 3);
    sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 503,
                retry_after: None,
                body: None,
            },
            u32::MAX,
        )
        .method("PUT")
        .path(&format!("/appointments/{}", slots[0])),
    );
    // One key: the later bookings wait for the first in order.
    for (i, slot) in slots.iter().enumerate() {
        p.send(
            &n.appointments,
            "195900/one-key",
            &book(&format!("f-{i}"), slot, &patient),
        )
        .await;
    }
    let config = sink_config(&n);
    let max_attempts = config.max_attempts;
    let sink = start_sink(&stack, config, athena);
    let msgs = read_until(&stack.kafka(), &n.results, 3, Duration::from_secs(60)).await;
    let results = results_by_id(&p.codec, &msgs).await;
    let stuck = &results["f-0"];
    assert_eq!(stuck.status, CommandStatus::Failed, "{stuck:?}");
    assert_eq!(
        stuck.error.as_ref().map(|e| e.code.as_str()),
        Some("ATHENA_UNAVAILABLE")
    );
    assert_eq!(stuck.attempts, max_attempts as i32);
    for id in ["f-1", "f-2"] {
        assert_eq!(results[id].status, CommandStatus::Applied, "{id}");
    }
    sink.stop().await;
    let writes = sim_writes(&sim);
    assert!(
        !writes.keys().any(|(_, id)| id == &slots[0]),
        "the failing slot was never written"
    );
    sim.shutdown().await;
}

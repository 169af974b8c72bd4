//! Patient snapshot event ids against the other paths (decision record 0010), on the real broker,
//! registry and simulator:
//! - with `patient_source = "athena"` (the default) a patient's snapshot is exactly the event
//!   (id and whole payload) the changed-data source's mapping gives the same patient state over
//!   the destructively polled `patients` feed, apart from the per-path envelope fields
//!   (`source`, `snapshot = true`, `observed_at`), checked explicitly; with `"fhir"` the ids
//!   differ, so the test fails in both directions;
//! - a patient deleted/merged between the export and the download (404) falls back to the FHIR
//!   mapping, is counted, and the run completes;
//! - `--ignored` `throughput_athena_vs_fhir`: prints backfill rates for a few thousand patients
//!   with both sources (figures only, no timing assertion).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use athena_client::PracticeId;
use athena_client::api::changed::{Feed, PollParams, Subscribe};
use athena_client::api::patients::PatientFields;
use athena_connect_tests::{Stack, unique};
use athena_contracts::mapping::{MapContext, changed_data_event};
use athena_contracts::{PatientChanged, SourceKind, TimestampMillis};
use athena_sim::{Fault, FaultRule, SimConfig};
use bulk_backfill::config::ProgressMode;
use bulk_backfill::{Config, PatientSource, run_backfill};
use common::{
    PRACTICE, athena, athena_at, create_topics, env, patient_events, sim_with, sim_with_patients,
};
use serde_json::Value;

fn config(source: PatientSource) -> Config {
    let mut c = Config::new(PRACTICE);
    c.types = vec!["Patient".into()];
    c.poll_min_interval = Duration::from_millis(100);
    c.poll_max_interval = Duration::from_secs(2);
    c.checkpoint_topic = unique("backfill.state");
    c.patients_topic = Some(unique("patients"));
    c.fhir_resources_topic = Some(unique("fhir"));
    c.checkpoint_every = 7;
    c.progress = ProgressMode::Log;
    c.log_interval = Duration::from_secs(1);
    c.patient_source = source;
    c
}

/// Runs one backfill to completion and returns its patient events by patient id.
async fn backfill(
    stack: &Stack,
    sim_client: &athena_client::AthenaClient,
    cfg: &Config,
) -> (bulk_backfill::Summary, BTreeMap<String, PatientChanged>) {
    let env = env(stack);
    create_topics(stack, cfg).await;
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s = run_backfill("default", cfg, &env, sim_client, control)
        .await
        .unwrap();
    let mut by_patient = BTreeMap::new();
    for ev in patient_events(stack, &env, cfg).await {
        assert!(ev.envelope.snapshot, "snapshot = true");
        assert_eq!(ev.envelope.source, SourceKind::BulkExport);
        let prev = by_patient.insert(ev.payload.patient_id.clone(), ev);
        assert!(prev.is_none(), "one event per patient");
    }
    (s, by_patient)
}

#[tokio::test]
async fn patient_snapshots_carry_the_changed_data_event_ids() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(20, 1000).await;
    let client = athena(&sim);
    let practice = client.practice(PracticeId(PRACTICE));
    practice
        .subscribe(Feed::Patients, &Subscribe::default())
        .await
        .unwrap();

    // K = 5 changed patients: three updates of existing charts and two new ones.
    let existing: Vec<u64> = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.keys().copied().collect())
        .unwrap();
    let mut changed = Vec::new();
    for (n, id) in existing.iter().step_by(7).take(3).enumerate() {
        let fields = PatientFields {
            email: Some(format!("synthetic{n}@example.invalid")),
            city: Some("Testville".into()),
            ..PatientFields::default()
        };
        changed.push(
            practice
                .update_patient(&id.to_string(), &fields)
                .await
                .unwrap(),
        );
    }
    for n in 0..2 {
        let fields = PatientFields {
            firstname: Some("Synth".into()),
            lastname: Some(format!("Idcheck{n}")),
            dob: chrono::NaiveDate::from_ymd_opt(1971 + n, 3, 4),
            departmentid: Some("1".into()),
            mobilephone: Some(format!("617555010{n}")),
            ..PatientFields::default()
        };
        changed.push(practice.create_patient(&fields).await.unwrap());
    }
    assert_eq!(changed.len(), 5);

    // Drain the feed destructively and map each row with the changed-data source's mapping; a
    // later row of the same patient is its newer state.
    let practice_id = PRACTICE.to_string();
    let ctx = MapContext {
        practice_id: &practice_id,
        observed_at: TimestampMillis(0),
        replayed: false,
        keep_original: config(PatientSource::Athena).include_original,
    };
    let mut changed_data: BTreeMap<String, PatientChanged> = BTreeMap::new();
    loop {
        let page = practice
            .poll_changed(Feed::Patients, &PollParams::default())
            .await
            .unwrap();
        if page.items.is_empty() {
            break;
        }
        for (rec, id) in page.items.iter().zip(page.ids()) {
            changed_data.insert(
                id.unwrap(),
                changed_data_event::<PatientChanged>(&ctx, rec).0,
            );
        }
    }
    for id in &changed {
        assert!(changed_data.contains_key(id), "feed has patient {id}");
    }
    let changed_data_ids: BTreeMap<&String, &String> = changed_data
        .iter()
        .map(|(id, ev)| (id, &ev.envelope.event_id))
        .collect();

    // athena (default): the snapshot's id is the changed-data id of the same state.
    let (s, events) = backfill(&stack, &client, &config(PatientSource::Athena)).await;
    let patients = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.len())
        .unwrap();
    assert_eq!(s.events as usize, patients);
    assert_eq!(events.len(), patients);
    assert_eq!(s.patients_fallback, 0);
    for id in &changed {
        let ev = &events[id];
        assert_eq!(
            &ev.envelope.event_id, changed_data_ids[id],
            "patient {id}: export and changed-data ids agree"
        );
        assert_eq!(ev.envelope.entity_type, "patient");
        // Whole payloads: the snapshot is the changed-data event of the same state, except the
        // envelope fields that belong to the path.
        let mut want = changed_data[id].clone();
        assert_eq!(
            (
                want.envelope.source,
                want.envelope.snapshot,
                want.envelope.replayed
            ),
            (SourceKind::ChangedData, false, false)
        );
        assert!(!ev.envelope.replayed, "a snapshot is not a replay");
        assert!(ev.envelope.observed_at > TimestampMillis(0));
        want.envelope.source = SourceKind::BulkExport;
        want.envelope.snapshot = true;
        want.envelope.observed_at = ev.envelope.observed_at;
        assert_eq!(
            ev, &want,
            "patient {id}: export and changed data give the same event"
        );
    }

    // fhir: today's behaviour, a FHIR version marker and therefore a different id.
    let (s, events) = backfill(&stack, &client, &config(PatientSource::Fhir)).await;
    assert_eq!(s.events as usize, patients);
    for id in &changed {
        assert_ne!(
            &events[id].envelope.event_id, changed_data_ids[id],
            "patient {id}: the FHIR mapping gives its own id"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_patient_gone_since_the_export_falls_back_to_the_fhir_mapping() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(30, 10).await;
    let client = athena(&sim);
    let ids: Vec<u64> = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.keys().copied().collect())
        .unwrap();
    let gone = [ids[3], ids[17]];
    // The export is snapshotted at kick-off; the first download waits so the removal surely
    // lands between the two.
    sim.state.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(500)), 1)
            .method("GET")
            .path("/fhir/r4/bulkfiles/"),
    );
    let remove_after_kickoff = async {
        while sim
            .state
            .request_count("GET", "/fhir/r4/bulkstatus/{jobid}")
            == 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for id in gone {
            assert!(sim.state.remove_patient(PRACTICE, id));
        }
    };
    let cfg = config(PatientSource::Athena);
    let ((s, events), ()) = tokio::join!(backfill(&stack, &client, &cfg), remove_after_kickoff);
    assert_eq!(
        s.events as usize,
        ids.len(),
        "every exported patient emitted"
    );
    assert_eq!(s.patients_fallback, 2);
    assert_eq!(s.skipped, 0);
    assert_eq!(events.len(), ids.len());
    for (id, ev) in &events {
        // `original` tells the two mappings apart: the FHIR resource or the athena record.
        let original: Value = serde_json::from_str(ev.original.as_deref().unwrap()).unwrap();
        let is_gone = gone.iter().any(|g| g.to_string() == *id);
        assert_eq!(
            original.get("resourceType").and_then(Value::as_str) == Some("Patient"),
            is_gone,
            "patient {id}: FHIR-mapped exactly when gone"
        );
        assert_eq!(
            original.get("patientid").is_some(),
            !is_gone,
            "patient {id}"
        );
    }
    sim.shutdown().await;
}

/// Backfill rates for a few thousand patients with both sources. Prints figures; asserts only
/// that every patient arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p bulk-backfill --test event_ids -- --ignored --nocapture"]
async fn throughput_athena_vs_fhir() {
    let stack = Stack::get().await;
    let n_extra: usize = std::env::var("BACKFILL_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    // No 202 status answers: the export is ready at the first poll, so the figures are mostly
    // download, mapping, reads and produce.
    let sim = sim_with(
        SimConfig {
            export_max_lines: 1000,
            export_polls: 0,
            ..SimConfig::default()
        },
        n_extra,
    )
    .await;
    let patients = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.len())
        .unwrap();
    // (source, client limiter QPS, reads in flight, simulated latency of GET /patients/{id}).
    let cases: [(PatientSource, f64, usize, u64); 8] = [
        (PatientSource::Fhir, 10_000.0, 8, 0),
        (PatientSource::Athena, 10_000.0, 1, 0),
        (PatientSource::Athena, 10_000.0, 8, 0),
        (PatientSource::Athena, 10_000.0, 32, 0),
        // athena production's ~150 QPS (shared by every connector on the key, §3.3).
        (PatientSource::Athena, 150.0, 8, 0),
        // A real read takes tens to hundreds of ms: in-flight reads bound the rate then.
        (PatientSource::Athena, 10_000.0, 8, 50),
        (PatientSource::Athena, 10_000.0, 32, 50),
        (PatientSource::Athena, 150.0, 32, 50),
    ];
    for (source, qps, concurrency, latency_ms) in cases {
        let label = format!(
            "{source:?}, limiter {qps} qps, {concurrency} in flight, read latency {latency_ms} ms"
        );
        sim.state.clear_faults();
        if latency_ms > 0 {
            sim.state.inject(
                FaultRule::new(Fault::Latency(Duration::from_millis(latency_ms)), 1_000_000)
                    .method("GET")
                    .path(&format!("/v1/{PRACTICE}/patients/")),
            );
        }
        let client = athena_at(&sim, qps);
        let mut cfg = config(source);
        cfg.checkpoint_every = 500;
        cfg.patient_lookup_concurrency = concurrency;
        cfg.progress = ProgressMode::Off;
        let env = env(&stack);
        create_topics(&stack, &cfg).await;
        let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
        let t = Instant::now();
        let s = run_backfill("default", &cfg, &env, &client, control)
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s.events as usize, patients);
        println!(
            "backfill {label}: {patients} patients in {secs:.2} s = {:.0} patients/s (kick-off to end)",
            patients as f64 / secs
        );
    }
    sim.shutdown().await;
}

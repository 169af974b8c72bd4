//! Push inflation of the clinical topic families on the real broker and registry: a notification
//! whose focus is a FHIR clinical resource (PatientProblem / ClinicalEncounterDiagnosis →
//! Condition, HistoricalVaccine → Immunization, ...) is read by id and becomes its typed event,
//! with the event id and payload the shared mapper gives the same resource version on the bulk
//! backfill path, keyed `practice/patient`; a resource the mapper rejects is dead-lettered as
//! `fhir_push::Unmappable` and the connector keeps running. A lab result, imaging result or
//! order pushed by athena identifier becomes its feed's event and, beside it, the typed
//! DiagnosticReport / Observation / ServiceRequest events, identical (id and payload) to what a
//! real bulk backfill run exports for the same versions (decision 0027). Problems
//! (`PatientProblem`), patient cases and referring providers pushed by the simulator's
//! generator become their events too.

use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::SourceKind;
use athena_contracts::events::conditions::ConditionChanged;
use athena_contracts::events::fhir::FhirEvent;
use athena_contracts::events::immunizations::ImmunizationChanged;
use athena_contracts::mapping::{Observation, typed_from_fhir};
use athena_sim::{RunningSim, SimConfig};
use connector_core::runtime::TaskState;
use rdkafka::message::Message;

mod common;
use common::{
    PRACTICE, athena, event_bundle_on, free_port, header, high_watermark, post, stop,
    wait_listening,
};

/// The sim's first resource of `ty` for patient 60178.
fn held(sim: &RunningSim, ty: &str) -> serde_json::Value {
    sim.state
        .with_practice(PRACTICE, |p| {
            athena_sim::api::fhir::resources(p, ty, Some(60_178))
                .into_iter()
                .map(|(_, v)| v)
                .next()
                .unwrap()
        })
        .unwrap()
}

/// What the backfill path makes of `r` (the comparison for "same version, same event").
fn backfill_view<T: FhirEvent>(r: &serde_json::Value, include_original: bool) -> T {
    let obs = Observation {
        source: SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original,
    };
    typed_from_fhir::<T>(&PRACTICE.to_string(), r, &obs).unwrap()
}

#[tokio::test]
async fn clinical_focus_becomes_its_typed_event_with_the_backfill_id() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let port = free_port();
    let (mut cfg, env) = common::config(&stack, port);
    cfg.subscription_topics.clear();
    cfg.manage_subscriptions = false;
    cfg.catch_up = false;
    cfg.typed_topics = [
        ("Condition".to_string(), unique("conditions")),
        ("Immunization".to_string(), unique("immunizations")),
    ]
    .into();
    let dlq = format!("{}.dlq", cfg.notifications_topic);
    for t in [
        cfg.patients_topic(),
        cfg.appointments_topic(),
        cfg.fhir_resources_topic(),
        cfg.typed_topic("Condition").unwrap(),
        cfg.typed_topic("Immunization").unwrap(),
        dlq.clone(),
    ] {
        stack.create_topic(&t, 1).await;
    }
    let (control, handle) = connector_core::runtime::task("push", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), athena(&sim));
        tokio::spawn(async move { fhir_push::run("push", &cfg, &env, &client, control).await })
    };
    wait_listening(port).await;
    let http = reqwest::Client::new();

    let condition = held(&sim, "Condition");
    let vaccine = held(&sim, "Immunization");
    // An encounter diagnosis that cannot map (no code): dead-lettered, not fatal.
    let mut bad = condition.clone();
    bad["id"] = serde_json::json!(format!("a-{PRACTICE}.diagnosis-bad-1"));
    bad.as_object_mut().unwrap().remove("code");
    let bad_id = sim.state.put_clinical(PRACTICE, bad).unwrap();
    let bodies = [
        event_bundle_on(
            "ClinicalEncounterDiagnosis.update",
            "22222222-0000-4000-8000-000000000001",
            serde_json::json!({"reference": format!("Condition/{}", condition["id"].as_str().unwrap())}),
        ),
        event_bundle_on(
            "HistoricalVaccine.create",
            "22222222-0000-4000-8000-000000000002",
            serde_json::json!({"reference": format!("Immunization/{}", vaccine["id"].as_str().unwrap())}),
        ),
        event_bundle_on(
            "ClinicalEncounterDiagnosis.create",
            "22222222-0000-4000-8000-000000000003",
            serde_json::json!({"reference": format!("Condition/{bad_id}")}),
        ),
    ];
    for b in &bodies {
        assert_eq!(post(&http, port, b).await, 200);
    }

    let got = stack
        .consume(
            &cfg.typed_topic("Condition").unwrap(),
            1,
            Duration::from_secs(60),
        )
        .await;
    let mut ev: ConditionChanged = stack
        .codec()
        .decode(got[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(
        got[0].key(),
        Some(format!("{PRACTICE}/60178").as_bytes()),
        "keyed by practice/patient"
    );
    assert_eq!(
        header(&got[0], "event_id"),
        Some(ev.envelope.event_id.as_str())
    );
    assert_eq!(ev.envelope.source, SourceKind::FhirPush);
    assert_eq!(
        ev.envelope.event_name.as_deref(),
        Some("ClinicalEncounterDiagnosis.update")
    );
    // The same resource version through the backfill path: the same id and payload; only the
    // envelope's per-path fields differ.
    let want: ConditionChanged = backfill_view(&condition, cfg.include_original);
    assert_eq!(ev.envelope.event_id, want.envelope.event_id);
    ev.envelope.source = want.envelope.source;
    ev.envelope.event_name = None;
    ev.envelope.snapshot = true;
    ev.envelope.observed_at = want.envelope.observed_at;
    assert_eq!(ev, want);
    assert!(!ev.payload.codes.is_empty());

    let got = stack
        .consume(
            &cfg.typed_topic("Immunization").unwrap(),
            1,
            Duration::from_secs(60),
        )
        .await;
    let iv: ImmunizationChanged = stack
        .codec()
        .decode(got[0].payload().unwrap())
        .await
        .unwrap();
    let want: ImmunizationChanged = backfill_view(&vaccine, cfg.include_original);
    assert_eq!(iv.envelope.event_id, want.envelope.event_id);
    assert_eq!(iv.payload, want.payload);
    assert_eq!(
        iv.payload.vaccine_codes[0].system.as_deref(),
        Some("http://hl7.org/fhir/sid/cvx")
    );

    let dead = stack.consume(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(dead[0].payload().unwrap(), bodies[2].as_bytes());
    assert_eq!(
        header(&dead[0], "__connect.errors.exception.class.name"),
        Some("fhir_push::Unmappable")
    );
    let status = handle.status();
    assert_eq!(status.state, TaskState::Running, "{status:?}");
    stop(handle, task).await;
    sim.shutdown().await;
}

/// The typed event of `resource` among `msgs`, checked against the backfill path's view: same
/// event id and payload, pushed, keyed `practice/patient`. Returns the event as pushed.
async fn pushed_as<T: FhirEvent>(
    stack: &Stack,
    msgs: &[rdkafka::message::OwnedMessage],
    resource: &serde_json::Value,
    row: &str,
) -> T {
    let want: T = backfill_view(resource, true);
    let id = &want.envelope().event_id;
    let m = msgs
        .iter()
        .find(|m| header(m, "event_id") == Some(id.as_str()))
        .unwrap_or_else(|| panic!("{row}: no pushed event {id}"));
    let subject = resource["subject"]["reference"]
        .as_str()
        .or(resource["patient"]["reference"].as_str())
        .and_then(|r| r.rsplit('-').next())
        .unwrap();
    assert_eq!(
        m.key(),
        Some(format!("{PRACTICE}/{subject}").as_bytes()),
        "{row}: keyed practice/patient"
    );
    let pushed: T = stack.codec().decode(m.payload().unwrap()).await.unwrap();
    assert_eq!(pushed.envelope().source, SourceKind::FhirPush, "{row}");
    let mut got = pushed.clone();
    let env = got.envelope_mut();
    env.source = SourceKind::BulkExport;
    env.observed_at = want.envelope().observed_at;
    env.event_name = None;
    env.snapshot = true;
    assert_eq!(got, want, "{row}: same version, same event on both paths");
    pushed
}

/// Every pushed event in `pushed` has its twin (same event id) in `exported`, a bulk backfill's
/// events, with an identical payload and `original`; only the path's envelope fields differ.
async fn same_on_both_paths<T: FhirEvent>(
    stack: &Stack,
    pushed: &[rdkafka::message::OwnedMessage],
    exported: &[rdkafka::message::OwnedMessage],
) {
    assert!(!pushed.is_empty());
    for m in pushed {
        let id = header(m, "event_id").unwrap();
        let twin = exported
            .iter()
            .find(|x| header(x, "event_id") == Some(id))
            .unwrap_or_else(|| panic!("the backfill has no event {id}"));
        let mut got: T = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        let want: T = stack.codec().decode(twin.payload().unwrap()).await.unwrap();
        assert_eq!(want.envelope().source, SourceKind::BulkExport);
        assert_eq!(m.key(), twin.key(), "{id}: one key on both paths");
        let env = got.envelope_mut();
        env.source = want.envelope().source;
        env.observed_at = want.envelope().observed_at;
        env.event_name = want.envelope().event_name.clone();
        env.snapshot = want.envelope().snapshot;
        env.replayed = want.envelope().replayed;
        assert_eq!(got, want, "{id}: two paths, one version, one event");
    }
}

/// Starts the push connector `cfg` against `sim` and waits until it created a Subscription per
/// topic in the simulator.
async fn start_subscribed(
    sim: &RunningSim,
    cfg: &fhir_push::Config,
    env: &connector_core::runtime::RunEnv,
) -> (
    connector_core::runtime::TaskHandle,
    tokio::task::JoinHandle<Result<(), fhir_push::Error>>,
) {
    let (control, handle) = connector_core::runtime::task("push", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), athena(sim));
        tokio::spawn(async move { fhir_push::run("push", &cfg, &env, &client, control).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sim.state.push().subscriptions.lock().len() < cfg.subscription_topics.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions not created: {:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (handle, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulator_pushes_of_every_clinical_family_inflate_through_their_fetch_with_call() {
    use athena_contracts::events::claims::ClaimChanged;
    use athena_contracts::events::diagnostic_reports::DiagnosticReportChanged;
    use athena_contracts::events::encounters::EncounterChanged;
    use athena_contracts::events::imaging_results::ImagingResultChanged;
    use athena_contracts::events::lab_results::LabResultChanged;
    use athena_contracts::events::medication_requests::MedicationRequestChanged;
    use athena_contracts::events::observations::ObservationChanged;
    use athena_contracts::events::orders::OrderChanged;
    use athena_contracts::events::providers::ProviderChanged;
    use athena_contracts::events::service_requests::ServiceRequestChanged;
    use athena_contracts::mapping::record_event_id;
    use athena_sim::clinical_changes::ClinicalKind;
    use athena_sim::{ChangeKind, GeneratorConfig};

    let stack = Stack::get().await;
    // Generator off in the background; `generate` makes claims and provider updates.
    let sim = RunningSim::start(SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            mix: vec![ChangeKind::Claim, ChangeKind::Provider],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let (mut cfg, env) = common::config(&stack, port);
    cfg.catch_up = false;
    cfg.subscription_topics = [
        "HistoricalVaccine.create",
        "Prescription.create",
        "HistoricalMedication.create",
        "Encounter.signoff",
        "ClinicalEncounterDiagnosis.create",
        "LabResult.create",
        "ImagingResult.create",
        "Order.submit",
        "Claim.create",
        "Provider.update",
    ]
    .map(String::from)
    .to_vec();
    for ty in [
        "Immunization",
        "MedicationRequest",
        "Encounter",
        "Condition",
        "DiagnosticReport",
        "Observation",
        "ServiceRequest",
    ] {
        cfg.typed_topics.insert(ty.into(), unique(ty));
    }
    for f in [
        "claims",
        "lab_results",
        "imaging_results",
        "orders",
        "providers",
    ] {
        cfg.record_topics.insert(f.into(), unique(f));
    }
    let (handle, task) = start_subscribed(&sim, &cfg, &env).await;
    // Everything the clinical changes below touch is at or after `since` (the backfill run).
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut made = std::collections::HashMap::new();
    for kind in [
        ClinicalKind::Vaccine,
        ClinicalKind::Prescription,
        ClinicalKind::Medication,
        ClinicalKind::Visit,
        ClinicalKind::LabResult,
        ClinicalKind::ImagingResult,
        ClinicalKind::Referral,
    ] {
        let c = sim
            .state
            .clinical_change(PRACTICE, kind, 60_178, false)
            .unwrap();
        made.insert(format!("{kind:?}"), c);
    }
    sim.state.generate(40);
    let resource = |r: &str| sim.state.fhir_resource(PRACTICE, r).unwrap();
    let record = |feed: &'static str, id: &str| {
        sim.state
            .with_practice(PRACTICE, |p| p.records[&(feed, id.to_string())].clone())
            .unwrap()
    };
    let timeout = Duration::from_secs(60);
    let typed = |ty: &str| cfg.typed_topic(ty).unwrap();
    let fhir_rows: [(&str, &str, usize, usize); 5] = [
        ("immunizations", "Vaccine", 0, 1),
        ("medications (prescription)", "Prescription", 0, 2),
        ("encounters", "Visit", 0, 1),
        ("conditions (encounter diagnosis)", "Visit", 4, 1),
        ("medications (historical)", "Medication", 0, 2),
    ];
    for (row, kind, index, expect) in fhir_rows {
        let r = resource(&made[kind].resources[index]);
        let ty = r["resourceType"].as_str().unwrap().to_string();
        let msgs = stack.consume(&typed(&ty), expect, timeout).await;
        match ty.as_str() {
            "Immunization" => {
                pushed_as::<ImmunizationChanged>(&stack, &msgs, &r, row).await;
            }
            "MedicationRequest" => {
                pushed_as::<MedicationRequestChanged>(&stack, &msgs, &r, row).await;
            }
            "Encounter" => {
                pushed_as::<EncounterChanged>(&stack, &msgs, &r, row).await;
            }
            _ => {
                pushed_as::<ConditionChanged>(&stack, &msgs, &r, row).await;
            }
        }
    }
    // Records named by athena identifier: the feed's event with the changed-data path's id.
    let pid = PRACTICE.to_string();
    let records: [(&str, &str, &str, &'static str); 3] = [
        ("lab results", "LabResult", "lab_results", "labresults"),
        (
            "imaging results",
            "ImagingResult",
            "imaging_results",
            "imagingresults",
        ),
        ("referral orders", "Referral", "orders", "orders"),
    ];
    for (row, kind, topic, feed) in records {
        let rec = record(feed, &made[kind].record_id);
        let msgs = stack.consume(&cfg.record_topics[topic], 1, timeout).await;
        let want = match feed {
            "labresults" => record_event_id::<LabResultChanged>(&pid, &rec),
            "imagingresults" => record_event_id::<ImagingResultChanged>(&pid, &rec),
            _ => record_event_id::<OrderChanged>(&pid, &rec),
        };
        assert_eq!(header(&msgs[0], "event_id"), Some(want.as_str()), "{row}");
        if feed == "labresults" {
            let ev: LabResultChanged = stack
                .codec()
                .decode(msgs[0].payload().unwrap())
                .await
                .unwrap();
            assert_eq!(ev.envelope.source, SourceKind::FhirPush);
            assert_eq!(ev.envelope.entity_id, made[kind].record_id);
        }
    }
    // The same lab result, imaging result and order as US Core resources (read by the id named
    // after the record, the report's analytes by its `result` references): the typed events the
    // changed-data enrichment and the backfill give those versions, with the simulator's fields.
    let lab = &made["LabResult"].resources; // [analyte Observation, DiagnosticReport]
    let (analyte, lab_report) = (resource(&lab[0]), resource(&lab[1]));
    let imaging = resource(&made["ImagingResult"].resources[0]);
    let referral = resource(&made["Referral"].resources[0]);
    let reports = stack.consume(&typed("DiagnosticReport"), 2, timeout).await;
    let dr: DiagnosticReportChanged =
        pushed_as(&stack, &reports, &lab_report, "lab results (FHIR report)").await;
    assert_eq!(dr.envelope.event_name.as_deref(), Some("LabResult.create"));
    assert_eq!(
        Some(dr.payload.codes[0].code.as_str()),
        lab_report["code"]["coding"][0]["code"].as_str()
    );
    // References as athena ids: the analyte's.
    assert_eq!(dr.payload.result_ids.len(), 1);
    let analyte_id = analyte["id"].as_str().unwrap();
    assert!(analyte_id.ends_with(&format!("-{}", dr.payload.result_ids[0])));
    let ir: DiagnosticReportChanged =
        pushed_as(&stack, &reports, &imaging, "imaging results (FHIR)").await;
    assert_eq!(
        ir.payload.conclusion.as_deref(),
        imaging["conclusion"].as_str()
    );
    let observations = stack.consume(&typed("Observation"), 1, timeout).await;
    let ob: ObservationChanged = pushed_as(
        &stack,
        &observations,
        &analyte,
        "lab results (FHIR analyte)",
    )
    .await;
    let q = ob.payload.value_quantity.as_ref().unwrap();
    assert_eq!(Some(q.value), analyte["valueQuantity"]["value"].as_f64());
    assert_eq!(q.unit.as_deref(), analyte["valueQuantity"]["unit"].as_str());
    let requests = stack.consume(&typed("ServiceRequest"), 1, timeout).await;
    let sr: ServiceRequestChanged =
        pushed_as(&stack, &requests, &referral, "referral orders (FHIR)").await;
    assert_eq!(sr.payload.status, referral["status"].as_str().unwrap());
    assert_eq!(
        Some(sr.payload.reason_codes[0].code.as_str()),
        referral["reasonCode"][0]["coding"][0]["code"].as_str()
    );

    // A real bulk backfill of the same practice since before these changes: the same versions
    // get the same event ids and identical payloads (bar the path's envelope fields).
    let mut bf = bulk_backfill::Config::new(PRACTICE);
    bf.types = ["DiagnosticReport", "Observation", "ServiceRequest"]
        .map(String::from)
        .to_vec();
    bf.since = Some(since);
    bf.checkpoint_topic = unique("backfill.state");
    bf.patients_topic = Some(unique("patients"));
    bf.fhir_resources_topic = Some(unique("fhir"));
    bf.topic_partitions = 1;
    bf.poll_min_interval = Duration::from_millis(100);
    bf.progress = bulk_backfill::config::ProgressMode::Log;
    for t in &bf.types {
        bf.typed_topics.insert(t.clone(), unique(t));
    }
    let (bf_control, _bf_handle) = connector_core::runtime::task("backfill", "bulk-backfill");
    let summary = bulk_backfill::run_backfill("backfill", &bf, &env, &athena(&sim), bf_control)
        .await
        .unwrap();
    assert!(summary.events >= 4, "{} events", summary.events);
    // Everything the backfill wrote (seeded resources of the same second included).
    let mut exported = std::collections::HashMap::new();
    for (ty, topic) in &bf.typed_topics {
        let n = high_watermark(&env.kafka, topic) as usize;
        exported.insert(ty.as_str(), stack.consume(topic, n, timeout).await);
    }
    same_on_both_paths::<DiagnosticReportChanged>(&stack, &reports, &exported["DiagnosticReport"])
        .await;
    same_on_both_paths::<ObservationChanged>(&stack, &observations, &exported["Observation"]).await;
    same_on_both_paths::<ServiceRequestChanged>(&stack, &requests, &exported["ServiceRequest"])
        .await;

    // Billing/claims and providers: Claim.create and Provider.update.
    let claims = stack
        .consume(&cfg.record_topics["claims"], 1, timeout)
        .await;
    let claim: ClaimChanged = stack
        .codec()
        .decode(claims[0].payload().unwrap())
        .await
        .unwrap();
    let held_claim = sim
        .state
        .with_practice(PRACTICE, |p| {
            p.claims[&claim.envelope.entity_id.parse::<u64>().unwrap()].to_json()
        })
        .unwrap();
    assert_eq!(
        claim.envelope.event_id,
        record_event_id::<ClaimChanged>(&pid, &held_claim)
    );
    assert_eq!(claim.envelope.event_name.as_deref(), Some("Claim.create"));
    let providers = stack
        .consume(&cfg.record_topics["providers"], 1, timeout)
        .await;
    let p: ProviderChanged = stack
        .codec()
        .decode(providers[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(p.envelope.source, SourceKind::FhirPush);
    assert_eq!(handle.status().state, TaskState::Running);
    stop(handle, task).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn problem_patient_case_and_referring_provider_pushes_become_their_events() {
    use athena_client::api::changed::Feed;
    use athena_contracts::events::patient_cases::PatientCaseChanged;
    use athena_contracts::events::referring_providers::ReferringProviderChanged;
    use athena_contracts::mapping::record_event_id;
    use athena_sim::{ChangeKind, GeneratorConfig};

    let stack = Stack::get().await;
    // The generator (stepped by hand) adds problems and changes the remaining feeds, patient
    // cases and referring providers among them.
    let sim = RunningSim::start(SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            // One problem to three changes of the ten remaining feeds.
            mix: vec![
                ChangeKind::Problem,
                ChangeKind::OtherFeed,
                ChangeKind::OtherFeed,
                ChangeKind::OtherFeed,
            ],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    // An app without DiagnosticReport read: a lab result push still gives its feed's event,
    // and the notification goes to the dead-letter topic for a replay once the scope is granted.
    sim.state
        .withhold_scopes(vec![athena_client::scopes::fhir_read("DiagnosticReport")]);
    let port = free_port();
    let (mut cfg, env) = common::config(&stack, port);
    cfg.catch_up = false;
    cfg.subscription_topics = [
        "PatientProblem.create",
        "PatientCase.create",
        "ReferringProvider.create",
        "LabResult.create",
        "Order.submit",
    ]
    .map(String::from)
    .to_vec();
    cfg.typed_topics
        .insert("Condition".into(), unique("conditions"));
    cfg.typed_topics
        .insert("ServiceRequest".into(), unique("servicerequests"));
    for f in [
        "patient_cases",
        "referring_providers",
        "lab_results",
        "orders",
    ] {
        cfg.record_topics.insert(f.into(), unique(f));
    }
    let (handle, task) = start_subscribed(&sim, &cfg, &env).await;
    sim.state.generate(120);
    let ledger = sim.state.ledger();
    let made = |op: &str, feed: &str| -> Vec<String> {
        ledger
            .iter()
            .filter(|e| e.operation == op)
            .filter(|e| feed.is_empty() || e.params.get("feed").map(String::as_str) == Some(feed))
            .map(|e| e.entity_id.clone())
            .collect()
    };
    let problems = made("AddProblem", "");
    let cases = made("RecordChange", "documents/patientcase");
    let referring = made("RecordChange", "referringproviders");
    assert!(
        !problems.is_empty() && !cases.is_empty() && !referring.is_empty(),
        "the seeded generator made no problem, patient case or referring provider: {problems:?} {cases:?} {referring:?}"
    );
    let timeout = Duration::from_secs(60);

    // Problems: PatientProblem → FHIR Condition (problem-list item), the simulator's codes.
    let conditions = stack
        .consume(
            &cfg.typed_topic("Condition").unwrap(),
            problems.len(),
            timeout,
        )
        .await;
    for id in &problems {
        let held = sim
            .state
            .fhir_resource(PRACTICE, &format!("Condition/a-{PRACTICE}.problem-{id}"))
            .unwrap();
        let ev: ConditionChanged = pushed_as(&stack, &conditions, &held, "problems").await;
        assert_eq!(
            ev.envelope.event_name.as_deref(),
            Some("PatientProblem.create")
        );
        assert_eq!(ev.payload.fhir_id, held["id"].as_str().unwrap());
        assert_eq!(
            Some(ev.payload.codes[0].code.as_str()),
            held["code"]["coding"][0]["code"].as_str()
        );
        assert_eq!(
            ev.payload.codes[0].system.as_deref(),
            Some("http://snomed.info/sct")
        );
        assert_eq!(
            Some(ev.payload.categories[0].code.as_str()),
            Some("problem-list-item")
        );
    }

    // Patient cases and referring providers: their feed's event, with the changed-data id of
    // the record the simulator holds.
    let pid = PRACTICE.to_string();
    let held = |feed: &'static str, id: &str| {
        sim.state
            .with_practice(PRACTICE, |p| p.records[&(feed, id.to_string())].clone())
            .unwrap()
    };
    let msgs = stack
        .consume(&cfg.record_topic(Feed::PatientCases), cases.len(), timeout)
        .await;
    for id in &cases {
        let want = record_event_id::<PatientCaseChanged>(&pid, &held("documents/patientcase", id));
        let m = msgs
            .iter()
            .find(|m| header(m, "event_id") == Some(want.as_str()))
            .unwrap_or_else(|| panic!("no patient case event {want}"));
        let ev: PatientCaseChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        assert_eq!(ev.envelope.entity_id, *id);
        assert_eq!(ev.envelope.source, SourceKind::FhirPush);
        assert_eq!(
            ev.envelope.event_name.as_deref(),
            Some("PatientCase.create")
        );
    }
    let msgs = stack
        .consume(
            &cfg.record_topic(Feed::ReferringProviders),
            referring.len(),
            timeout,
        )
        .await;
    for id in &referring {
        let want =
            record_event_id::<ReferringProviderChanged>(&pid, &held("referringproviders", id));
        let m = msgs
            .iter()
            .find(|m| header(m, "event_id") == Some(want.as_str()))
            .unwrap_or_else(|| panic!("no referring provider event {want}"));
        let ev: ReferringProviderChanged =
            stack.codec().decode(m.payload().unwrap()).await.unwrap();
        assert_eq!(ev.envelope.entity_id, *id);
        assert_eq!(
            ev.envelope.event_name.as_deref(),
            Some("ReferringProvider.create")
        );
    }

    let lab = sim
        .state
        .clinical_change(
            PRACTICE,
            athena_sim::clinical_changes::ClinicalKind::LabResult,
            60_178,
            false,
        )
        .unwrap();
    let msgs = stack
        .consume(&cfg.record_topic(Feed::LabResults), 1, timeout)
        .await;
    assert_eq!(
        header(&msgs[0], "ce_subject"),
        Some(lab.record_id.as_str()),
        "the feed's event is produced without the FHIR scope"
    );
    let dlq = format!("{}.dlq", cfg.notifications_topic);
    let dead = stack.consume(&dlq, 1, timeout).await;
    assert_eq!(
        header(&dead[0], "__connect.errors.exception.class.name"),
        Some("athena.Forbidden")
    );

    // An order whose FHIR id guess misses (the read by id answers 404): the patient's
    // `_lastUpdated` window finds the ServiceRequest instead, the same typed event.
    sim.state.inject(
        athena_sim::FaultRule::new(
            athena_sim::Fault::Status {
                code: 404,
                retry_after: None,
                body: None,
            },
            1,
        )
        .path(&format!("/fhir/r4/ServiceRequest/a-{PRACTICE}.order-")),
    );
    let order = sim
        .state
        .clinical_change(
            PRACTICE,
            athena_sim::clinical_changes::ClinicalKind::Referral,
            60_178,
            false,
        )
        .unwrap();
    let held_order = sim
        .state
        .fhir_resource(PRACTICE, &order.resources[0])
        .unwrap();
    // The window holds every ServiceRequest of the patient changed in the last minutes
    // (seeded ones included when the simulator started just now).
    let recent = chrono::Utc::now() - chrono::Duration::minutes(4);
    let in_window = sim
        .state
        .with_practice(PRACTICE, |p| {
            athena_sim::api::fhir::resources(p, "ServiceRequest", Some(60_178))
                .into_iter()
                .filter_map(|(_, v)| {
                    chrono::DateTime::parse_from_rfc3339(v["meta"]["lastUpdated"].as_str()?).ok()
                })
                .filter(|t| *t >= recent)
                .count()
        })
        .unwrap();
    let msgs = stack
        .consume(
            &cfg.typed_topic("ServiceRequest").unwrap(),
            in_window,
            Duration::from_secs(20),
        )
        .await;
    let sr: athena_contracts::events::service_requests::ServiceRequestChanged =
        pushed_as(&stack, &msgs, &held_order, "referral order (window)").await;
    assert_eq!(sr.envelope.event_name.as_deref(), Some("Order.submit"));
    assert!(
        sim.state.faults().is_empty(),
        "the read by id was tried first"
    );
    assert_eq!(handle.status().state, TaskState::Running);
    stop(handle, task).await;
    sim.shutdown().await;
}

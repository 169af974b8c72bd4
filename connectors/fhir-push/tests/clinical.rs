//! Push inflation of the clinical topic families on the real broker and registry: a notification
//! whose focus is a FHIR clinical resource (PatientProblem / ClinicalEncounterDiagnosis →
//! Condition, HistoricalVaccine → Immunization, ...) is read by id and becomes its typed event,
//! with the event id and payload the shared mapper gives the same resource version on the bulk
//! backfill path, keyed `practice/patient`; a resource the mapper rejects is dead-lettered as
//! `fhir_push::Unmappable` and the connector keeps running.

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
use common::{PRACTICE, athena, event_bundle_on, free_port, header, post, stop, wait_listening};

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
/// event id and payload, pushed, keyed `practice/patient`.
async fn pushed_as<T: FhirEvent>(
    stack: &Stack,
    msgs: &[rdkafka::message::OwnedMessage],
    resource: &serde_json::Value,
    row: &str,
) {
    let want: T = backfill_view(resource, true);
    let id = &want.envelope().event_id;
    let m = msgs
        .iter()
        .find(|m| header(m, "event_id") == Some(id.as_str()))
        .unwrap_or_else(|| panic!("{row}: no pushed event {id}"));
    let got: T = stack.codec().decode(m.payload().unwrap()).await.unwrap();
    assert_eq!(got.envelope().source, SourceKind::FhirPush, "{row}");
    let mut got = got;
    let env = got.envelope_mut();
    env.source = SourceKind::BulkExport;
    env.observed_at = want.envelope().observed_at;
    env.event_name = None;
    env.snapshot = true;
    assert_eq!(got, want, "{row}: same version, same event on both paths");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simulator_pushes_of_every_clinical_family_inflate_through_their_fetch_with_call() {
    use athena_contracts::events::claims::ClaimChanged;
    use athena_contracts::events::encounters::EncounterChanged;
    use athena_contracts::events::imaging_results::ImagingResultChanged;
    use athena_contracts::events::lab_results::LabResultChanged;
    use athena_contracts::events::medication_requests::MedicationRequestChanged;
    use athena_contracts::events::orders::OrderChanged;
    use athena_contracts::events::providers::ProviderChanged;
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
    let (control, handle) = connector_core::runtime::task("push", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), athena(&sim));
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
            "Immunization" => pushed_as::<ImmunizationChanged>(&stack, &msgs, &r, row).await,
            "MedicationRequest" => {
                pushed_as::<MedicationRequestChanged>(&stack, &msgs, &r, row).await
            }
            "Encounter" => pushed_as::<EncounterChanged>(&stack, &msgs, &r, row).await,
            _ => pushed_as::<ConditionChanged>(&stack, &msgs, &r, row).await,
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

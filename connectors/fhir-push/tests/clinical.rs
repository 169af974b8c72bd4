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

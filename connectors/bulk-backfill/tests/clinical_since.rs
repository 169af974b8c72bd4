//! The backfill path of every clinical capability row, in incremental `_since` mode: one
//! simulator change of each clinical kind after `since` arrives as the typed event of every
//! resource it touched, equal (id and payload) to the shared mapper's output for the
//! simulator's resource — what the changed-data enrichment and push paths emit for the same
//! version (their tests compare against the same mapper output) — and nothing older than
//! `since` is exported again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::SourceKind;
use athena_contracts::events::conditions::ConditionChanged;
use athena_contracts::events::coverages::CoverageChanged;
use athena_contracts::events::diagnostic_reports::DiagnosticReportChanged;
use athena_contracts::events::document_references::DocumentReferenceChanged;
use athena_contracts::events::encounters::EncounterChanged;
use athena_contracts::events::fhir::FhirEvent;
use athena_contracts::events::immunizations::ImmunizationChanged;
use athena_contracts::events::medication_requests::MedicationRequestChanged;
use athena_contracts::events::observations::ObservationChanged;
use athena_contracts::events::service_requests::ServiceRequestChanged;
use athena_contracts::mapping::{Observation, typed_from_fhir};
use athena_sim::clinical_changes::ClinicalKind;
use bulk_backfill::config::ProgressMode;
use bulk_backfill::{Config, run_backfill};
use common::{PRACTICE, athena, create_topics, env, high_watermark};
use connector_core::avro::AvroCodec;
use rdkafka::message::{Message, OwnedMessage};

/// Checks that the event of `resource` is among `msgs` with the mapper's id and payload.
async fn check<T: FhirEvent>(
    codec: &AvroCodec,
    msgs: &[OwnedMessage],
    resource: &serde_json::Value,
) {
    let obs = Observation {
        source: SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original: true,
    };
    let want: T = typed_from_fhir(&PRACTICE.to_string(), resource, &obs).unwrap();
    let mut found = false;
    for m in msgs {
        let mut got: T = codec.decode(m.payload().unwrap()).await.unwrap();
        if got.envelope().event_id == want.envelope().event_id {
            got.envelope_mut().observed_at = want.envelope().observed_at;
            assert_eq!(got, want, "{}", resource["id"]);
            found = true;
        }
    }
    assert!(found, "no backfill event for {}", resource["id"]);
}

#[tokio::test]
async fn clinical_changes_since_the_last_run_arrive_as_typed_events() {
    let stack = Stack::get().await;
    let sim = common::sim_with_patients(0, 100).await;
    let patient = 60_178;
    // Versions are whole seconds: keep the seeded resources strictly before `since`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut touched: Vec<String> = Vec::new();
    for kind in ClinicalKind::ALL {
        let c = sim
            .state
            .clinical_change(PRACTICE, kind, patient, false)
            .unwrap();
        touched.extend(c.resources);
    }
    let client = athena(&sim);
    let env = env(&stack);
    let mut cfg = Config::new(PRACTICE);
    cfg.types = athena_contracts::events::FHIR_RESOURCE_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect();
    cfg.since = Some(since);
    cfg.checkpoint_topic = unique("backfill.state");
    cfg.patients_topic = Some(unique("patients"));
    cfg.fhir_resources_topic = Some(unique("fhir"));
    for t in athena_contracts::events::FHIR_RESOURCE_TYPES {
        cfg.typed_topics.insert(t.to_string(), unique(t));
    }
    cfg.poll_min_interval = Duration::from_millis(100);
    cfg.progress = ProgressMode::Log;
    create_topics(&stack, &cfg).await;
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(s.events as usize, touched.len(), "only what changed since");
    let codec = AvroCodec::new(env.registry.clone()).unwrap();
    let mut by_type: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in &touched {
        let ty = r.split_once('/').unwrap().0;
        let v = sim.state.fhir_resource(PRACTICE, r).unwrap();
        by_type.entry(ty.to_string()).or_default().push(v);
    }
    for (ty, resources) in &by_type {
        let topic = cfg.typed_topic(ty).unwrap();
        assert_eq!(
            high_watermark(&env, &topic) as usize,
            resources.len(),
            "{ty}"
        );
        let msgs = stack
            .consume(&topic, resources.len(), Duration::from_secs(60))
            .await;
        for r in resources {
            match ty.as_str() {
                "Observation" => check::<ObservationChanged>(&codec, &msgs, r).await,
                "DiagnosticReport" => check::<DiagnosticReportChanged>(&codec, &msgs, r).await,
                "DocumentReference" => check::<DocumentReferenceChanged>(&codec, &msgs, r).await,
                "Immunization" => check::<ImmunizationChanged>(&codec, &msgs, r).await,
                "Condition" => check::<ConditionChanged>(&codec, &msgs, r).await,
                "MedicationRequest" => check::<MedicationRequestChanged>(&codec, &msgs, r).await,
                "Coverage" => check::<CoverageChanged>(&codec, &msgs, r).await,
                "Encounter" => check::<EncounterChanged>(&codec, &msgs, r).await,
                "ServiceRequest" => check::<ServiceRequestChanged>(&codec, &msgs, r).await,
                other => panic!("unexpected type {other}"),
            }
        }
    }
    sim.shutdown().await;
}

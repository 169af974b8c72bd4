//! The backfill path of every clinical capability row, in incremental `_since` mode, beside the
//! changed-data enrichment path: one simulator change of each clinical kind (and a problem-list
//! item) after `since` arrives through the backfill as the typed event of every resource it
//! touched, equal (id and payload)
//! to the shared mapper's output for the simulator's resource, and through the changed-data
//! source (enrichment on) as an event with the same id and an identical payload and original;
//! nothing older than `since` is exported again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::SourceKind;
use athena_contracts::events::allergy_intolerances::AllergyIntoleranceChanged;
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

/// Checks that the event of `resource` is among `msgs` (backfill) with the mapper's id and
/// payload, and that the changed-data path's event among `cds` has the same id, payload and
/// original (when a row signalled the resource; `None` otherwise).
async fn check<T: FhirEvent>(
    codec: &AvroCodec,
    msgs: &[OwnedMessage],
    cds: Option<&[OwnedMessage]>,
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
    let Some(cds) = cds else {
        return;
    };
    let mut other = None;
    for m in cds {
        let got: T = codec.decode(m.payload().unwrap()).await.unwrap();
        if got.envelope().event_id == want.envelope().event_id {
            other = Some(got);
        }
    }
    let mut other = other.unwrap_or_else(|| panic!("no changed-data event for {}", resource["id"]));
    assert_eq!(other.envelope().source, SourceKind::ChangedData);
    // Only the path's envelope fields differ.
    let env = other.envelope_mut();
    env.source = SourceKind::BulkExport;
    env.observed_at = want.envelope().observed_at;
    assert_eq!(other, want, "two paths, one version: {}", resource["id"]);
}

#[tokio::test]
async fn clinical_changes_since_the_last_run_arrive_as_typed_events() {
    let stack = Stack::get().await;
    let sim = common::sim_with_patients(0, 100).await;
    let patient = 60_178;
    // Versions are whole seconds: keep the seeded resources strictly before `since`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = chrono::Utc::now();
    // The changed-data path with enrichment, on its own topics.
    let client = athena(&sim);
    let env = env(&stack);
    let prefix = unique("cds");
    let feeds = [
        "patients",
        "problems",
        "medications",
        "vaccines",
        "prescriptions",
        "lab_results",
        "imaging_results",
        "orders",
        "visits",
    ];
    let mut text = format!(
        "practices = [\"{PRACTICE}\"]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
         topic_partitions = 1\npoll_interval = \"100ms\"\nmax_poll_interval = \"300ms\"\n"
    );
    for f in feeds {
        text.push_str(&format!("[feeds.{f}]\nenrich = true\n"));
    }
    let cds: changed_data_source::Config =
        connector_core::config::load_str(&text, &Default::default(), "X").unwrap();
    let (control, handle) = connector_core::runtime::task("cds", changed_data_source::KIND);
    let runner = {
        let (cds, env, client) = (cds.clone(), env.clone(), client.clone());
        tokio::spawn(
            async move { changed_data_source::run("cds", &cds, &env, &client, control).await },
        )
    };
    let paths = [
        "patients",
        "chart/healthhistory/problems",
        "chart/healthhistory/medication",
        "chart/healthhistory/vaccine",
        "prescriptions",
        "labresults",
        "imagingresults",
        "orders",
        "visits",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !sim
        .state
        .with_practice(PRACTICE, |p| {
            paths
                .iter()
                .all(|f| p.feeds.get(f).is_some_and(|s| s.active.is_some()))
        })
        .unwrap()
    {
        assert!(tokio::time::Instant::now() < deadline, "not subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut touched: Vec<String> = Vec::new();
    for kind in ClinicalKind::ALL {
        let c = sim
            .state
            .clinical_change(PRACTICE, kind, patient, false)
            .unwrap();
        touched.extend(c.resources);
    }
    // A problem-list item (the problems feed, read by id).
    touched.extend(
        sim.state
            .problem_change(PRACTICE, patient, false)
            .unwrap()
            .resources,
    );
    // A resource change no row signals (backfill only).
    let allergy = sim
        .state
        .with_practice(PRACTICE, |p| {
            athena_sim::api::fhir::resources(p, "AllergyIntolerance", Some(patient))
                .into_iter()
                .map(|(_, v)| v)
                .next()
                .unwrap()
        })
        .unwrap();
    let mut allergy = allergy;
    allergy["criticality"] = serde_json::json!("low");
    let allergy_ref = format!(
        "AllergyIntolerance/{}",
        sim.state.put_clinical(PRACTICE, allergy).unwrap()
    );
    touched.push(allergy_ref.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while paths
        .iter()
        .map(|f| sim.state.pending_changes(PRACTICE, f))
        .sum::<usize>()
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "feeds not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    let mut by_type: BTreeMap<String, Vec<(bool, serde_json::Value)>> = BTreeMap::new();
    for r in &touched {
        let ty = r.split_once('/').unwrap().0;
        let v = sim.state.fhir_resource(PRACTICE, r).unwrap();
        by_type
            .entry(ty.to_string())
            .or_default()
            .push((*r != allergy_ref, v));
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
        let signalled = resources.iter().filter(|(s, _)| *s).count();
        let cds_msgs = if signalled > 0 {
            // The enrichment window also re-reads older versions of the patient (same ids as
            // before): read the whole topic.
            let t = cds.typed_topic(ty);
            let n = high_watermark(&env, &t) as usize;
            assert!(n >= signalled, "{ty}: {n} changed-data events");
            stack.consume(&t, n, Duration::from_secs(60)).await
        } else {
            Vec::new()
        };
        for (signalled, r) in resources {
            let cds = signalled.then_some(cds_msgs.as_slice());
            match ty.as_str() {
                "Observation" => check::<ObservationChanged>(&codec, &msgs, cds, r).await,
                "DiagnosticReport" => check::<DiagnosticReportChanged>(&codec, &msgs, cds, r).await,
                "DocumentReference" => {
                    check::<DocumentReferenceChanged>(&codec, &msgs, cds, r).await
                }
                "Immunization" => check::<ImmunizationChanged>(&codec, &msgs, cds, r).await,
                "Condition" => check::<ConditionChanged>(&codec, &msgs, cds, r).await,
                "MedicationRequest" => {
                    check::<MedicationRequestChanged>(&codec, &msgs, cds, r).await
                }
                "Coverage" => check::<CoverageChanged>(&codec, &msgs, cds, r).await,
                "Encounter" => check::<EncounterChanged>(&codec, &msgs, cds, r).await,
                "ServiceRequest" => check::<ServiceRequestChanged>(&codec, &msgs, cds, r).await,
                "AllergyIntolerance" => {
                    check::<AllergyIntoleranceChanged>(&codec, &msgs, cds, r).await
                }
                other => panic!("unexpected type {other}"),
            }
        }
    }
    assert_eq!(
        handle.status().state,
        connector_core::runtime::TaskState::Running
    );
    handle.shutdown();
    runner.await.unwrap().unwrap();
    sim.shutdown().await;
}

//! Change-driven FHIR enrichment on the real broker and registry with the in-process simulator:
//! for each clinical read row of the capability matrix, a change made in the simulator comes out
//! of the changed-data path as the typed event of every resource it touched, with the fields the
//! simulator holds (the event equals what the shared mapper makes of the simulator's resource,
//! which is also what push inflation and the backfill emit for that version: same id, same
//! payload); one patient's versions read back in change order; a resource that does not map
//! goes to the dead-letter topic and the connector keeps running.

mod common;

use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
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
use athena_sim::{ChangeKind, GeneratorConfig, RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use connector_core::runtime::{RunEnv, TaskState};
use rdkafka::message::{Message, OwnedMessage};

/// The patient every change is made for.
const PATIENT: u64 = 60_178;

/// The simulator's current JSON of `reference` (`Type/id`).
fn held(sim: &RunningSim, reference: &str) -> serde_json::Value {
    sim.state
        .fhir_resource(PRACTICE, reference)
        .unwrap_or_else(|| panic!("{reference} not in the simulator"))
}

/// Finds the event of `resource` (this version) among `msgs` and checks it against what the
/// shared mapper makes of the simulator's JSON: same event id, same payload and original, key
/// `practice/patient`, changed-data envelope. Returns the decoded event.
async fn check<T: FhirEvent>(
    stack: &Stack,
    msgs: &[OwnedMessage],
    resource: &serde_json::Value,
    row: &str,
) -> T {
    let backfill = Observation {
        source: SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original: true,
    };
    let want: T = typed_from_fhir(&PRACTICE.to_string(), resource, &backfill)
        .unwrap_or_else(|e| panic!("{row}: the simulator's resource does not map: {e}"));
    let id = &want.envelope().event_id;
    let m = msgs
        .iter()
        .find(|m| &event_id(m) == id)
        .unwrap_or_else(|| panic!("{row}: no event {id} for {}", resource["id"]));
    let mut got: T = stack.codec().decode(m.payload().unwrap()).await.unwrap();
    assert_eq!(got.envelope().source, SourceKind::ChangedData, "{row}");
    let subject = resource
        .pointer("/subject/reference")
        .or_else(|| resource.pointer("/patient/reference"))
        .or_else(|| resource.pointer("/beneficiary/reference"))
        .and_then(|v| v.as_str())
        .unwrap();
    let patient = subject.rsplit_once(".E-").unwrap().1;
    assert_eq!(
        m.key(),
        Some(format!("{PRACTICE}/{patient}").as_bytes()),
        "{row}: keyed by practice/patient"
    );
    // Only the path's envelope fields differ between the paths.
    let env = got.envelope_mut();
    env.source = SourceKind::BulkExport;
    env.observed_at = want.envelope().observed_at;
    env.event_name = None;
    env.snapshot = true;
    env.replayed = false;
    assert_eq!(got, want, "{row}: same version, same event");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_clinical_row_arrives_as_typed_events_through_enrichment() {
    let stack = Stack::get().await;
    // The background generator is off (rate 0); `generate(1)` makes exactly one allergy.
    let sim = RunningSim::start(SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            mix: vec![ChangeKind::Allergy],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("sim");
    let prefix = unique("cds.clinical");
    let feeds = [
        Feed::Patients,
        Feed::Allergies,
        Feed::Medications,
        Feed::Vaccines,
        Feed::Prescriptions,
        Feed::LabResults,
        Feed::ImagingResults,
        Feed::Orders,
        Feed::Visits,
    ];
    let mut text = connector_toml(&prefix, &feeds, "enrich_window = \"2m\"");
    for f in feeds {
        let key = serde_json::to_value(f).unwrap();
        let key = key.as_str().unwrap();
        text = text.replace(
            &format!("[feeds.{key}]\n"),
            &format!("[feeds.{key}]\nenrich = true\n"),
        );
    }
    let config: Config =
        connector_core::config::load_str(&text, &Default::default(), "X").expect("config");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (handle, runner) = spawn_connector("clinical-test", &config, &env, &athena);
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;

    // A resource that cannot map (an Observation without `code`), seen by the lab window search.
    let bad = serde_json::json!({
        "resourceType": "Observation", "id": format!("a-{PRACTICE}.labanalyte-bad1"),
        "status": "final", "subject": {"reference": format!("Patient/a-{PRACTICE}.E-{PATIENT}")},
    });
    sim.state.put_clinical(PRACTICE, bad).unwrap();

    // One change per clinical kind; the visit and the lab result are then updated (a second
    // later: versions are whole seconds) so the order of two versions can be checked.
    let mut changes = Vec::new();
    for kind in ClinicalKind::ALL {
        let c = sim
            .state
            .clinical_change(PRACTICE, kind, PATIENT, false)
            .unwrap();
        changes.push((kind, c));
    }
    sim.state.generate(1);
    let first_visit = held(&sim, &changes[6].1.resources[0]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let visit_update = sim
        .state
        .clinical_change(PRACTICE, ClinicalKind::Visit, PATIENT, true)
        .unwrap();
    assert!(visit_update.updated);

    // Wait until every row was handed out and acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending(&sim.state, &feeds) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "feeds not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let topic = |ty: &str| config.typed_topic(ty);
    let read = |ty: &str| read_all(&stack, &topic(ty));
    let refs = |k: ClinicalKind| {
        changes
            .iter()
            .find(|(c, _)| *c == k)
            .unwrap()
            .1
            .resources
            .clone()
    };
    let find = |k: ClinicalKind, ty: &str| -> serde_json::Value {
        let r = refs(k)
            .into_iter()
            .find(|r| r.starts_with(&format!("{ty}/")))
            .unwrap();
        held(&sim, &r)
    };
    let observations = read("Observation");
    let reports = read("DiagnosticReport");
    let conditions = read("Condition");
    let requests = read("MedicationRequest");

    // The table: matrix row, then the typed event of each resource the change touched.
    let lab: ObservationChanged = check(
        &stack,
        &observations,
        &find(ClinicalKind::LabResult, "Observation"),
        "lab results (Observation)",
    )
    .await;
    assert!(
        lab.payload
            .categories
            .iter()
            .any(|c| c.code == "laboratory")
    );
    assert_eq!(
        lab.payload.codes[0].system.as_deref(),
        Some("http://loinc.org")
    );
    check::<DiagnosticReportChanged>(
        &stack,
        &reports,
        &find(ClinicalKind::LabResult, "DiagnosticReport"),
        "lab results (DiagnosticReport)",
    )
    .await;
    check::<DiagnosticReportChanged>(
        &stack,
        &reports,
        &find(ClinicalKind::ImagingResult, "DiagnosticReport"),
        "imaging results",
    )
    .await;
    // The visit's first version: encounter, vitals, note, diagnosis.
    let visit = refs(ClinicalKind::Visit);
    let encounters = read("Encounter");
    check::<EncounterChanged>(&stack, &encounters, &first_visit, "encounters").await;
    let vital: ObservationChanged =
        check(&stack, &observations, &held(&sim, &visit[1]), "vitals").await;
    assert!(
        vital
            .payload
            .categories
            .iter()
            .any(|c| c.code == "vital-signs")
    );
    check::<DocumentReferenceChanged>(
        &stack,
        &read("DocumentReference"),
        &held(&sim, &visit[3]),
        "clinical notes",
    )
    .await;
    check::<ConditionChanged>(
        &stack,
        &conditions,
        &held(&sim, &visit[4]),
        "conditions (encounter diagnosis)",
    )
    .await;
    check::<MedicationRequestChanged>(
        &stack,
        &requests,
        &find(ClinicalKind::Prescription, "MedicationRequest"),
        "medications (prescription)",
    )
    .await;
    check::<MedicationRequestChanged>(
        &stack,
        &requests,
        &find(ClinicalKind::Medication, "MedicationRequest"),
        "medications (historical)",
    )
    .await;
    let vaccine: ImmunizationChanged = check(
        &stack,
        &read("Immunization"),
        &find(ClinicalKind::Vaccine, "Immunization"),
        "immunizations",
    )
    .await;
    assert_eq!(
        vaccine.payload.vaccine_codes[0].system.as_deref(),
        Some("http://hl7.org/fhir/sid/cvx")
    );
    check::<CoverageChanged>(
        &stack,
        &read("Coverage"),
        &find(ClinicalKind::Coverage, "Coverage"),
        "coverage",
    )
    .await;
    check::<ServiceRequestChanged>(
        &stack,
        &read("ServiceRequest"),
        &find(ClinicalKind::Referral, "ServiceRequest"),
        "referrals",
    )
    .await;
    // The generated allergy (a chart item, served as FHIR AllergyIntolerance).
    let allergy_id = sim
        .state
        .with_practice(PRACTICE, |p| {
            p.chart
                .iter()
                .rev()
                .find(|c| c.kind == athena_sim::model::ChartKind::Allergy)
                .map(|c| format!("AllergyIntolerance/a-{PRACTICE}.allergy-{}", c.id))
        })
        .flatten()
        .expect("an allergy was generated");
    check::<AllergyIntoleranceChanged>(
        &stack,
        &read("AllergyIntolerance"),
        &held(&sim, &allergy_id),
        "allergies",
    )
    .await;

    // One patient's versions read back in the order the simulator changed them.
    let second_visit = held(&sim, &visit_update.resources[0]);
    let second: EncounterChanged =
        check(&stack, &encounters, &second_visit, "encounters (update)").await;
    let visit_id = first_visit["id"].as_str().unwrap();
    let mut versions = Vec::new();
    for m in encounters
        .iter()
        .filter(|m| m.key() == Some(format!("{PRACTICE}/{PATIENT}").as_bytes()))
    {
        let e: EncounterChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        if e.envelope.entity_id == visit_id && !versions.contains(&e.envelope.event_id) {
            versions.push(e.envelope.event_id.clone());
        }
    }
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        versions[1], second.envelope.event_id,
        "update read back last"
    );

    // The unmappable Observation is dead-lettered; the connector keeps running.
    let dead = read_all(&stack, &format!("{}.dlq", topic("Observation")));
    assert!(
        dead.iter().any(|m| {
            m.payload()
                .is_some_and(|p| String::from_utf8_lossy(p).contains("labanalyte-bad1"))
        }),
        "the bad resource is in the dead-letter topic"
    );
    assert_eq!(handle.status().state, TaskState::Running);
    stop_connector(&handle, runner).await;
    sim.shutdown().await;
}

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
    // The first version must be read before it is replaced: the visits feed is enriched by a
    // window search, which finds only the current version (and the connector's first poll waits
    // for its group to assign the tasks, decision 0025).
    wait_events(&stack, &config, &sim, &changes[6].1.resources[..1]).await;
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

/// The event id every path gives the simulator's current version of `reference`.
fn held_event_id(sim: &RunningSim, reference: &str) -> String {
    let obs = Observation {
        source: SourceKind::ChangedData,
        event_name: None,
        snapshot: true,
        include_original: false,
    };
    athena_contracts::mapping::resource_from_fhir(
        &PRACTICE.to_string(),
        &held(sim, reference),
        &obs,
    )
    .expect("maps")
    .envelope
    .event_id
}

/// Waits (at most 60 s) until the current version of each of `references` is on its topic.
async fn wait_events(stack: &Stack, config: &Config, sim: &RunningSim, references: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for r in references {
        let ty = r.split_once('/').unwrap().0;
        let id = held_event_id(sim, r);
        while !read_all(stack, &config.typed_topic(ty))
            .iter()
            .any(|m| event_id(m) == id)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no event {id} for {r}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The patient's events of one topic in the order they read back, each event id once (its
/// first occurrence: later copies are the deduplicated re-reads of overlapping windows):
/// (entity id, version time).
async fn first_occurrences<T: FhirEvent>(
    stack: &Stack,
    msgs: &[OwnedMessage],
) -> Vec<(String, i64)> {
    let key = format!("{PRACTICE}/{PATIENT}");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.key() == Some(key.as_bytes())) {
        let e: T = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        let env = e.envelope();
        if seen.insert(env.event_id.clone()) {
            out.push((
                env.entity_id.clone(),
                env.changed_at.expect("lastUpdated").0,
            ));
        }
    }
    out
}

/// A problem changed in the simulator arrives as a typed Condition through the problems
/// feed's enrichment with the fields the simulator holds; one patient's problems, lab results
/// and visits, each changed twice across three feeds, read back per topic in the order the
/// simulator changed them; and bad resources never stop the connector: an unknown code passes
/// through with its system as given, a resource missing a required field and an event too
/// large for its topic even without `original` are dead-lettered with the
/// `__connect.errors.*` context, and a huge inline attachment lands without `original`. Also
/// the two remaining signals: a proprietary insurance package (patients feed) arrives as a
/// `CoverageChanged`, and an appointment checked in then out (appointments feed) as its
/// Encounter's two versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn problems_order_and_bad_resources_through_enrichment() {
    use connector_core::headers::get_str;
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 0.0,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("sim");
    let prefix = unique("cds.order");
    let feeds = [
        Feed::Problems,
        Feed::LabResults,
        Feed::Visits,
        Feed::Patients,
        Feed::Appointments,
    ];
    let mut text = connector_toml(&prefix, &feeds, "enrich_window = \"2m\"");
    for key in [
        "problems",
        "lab_results",
        "visits",
        "patients",
        "appointments",
    ] {
        text = text.replace(
            &format!("[feeds.{key}]\n"),
            &format!("[feeds.{key}]\nenrich = true\n"),
        );
    }
    let config: Config =
        connector_core::config::load_str(&text, &Default::default(), "X").expect("config");
    let (conditions, documents) = (
        config.typed_topic("Condition"),
        config.typed_topic("DocumentReference"),
    );
    // A limit a normal clinical event fits in and a huge one does not.
    let kafka = small_topics(&stack, &[&conditions, &documents], 3, 16_384).await;
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv { kafka, registry };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (handle, runner) = spawn_connector("order-test", &config, &env, &athena);
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;

    // Three rounds a second apart (versions are whole seconds), each read back before the
    // next: a new problem and a lab result, a visit, then each of them changed again.
    let st = &sim.state;
    let problem = st.problem_change(PRACTICE, PATIENT, false).unwrap();
    let first_problem = held(&sim, &problem.resources[0]);
    let lab = st
        .clinical_change(PRACTICE, ClinicalKind::LabResult, PATIENT, false)
        .unwrap();
    wait_events(
        &stack,
        &config,
        &sim,
        &[&problem.resources[..], &lab.resources[..]].concat(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let visit = st
        .clinical_change(PRACTICE, ClinicalKind::Visit, PATIENT, false)
        .unwrap();
    wait_events(&stack, &config, &sim, &visit.resources).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut round = st
        .problem_change(PRACTICE, PATIENT, true)
        .unwrap()
        .resources;
    round.extend(
        st.clinical_change(PRACTICE, ClinicalKind::LabResult, PATIENT, true)
            .unwrap()
            .resources,
    );
    round.extend(
        st.clinical_change(PRACTICE, ClinicalKind::Visit, PATIENT, true)
            .unwrap()
            .resources,
    );
    wait_events(&stack, &config, &sim, &round).await;

    // Bad resources, seen by the window search of a further visit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let subject = serde_json::json!({"reference": format!("Patient/a-{PRACTICE}.E-{PATIENT}")});
    let condition = |id: &str, code: serde_json::Value| {
        serde_json::json!({"resourceType": "Condition", "id": format!("a-{PRACTICE}.localproblem-{id}"),
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": code, "subject": subject})
    };
    let unknown = condition(
        "9001",
        serde_json::json!({"coding": [
            {"system": "urn:oid:2.16.840.1.113883.3.564.9999", "code": "LOCAL-17", "display": "Local problem"},
            {"code": "X-1"}]}),
    );
    let unknown_ref = format!("Condition/{}", st.put_clinical(PRACTICE, unknown).unwrap());
    st.put_clinical(
        PRACTICE,
        condition("9002", serde_json::json!({"text": "no coding"})),
    )
    .unwrap();
    st.put_clinical(
        PRACTICE,
        condition(
            "9003",
            serde_json::json!({"coding": [{"system": "http://snomed.info/sct",
            "code": "38341003", "display": filler(7, 40_000)}]}),
        ),
    )
    .unwrap();
    let attachment = serde_json::json!({"resourceType": "DocumentReference",
        "id": format!("a-{PRACTICE}.visitnote-9004"), "status": "current", "subject": subject,
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": filler(8, 40_000),
            "url": format!("Binary/a-{PRACTICE}.visitnote-9004"), "size": 40_000}}]});
    let attachment_ref = format!(
        "DocumentReference/{}",
        st.put_clinical(PRACTICE, attachment).unwrap()
    );
    let last = st
        .clinical_change(PRACTICE, ClinicalKind::Visit, PATIENT, false)
        .unwrap();
    wait_events(
        &stack,
        &config,
        &sim,
        &[
            &last.resources[..],
            &[unknown_ref.clone(), attachment_ref.clone()],
        ]
        .concat(),
    )
    .await;

    // Coverage from the proprietary insurances (decision 0028): a package added, then
    // changed; each state arrives on the coverage topic (same schema as FHIR Coverage) as the
    // shared mapper makes it of the record athena serves, keyed by the patient.
    let athena_p = athena.practice(athena_client::PracticeId(PRACTICE));
    let fields = athena_client::api::insurances::InsuranceFields {
        insurance_package_id: Some("881".into()),
        sequence_number: Some(1),
        insurance_id_number: Some("SYN0001".into()),
        policyholder_firstname: Some("Testa".into()),
        policyholder_lastname: Some("Testperson".into()),
        policyholder_dob: chrono::NaiveDate::from_ymd_opt(1980, 2, 3),
        policyholder_sex: Some("F".into()),
        relationship_to_insured_id: Some("1".into()),
        extra: vec![("policynumber".into(), "G-77".into())],
    };
    let patient = PATIENT.to_string();
    let coverages = config.typed_topic("Coverage");
    for step in 0..2 {
        // Each state read back before the next change (a read returns the current state).
        if step == 0 {
            athena_p
                .create_insurance(&patient, &fields)
                .await
                .expect("add insurance");
        } else {
            let insurance = athena_p.insurances(&patient).await.expect("insurances")[0]
                .insuranceid
                .clone()
                .unwrap();
            let changed = athena_client::api::insurances::InsuranceFields {
                insurance_id_number: Some("SYN0002".into()),
                ..Default::default()
            };
            athena_p
                .update_insurance(&patient, &insurance, &changed)
                .await
                .expect("update insurance");
        }
        let held = athena_p.insurances(&patient).await.expect("insurances");
        assert_eq!(held.len(), 1);
        let want = athena_contracts::events::coverages::coverage_from_insurance(
            &PRACTICE.to_string(),
            &patient,
            &held[0].raw,
            &Observation {
                source: SourceKind::ChangedData,
                event_name: None,
                snapshot: true,
                include_original: true,
            },
        )
        .expect("maps");
        let id = want.envelope.event_id.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let m = loop {
            if let Some(m) = read_all(&stack, &coverages)
                .into_iter()
                .find(|m| event_id(m) == id)
            {
                break m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no coverage event {id}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(m.key(), Some(format!("{PRACTICE}/{PATIENT}").as_bytes()));
        let mut got: CoverageChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        assert_eq!(got.envelope.entity_type, "insurance");
        let sub = ["SYN0001", "SYN0002"][step];
        assert_eq!(got.payload.subscriber_id.as_deref(), Some(sub));
        got.envelope.observed_at = want.envelope.observed_at;
        assert_eq!(got, want, "same record, same event");
    }

    // Encounters from the appointments feed: an appointment checked in (Encounter arrived),
    // then checked out (finished), each state read back before the next.
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    let slot = st
        .add_open_slots(PRACTICE, "1", "71", day, &["15:00"])
        .remove(0);
    let booking = athena_client::api::appointments::BookAppointment {
        patient_id: patient.clone(),
        appointment_type_id: Some("82".into()),
        ..Default::default()
    };
    athena_p
        .book_appointment(&slot, &booking)
        .await
        .expect("book");
    athena_p.start_checkin(&slot).await.expect("start check-in");
    athena_p.checkin(&slot).await.expect("check in");
    let encounter = format!("Encounter/a-{PRACTICE}.encounter-{slot}");
    for (step, status) in ["arrived", "finished"].into_iter().enumerate() {
        if step == 1 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            athena_p.checkout(&slot).await.expect("check out");
        }
        wait_events(&stack, &config, &sim, std::slice::from_ref(&encounter)).await;
        let e: EncounterChanged = check(
            &stack,
            &read_all(&stack, &config.typed_topic("Encounter")),
            &held(&sim, &encounter),
            "encounters (appointments)",
        )
        .await;
        assert_eq!(e.payload.status, status);
    }

    // The problem, through the problems feed: code with system, clinical status, onset,
    // patient; both versions, in change order.
    let condition_msgs = read_all(&stack, &conditions);
    let resolved: ConditionChanged = check(
        &stack,
        &condition_msgs,
        &held(&sim, &problem.resources[0]),
        "problems (resolved)",
    )
    .await;
    let active: ConditionChanged =
        check(&stack, &condition_msgs, &first_problem, "problems (added)").await;
    let p = &resolved.payload;
    assert_eq!(p.patient_id, PATIENT.to_string());
    assert_eq!(p.codes[0].system.as_deref(), Some("http://snomed.info/sct"));
    assert_eq!(p.codes[0].code, first_problem["code"]["coding"][0]["code"]);
    assert_eq!(
        (
            active.payload.clinical_status.as_deref(),
            p.clinical_status.as_deref()
        ),
        (Some("active"), Some("resolved"))
    );
    assert!(p.onset_at.is_some() && p.abatement_at.is_some(), "{p:?}");
    assert_eq!(p.onset_at, active.payload.onset_at);

    // Per topic, the patient's events read back in change order, every resource's versions
    // included (the problem and the diagnosis on the conditions topic; the lab analyte and the
    // vitals on the observations topic).
    for (topic, order) in [
        (
            "Condition",
            first_occurrences::<ConditionChanged>(&stack, &condition_msgs).await,
        ),
        (
            "Observation",
            first_occurrences::<ObservationChanged>(
                &stack,
                &read_all(&stack, &config.typed_topic("Observation")),
            )
            .await,
        ),
    ] {
        // Only the resources this test changed: a window search also finds resources changed
        // before anything signalled them (the simulator's seed), which read back when first
        // found; each resource's own versions are always in order.
        let ours = |e: &str| {
            [
                &problem.resources,
                &lab.resources,
                &visit.resources,
                &last.resources,
            ]
            .iter()
            .any(|rs| rs.iter().any(|r| r.ends_with(&format!("/{e}"))))
        };
        let order: Vec<(String, i64)> = order.into_iter().filter(|(e, _)| ours(e)).collect();
        assert!(
            order.windows(2).all(|w| w[0].1 <= w[1].1),
            "{topic}: not in change order: {order:?}"
        );
        let versions = |id: &str| order.iter().filter(|(e, _)| e == id).count();
        let changed_twice: Vec<&String> = if topic == "Condition" {
            vec![&problem.resources[0], &visit.resources[4]]
        } else {
            vec![&lab.resources[0], &visit.resources[1]]
        };
        for r in changed_twice {
            assert_eq!(
                versions(r.split_once('/').unwrap().1),
                2,
                "{topic}: {r} in {order:?}"
            );
        }
    }

    // An unknown code system passes through as given (a coding without one has none).
    let unknown: ConditionChanged = check(
        &stack,
        &condition_msgs,
        &held(&sim, &unknown_ref),
        "unknown code",
    )
    .await;
    assert_eq!(
        unknown.payload.codes[0].system.as_deref(),
        Some("urn:oid:2.16.840.1.113883.3.564.9999")
    );
    assert_eq!(
        (
            unknown.payload.codes[1].system.as_deref(),
            unknown.payload.codes[1].code.as_str()
        ),
        (None, "X-1")
    );
    // A huge inline attachment: the event lands without `original` (the payload keeps only
    // the attachment's URL and size).
    let docs = read_all(&stack, &documents);
    let id = held_event_id(&sim, &attachment_ref);
    let m = docs
        .iter()
        .find(|m| event_id(m) == id)
        .expect("attachment event");
    let doc: DocumentReferenceChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
    assert!(doc.original.is_none(), "sent without original");
    assert!(m.payload().unwrap().len() < 16_384);

    // Missing `code.coding`: VALUE_CONVERTER; too large even without `original`: the whole
    // event, KAFKA_PRODUCE. Both in the conditions topic's dead-letter topic.
    let dead = read_all(&stack, &format!("{conditions}.dlq"));
    let stage = |needle: &str| {
        let m = dead
            .iter()
            .find(|m| {
                m.payload()
                    .is_some_and(|p| String::from_utf8_lossy(p).contains(needle))
            })
            .unwrap_or_else(|| panic!("{needle} not dead-lettered"));
        let h = m.headers().expect("headers");
        assert_eq!(
            get_str(h, "__connect.errors.topic"),
            Some(conditions.as_str())
        );
        get_str(h, "__connect.errors.stage").map(str::to_owned)
    };
    assert_eq!(
        stage("localproblem-9002").as_deref(),
        Some("VALUE_CONVERTER")
    );
    assert_eq!(stage("localproblem-9003").as_deref(), Some("KAFKA_PRODUCE"));
    assert_eq!(handle.status().state, TaskState::Running);
    stop_connector(&handle, runner).await;
    sim.shutdown().await;
}

//! The chart commands (issue 14) through the real broker and registry against the simulator:
//! every `schemas/examples/` chart example applies as is (so it names ids the simulator seeds)
//! with athena's ids in its result and shows in the patient's FHIR reads; a variant of each that
//! athena (or the FHIR validation) refuses is REJECTED with a PHI-free reason; and two
//! `UpdateAllergies` for one patient lose no allergy. Needs the local stack; fails loudly
//! without.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use athena_client::AthenaClient;
use athena_connect_tests::Stack;
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::{RunningSim, SimConfig};
use common::chart_run::example;
use common::*;

/// The seeded patient the examples name.
const PATIENT: &str = "60178";

async fn results(
    stack: &Stack,
    n: &Names,
    p: &Producer,
    want: usize,
) -> HashMap<String, CommandResult> {
    let msgs = read_until(&stack.kafka(), &n.results, want, Duration::from_secs(90)).await;
    let r = results_by_id(&p.codec, &msgs).await;
    assert_eq!(r.len(), want, "one result per command: {r:#?}");
    r
}

/// Broker, registry, simulator, unique topics and a producer.
async fn setup() -> (Stack, RunningSim, AthenaClient, Names, Producer) {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);
    (stack, sim, athena, n, p)
}

/// (command id, command type, the athena id its result must carry).
type Expect = (String, &'static str, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chart_example_applies_and_a_refused_variant_is_rejected_phi_free() {
    let (stack, sim, athena, n, p) = setup().await;
    let key = format!("195900/{PATIENT}");
    let mut applied: Vec<Expect> = Vec::new();
    let mut rejected: Vec<(String, &'static str)> = Vec::new();

    macro_rules! send_example {
        ($t:ty, $file:literal, $id_key:literal) => {{
            let c: $t = example($file);
            p.send(&n.patients, &key, &c).await;
            applied.push((c.command_id.clone(), stringify!($t), $id_key));
            c
        }};
    }
    macro_rules! send_bad {
        ($c:expr, $why:literal) => {{
            let c = $c;
            p.send(&n.patients, &key, &c).await;
            rejected.push((c.command_id.clone(), $why));
        }};
    }
    let vitals = send_example!(RecordVitals, "RecordVitals.json", "vital_ids");
    send_example!(RecordVitals, "RecordVitals.fhir.json", "vital_ids");
    let problem = send_example!(AddProblem, "AddProblem.json", "problem_id");
    send_example!(AddProblem, "AddProblem.fhir.json", "problem_id");
    let allergies = send_example!(UpdateAllergies, "UpdateAllergies.json", "allergen_ids");
    let vaccine = send_example!(RecordVaccine, "RecordVaccine.json", "vaccine_id");
    let med = send_example!(
        AddHistoricalMedication,
        "AddHistoricalMedication.json",
        "medication_entry_id"
    );
    let surgery = send_example!(
        RecordSurgicalHistory,
        "RecordSurgicalHistory.json",
        "procedure_id"
    );
    let family = send_example!(
        RecordFamilyHistory,
        "RecordFamilyHistory.json",
        "family_history_id"
    );
    let dx = send_example!(
        AddEncounterDiagnosis,
        "AddEncounterDiagnosis.json",
        "diagnosis_id"
    );
    let referral = send_example!(CreateReferralOrder, "CreateReferralOrder.json", "order_id");
    let lab = send_example!(UploadLabResult, "UploadLabResult.json", "lab_result_id");

    // One refused variant of each: athena's validation (or ours for a bad FHIR resource).
    let bad_id = |s: &str| format!("bad-{s}");
    send_bad!(
        RecordVitals {
            command_id: bad_id("vitals"),
            vitals: vec![VitalReading {
                clinical_element_id: "VITALS.NOPE".into(),
                value: "1".into(),
            }],
            ..vitals.clone()
        },
        "Invalid clinicalelementid"
    );
    let mut obs: serde_json::Value = serde_json::from_str(
        &example::<RecordVitals>("RecordVitals.fhir.json")
            .fhir_resource
            .unwrap(),
    )
    .unwrap();
    obs["valueQuantity"]["code"] = "stone".into();
    send_bad!(
        RecordVitals {
            command_id: bad_id("vitals-fhir"),
            vitals: vec![],
            fhir_resource: Some(obs.to_string()),
            ..vitals.clone()
        },
        "unit"
    );
    send_bad!(
        AddProblem {
            command_id: bad_id("problem"),
            status: Some("SOMETIMES".into()),
            note: Some("Sampla note".into()),
            ..problem.clone()
        },
        "Invalid status"
    );
    let mut bad_allergy = allergies.allergies[0].clone();
    bad_allergy.criticality = Some("extreme".into());
    send_bad!(
        UpdateAllergies {
            command_id: bad_id("allergies"),
            allergies: vec![bad_allergy],
            ..allergies.clone()
        },
        "Invalid criticality"
    );
    send_bad!(
        RecordVaccine {
            command_id: bad_id("vaccine"),
            cvx: Some("ABCD".into()),
            ..vaccine.clone()
        },
        "Invalid cvx"
    );
    send_bad!(
        AddHistoricalMedication {
            command_id: bad_id("medication"),
            medication_id: Some("aspirin".into()),
            ..med.clone()
        },
        "Invalid medicationid"
    );
    let next_year = chrono::Utc::now().date_naive() + chrono::Duration::days(400);
    send_bad!(
        RecordSurgicalHistory {
            command_id: bad_id("surgery"),
            procedure_date: Some(next_year.into()),
            ..surgery.clone()
        },
        "cannot be in the future"
    );
    send_bad!(
        RecordFamilyHistory {
            command_id: bad_id("family"),
            relation: "NEIGHBOR".into(),
            ..family.clone()
        },
        "Invalid relation"
    );
    send_bad!(
        AddEncounterDiagnosis {
            command_id: bad_id("diagnosis"),
            encounter_id: "999".into(),
            ..dx.clone()
        },
        "encounter does not exist"
    );
    send_bad!(
        CreateReferralOrder {
            command_id: bad_id("referral"),
            order_type_id: "x".into(),
            ..referral.clone()
        },
        "Invalid ordertypeid"
    );
    let mut bad_analyte = lab.analytes[0].clone();
    bad_analyte.loinc = "glucose".into();
    send_bad!(
        UploadLabResult {
            command_id: bad_id("lab"),
            analytes: vec![bad_analyte],
            ..lab.clone()
        },
        "LOINC"
    );

    let sink = start_sink(&stack, sink_config(&n), athena);
    let results = results(&stack, &n, &p, applied.len() + rejected.len()).await;
    sink.stop().await;

    for (id, ty, id_key) in &applied {
        let r = &results[id];
        assert_eq!(r.status, CommandStatus::Applied, "{ty}: {r:?}");
        assert_eq!(r.command_type, *ty);
        let athena_id = r.athena_ids.get(*id_key).map(String::as_str).unwrap_or("");
        assert!(!athena_id.is_empty(), "{ty}: no {id_key} in {r:?}");
        assert_eq!(
            r.athena_ids.get("patient_id").map(String::as_str),
            Some(PATIENT)
        );
    }
    for (id, why) in &rejected {
        let r = &results[id];
        assert_eq!(r.status, CommandStatus::Rejected, "{id}: {r:?}");
        let e = r.error.as_ref().expect("a rejected result says why");
        assert!(e.message.contains(why), "{id}: {e:?}");
        // PHI-free: none of the command's clinical text or the patient's name is echoed.
        for phi in [
            "Sampla",
            "Sandboxtest",
            "hives",
            "shellfish",
            "Cardiology consult",
        ] {
            assert!(!e.message.contains(phi), "{id}: {e:?}");
        }
    }

    // athena's side: each applied write exactly once in the ledger, none of the refused ones.
    let ledger = sim.state.ledger();
    let ops = |op: &str| ledger.iter().filter(|e| e.operation == op).count();
    for op in chart_run::ONCE {
        let sent = applied.iter().filter(|(_, ty, _)| ty == op).count();
        assert_eq!(ops(op), sent, "{op}");
    }
    assert_eq!(ops("UpdateAllergies"), 1);
    // The FHIR vital was converted: 155 lb is 70307 g on the encounter.
    let fhir_vitals = &results["7d0c1f3a-1b59-4c1e-8a51-2f0d6c9a1e02"];
    assert_eq!(
        fhir_vitals
            .athena_ids
            .get("encounter_id")
            .map(String::as_str),
        Some("7000001")
    );
    let weight = ledger.iter().find(|e| {
        e.operation == "RecordVitals" && e.params.get("vitals").is_some_and(|v| v.contains("70307"))
    });
    assert!(weight.is_some(), "the pound weight was sent in grams");

    // The writes show in the patient's FHIR reads.
    let pat: u64 = PATIENT.parse().unwrap();
    let fhir = |ty: &str| {
        sim.state
            .with_practice(PRACTICE, |p| {
                athena_sim::api::fhir::resources(p, ty, Some(pat))
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    let has = |ty: &str, needle: &str| fhir(ty).iter().any(|v| v.to_string().contains(needle));
    assert!(has("Observation", "70307"), "vital weight");
    assert!(has("Condition", "38341003"), "problem");
    assert!(has("AllergyIntolerance", "shellfish"), "allergy");
    assert!(has("Immunization", "a-195900.vaccine-"), "vaccine");
    assert!(has("MedicationRequest", "243917"), "historical medication");
    assert!(has("Procedure", "80146002"), "surgical history");
    assert!(
        has("Condition", "a-195900.diagnosis-"),
        "encounter diagnosis"
    );
    assert!(has("ServiceRequest", "a-195900.referral-"), "referral");
    assert!(has("Observation", "a-195900.lab-"), "lab result");
    sim.shutdown().await;
}

fn allergy(command_id: &str, id: &str, name: &str) -> UpdateAllergies {
    UpdateAllergies {
        command_id: command_id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        patient_id: PATIENT.into(),
        department_id: "1".into(),
        allergies: vec![AllergyEntry {
            allergen_id: id.into(),
            allergen_name: name.into(),
            reactions: vec![],
            severity: None,
            criticality: None,
            onset_date: None,
            note: None,
        }],
        fhir_resource: None,
    }
}

/// athena replaces the allergy list on every write: commands for one patient racing through
/// the sink (same key, produced back to back, one of them a FHIR AllergyIntolerance) and an
/// allergy already on the chart all survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_allergy_updates_lose_no_allergy() {
    let (stack, sim, athena, n, p) = setup().await;
    let key = format!("195900/{PATIENT}");
    p.send(&n.patients, &key, &allergy("a-0", "100", "latex"))
        .await;
    let sink = start_sink(&stack, sink_config(&n), athena);
    results(&stack, &n, &p, 1).await;
    p.send(&n.patients, &key, &allergy("a-1", "200", "penicillin"))
        .await;
    let fhir = serde_json::json!({
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": format!("Patient/a-195900.E-{PATIENT}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "300", "display": "peanut"}]},
        "criticality": "high",
    });
    let mut by_fhir = allergy("a-2", "", "");
    by_fhir.allergies.clear();
    by_fhir.fhir_resource = Some(fhir.to_string());
    p.send(&n.patients, &key, &by_fhir).await;
    p.send(&n.patients, &key, &allergy("a-3", "400", "sulfa"))
        .await;
    let r = results(&stack, &n, &p, 4).await;
    sink.stop().await;
    assert!(
        r.values().all(|r| r.status == CommandStatus::Applied),
        "{r:#?}"
    );
    let list: Vec<String> = sim
        .state
        .with_practice(PRACTICE, |p| {
            p.chart
                .iter()
                .filter(|c| c.kind == athena_sim::model::ChartKind::Allergy)
                .filter(|c| c.patient_id == PATIENT.parse::<u64>().unwrap())
                .filter_map(|c| c.json["allergenid"].as_str().map(String::from))
                .collect()
        })
        .unwrap();
    let mut list = list;
    list.sort();
    assert_eq!(list, vec!["100", "200", "300", "400"]);
    sim.shutdown().await;
}

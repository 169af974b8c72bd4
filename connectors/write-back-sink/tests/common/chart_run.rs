//! The chart commands' part (issue 14) of the fault run (`faults.rs`) and the SIGKILL run
//! (`kill.rs`), kept apart from the other workloads so each command family adds its own file:
//! every chart command type for a few seeded patients (their seeded encounters for the
//! encounter-level writes), faults on the chart calls, and the check that athena (the
//! simulator's ledger) holds each chart write exactly once, exactly when APPLIED, and that no
//! allergy was lost.

use std::collections::HashMap;

use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::model::ChartKind;
use athena_sim::{Fault, FaultRule, RunningSim};

use super::{Names, PRACTICE, Producer};

/// Chart writes (the simulator's ledger operation names) that must be in the ledger exactly
/// once per APPLIED command. `UpdateAllergies` is naturally idempotent (a repeated PUT writes
/// the same merged list) and is checked by its outcome instead: every allergy on the chart.
const ONCE: &[&str] = &[
    "RecordVitals",
    "AddProblem",
    "RecordVaccine",
    "AddHistoricalMedication",
    "RecordSurgicalHistory",
    "RecordFamilyHistory",
    "AddEncounterDiagnosis",
    "CreateReferralOrder",
    "UploadLabResult",
];

/// A chart workload: `patients` seeded patients, every chart command type for each.
pub struct ChartWorkload {
    /// Command id prefix (`<prefix>-chart-<patient>-<n>`).
    pub prefix: &'static str,
    /// Seeded patients written to (one Kafka key each).
    pub patients: usize,
}

/// What a chart workload produced.
pub struct ChartProduced {
    /// Every command id.
    pub ids: Vec<String>,
    /// Allergen ids sent, by patient.
    pub allergies: HashMap<u64, Vec<String>>,
}

fn env(command_id: String) -> (String, String) {
    (command_id, PRACTICE.to_string())
}

impl ChartWorkload {
    /// Faults on the chart calls: answers lost after the write was applied, and 503s before.
    pub fn inject_faults(&self, sim: &RunningSim) {
        for (f, times, method, path) in Self::faults() {
            sim.state
                .inject(FaultRule::new(f, times).method(method).path(path));
        }
    }

    fn faults() -> [(Fault, u32, &'static str, &'static str); 4] {
        [
            (Fault::ApplyThenDrop, 6, "POST", "/chart/"),
            (
                Fault::Status {
                    code: 503,
                    retry_after: None,
                    body: None,
                },
                3,
                "POST",
                "/chart/",
            ),
            (Fault::ApplyThenDrop, 2, "PUT", "/allergies"),
            (Fault::ApplyThenDrop, 2, "POST", "/documents/labresult"),
        ]
    }

    /// Produces every chart command type for each patient (key `practice/patient`, so one
    /// patient's chart writes run in order).
    pub async fn produce(&self, sim: &RunningSim, n: &Names, p: &Producer) -> ChartProduced {
        let patients: Vec<(u64, u64)> = sim
            .state
            .with_practice(PRACTICE, |pr| {
                pr.clinical
                    .values()
                    .filter(|c| c.resource_type() == "Encounter")
                    .filter_map(|c| {
                        let n = c.json["id"].as_str()?.rsplit('-').next()?.parse().ok()?;
                        Some((c.patient_id, n))
                    })
                    .collect::<std::collections::BTreeMap<u64, u64>>()
                    .into_iter()
                    .take(self.patients)
                    .collect()
            })
            .expect("practice");
        assert_eq!(
            patients.len(),
            self.patients,
            "seeded patients with encounters"
        );
        let mut out = ChartProduced {
            ids: Vec::new(),
            allergies: HashMap::new(),
        };
        let today = chrono::Utc::now().date_naive();
        for (i, (patient, encounter)) in patients.iter().enumerate() {
            let key = format!("{PRACTICE}/{patient}");
            let pat = patient.to_string();
            let enc = encounter.to_string();
            let id = |k: &str| format!("{}-chart-{i}-{k}", self.prefix);
            let mut send = Vec::new();
            macro_rules! push {
                ($c:expr) => {{
                    let c = $c;
                    out.ids.push(c.command_id.clone());
                    send.push(p.encode(&n.patients, &c).await);
                }};
            }
            let (cid, practice_id) = env(id("vitals"));
            push!(RecordVitals {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                encounter_id: None,
                source: None,
                reading_taken: Some(today.into()),
                vitals: vec![VitalReading {
                    clinical_element_id: "VITALS.HEARTRATE".into(),
                    value: (60 + i).to_string(),
                }],
                fhir_resource: None,
            });
            let (cid, practice_id) = env(id("vitals-fhir"));
            let obs = serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                "effectiveDateTime": today.to_string(),
                "valueQuantity": {"value": 60 + i, "code": "[in_i]"}});
            push!(RecordVitals {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                encounter_id: Some(enc.clone()),
                source: None,
                reading_taken: None,
                vitals: vec![],
                fhir_resource: Some(obs.to_string()),
            });
            let (cid, practice_id) = env(id("problem"));
            push!(AddProblem {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                snomed_code: Some(format!("3834100{i}")),
                start_date: None,
                status: Some("CHRONIC".into()),
                laterality: None,
                note: None,
                fhir_resource: None,
            });
            for a in 0..2 {
                let (cid, practice_id) = env(id(&format!("allergy-{a}")));
                let allergen = format!("{}{a}", 500 + i);
                out.allergies
                    .entry(*patient)
                    .or_default()
                    .push(allergen.clone());
                push!(UpdateAllergies {
                    command_id: cid,
                    practice_id,
                    correlation_id: None,
                    issued_at: None,
                    patient_id: pat.clone(),
                    department_id: "1".into(),
                    allergies: vec![AllergyEntry {
                        allergen_id: allergen,
                        allergen_name: format!("allergen {a}"),
                        reactions: vec![],
                        severity: None,
                        criticality: None,
                        onset_date: None,
                        note: None,
                    }],
                    fhir_resource: None,
                });
            }
            let (cid, practice_id) = env(id("vaccine"));
            push!(RecordVaccine {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                cvx: Some("140".into()),
                administer_date: Some((today - chrono::Duration::days(i as i64)).into()),
                lot_number: None,
                dose_amount: None,
                dose_units: None,
                note: None,
                fhir_resource: None,
            });
            let (cid, practice_id) = env(id("medication"));
            push!(AddHistoricalMedication {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                medication_id: Some(format!("24391{i}")),
                start_date: None,
                stop_date: None,
                unstructured_sig: None,
                note: None,
                fhir_resource: None,
            });
            let (cid, practice_id) = env(id("surgery"));
            push!(RecordSurgicalHistory {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                procedure_code: Some("80146002".into()),
                procedure_date: None,
                note: None,
                fhir_resource: None,
            });
            let (cid, practice_id) = env(id("family"));
            push!(RecordFamilyHistory {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                relation: "FATHER".into(),
                snomed_code: "22298006".into(),
                onset_age: None,
                note: None,
            });
            let (cid, practice_id) = env(id("diagnosis"));
            push!(AddEncounterDiagnosis {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                encounter_id: enc.clone(),
                snomed_code: Some("38341003".into()),
                icd10_codes: vec!["I10".into()],
                laterality: None,
                note: None,
                fhir_resource: None,
            });
            let (cid, practice_id) = env(id("referral"));
            push!(CreateReferralOrder {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                encounter_id: enc.clone(),
                order_type_id: "257362".into(),
                diagnosis_snomed_code: "38341003".into(),
                reason_for_referral: None,
                provider_note: None,
                facility_id: None,
            });
            let (cid, practice_id) = env(id("lab"));
            push!(UploadLabResult {
                command_id: cid,
                practice_id,
                correlation_id: None,
                issued_at: None,
                patient_id: pat.clone(),
                department_id: "1".into(),
                observation_date: Some(today.into()),
                document_type_id: None,
                autoclose: true,
                analytes: vec![LabAnalyte {
                    loinc: "2345-7".into(),
                    analyte_name: "Glucose".into(),
                    value: (90 + i).to_string(),
                    units: Some("mg/dL".into()),
                    reference_range: None,
                    abnormal_flag: None,
                    result_status: None,
                    note: None,
                }],
            });
            for bytes in send {
                p.send_raw(&n.patients, &key, &bytes).await;
            }
        }
        out
    }

    /// Every chart command APPLIED; athena holds each chart write exactly once (allergy list
    /// writes: every allergy sent is on the chart).
    pub fn assert_written_once(
        &self,
        sim: &RunningSim,
        produced: &ChartProduced,
        results: &HashMap<String, CommandResult>,
    ) {
        let mine: Vec<&CommandResult> = produced.ids.iter().map(|id| &results[id]).collect();
        let not_applied: Vec<&&CommandResult> = mine
            .iter()
            .filter(|r| r.status != CommandStatus::Applied)
            .collect();
        assert!(not_applied.is_empty(), "chart commands: {not_applied:#?}");
        let ledger = sim.state.ledger();
        for op in ONCE {
            let written = ledger.iter().filter(|e| e.operation == *op).count();
            let applied = mine.iter().filter(|r| r.command_type == *op).count();
            assert_eq!(
                written, applied,
                "{op}: written {written} times for {applied} commands"
            );
        }
        // The chart faults fired (all of them: the workload makes more chart calls than rules).
        let left: Vec<FaultRule> = sim
            .state
            .faults()
            .into_iter()
            .filter(|r| {
                Self::faults()
                    .iter()
                    .any(|(_, _, _, path)| r.path_contains.as_deref() == Some(*path))
            })
            .collect();
        assert!(left.is_empty(), "chart faults not used up: {left:?}");
        for (patient, sent) in &produced.allergies {
            let on_chart: Vec<String> = sim
                .state
                .with_practice(PRACTICE, |p| {
                    p.chart
                        .iter()
                        .filter(|c| c.kind == ChartKind::Allergy && c.patient_id == *patient)
                        .filter_map(|c| c.json["allergenid"].as_str().map(String::from))
                        .collect()
                })
                .expect("practice");
            for a in sent {
                assert!(
                    on_chart.contains(a),
                    "patient {patient}: allergy {a} lost: {on_chart:?}"
                );
            }
        }
    }
}

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
pub const ONCE: &[&str] = &[
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

/// The command of `schemas/examples/<file>` (the tests start from the examples, so these stay
/// true too).
pub fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!(
        "{}/../../schemas/examples/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
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
            push!(RecordVitals {
                command_id: id("vitals"),
                patient_id: pat.clone(),
                reading_taken: Some(today.into()),
                vitals: vec![VitalReading {
                    clinical_element_id: "VITALS.HEARTRATE".into(),
                    value: (60 + i).to_string(),
                }],
                ..example("RecordVitals.json")
            });
            let obs = serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                "effectiveDateTime": today.to_string(),
                "valueQuantity": {"value": 60 + i, "code": "[in_i]"}});
            push!(RecordVitals {
                command_id: id("vitals-fhir"),
                patient_id: pat.clone(),
                encounter_id: Some(enc.clone()),
                fhir_resource: Some(obs.to_string()),
                ..example("RecordVitals.fhir.json")
            });
            push!(AddProblem {
                command_id: id("problem"),
                patient_id: pat.clone(),
                snomed_code: Some(format!("3834100{i}")),
                ..example("AddProblem.json")
            });
            for a in 0..2 {
                let allergen = format!("{}{a}", 500 + i);
                out.allergies
                    .entry(*patient)
                    .or_default()
                    .push(allergen.clone());
                let base: UpdateAllergies = example("UpdateAllergies.json");
                push!(UpdateAllergies {
                    command_id: id(&format!("allergy-{a}")),
                    patient_id: pat.clone(),
                    allergies: vec![AllergyEntry {
                        allergen_id: allergen,
                        ..base.allergies[0].clone()
                    }],
                    ..base
                });
            }
            push!(RecordVaccine {
                command_id: id("vaccine"),
                patient_id: pat.clone(),
                administer_date: Some((today - chrono::Duration::days(i as i64)).into()),
                ..example("RecordVaccine.json")
            });
            push!(AddHistoricalMedication {
                command_id: id("medication"),
                patient_id: pat.clone(),
                medication_id: Some(format!("24391{i}")),
                ..example("AddHistoricalMedication.json")
            });
            push!(RecordSurgicalHistory {
                command_id: id("surgery"),
                patient_id: pat.clone(),
                ..example("RecordSurgicalHistory.json")
            });
            push!(RecordFamilyHistory {
                command_id: id("family"),
                patient_id: pat.clone(),
                ..example("RecordFamilyHistory.json")
            });
            push!(AddEncounterDiagnosis {
                command_id: id("diagnosis"),
                patient_id: pat.clone(),
                encounter_id: enc.clone(),
                ..example("AddEncounterDiagnosis.json")
            });
            push!(CreateReferralOrder {
                command_id: id("referral"),
                patient_id: pat.clone(),
                encounter_id: enc.clone(),
                ..example("CreateReferralOrder.json")
            });
            let base: UploadLabResult = example("UploadLabResult.json");
            push!(UploadLabResult {
                command_id: id("lab"),
                patient_id: pat.clone(),
                observation_date: Some(today.into()),
                analytes: vec![LabAnalyte {
                    value: (90 + i).to_string(),
                    ..base.analytes[0].clone()
                }],
                ..base
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

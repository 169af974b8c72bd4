//! `AddEncounterDiagnosis`: what the sink does with it (its envelope and its [`ChartAdd`]
//! behaviour, which makes its `WriteBack`). Its Avro mirror is
//! `athena_contracts::commands::AddEncounterDiagnosis` (data only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddEncounterDiagnosis;

use super::chart::{Resolved, ChartAdd, ICD10, SNOMED, bad, chart_add, codings, one_source, parse, put_opt};
use super::{Invalid, envelope};

envelope!(AddEncounterDiagnosis);
chart_add!(AddEncounterDiagnosis);

impl ChartAdd for AddEncounterDiagnosis {
    const ANSWER_KEY: &'static str = "diagnosisid";
    const LIST_ID_KEY: &'static str = "diagnosisid";
    const RESULT_ID: &'static str = "diagnosis_id";

    /// From the typed fields or the Condition (SNOMED CT and ICD-10-CM codings); read back by
    /// SNOMED code.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let typed = self.snomed_code.is_some() || !self.icd10_codes.is_empty();
        one_source(typed, &self.fhir_resource)?;
        let (snomed, icd10) = match &self.fhir_resource {
            Some(text) => {
                let all = codings(&parse(text, "Condition", &self.patient_id)?, "/code");
                let of = |system: &str| -> Vec<String> {
                    all.iter()
                        .filter(|(s, _, _)| s == system)
                        .map(|(_, c, _)| c.clone())
                        .collect()
                };
                let snomed = of(SNOMED)
                    .into_iter()
                    .next()
                    .ok_or(bad("Condition has no SNOMED CT coding"))?;
                (snomed, of(ICD10))
            }
            None => (
                self.snomed_code
                    .clone()
                    .ok_or(Invalid::command("snomed_code is required"))?,
                self.icd10_codes.clone(),
            ),
        };
        let mut form = vec![("snomedcode".to_string(), snomed.clone())];
        put_opt(
            &mut form,
            vec![
                ("icd10codes", Some(icd10.join(",")).filter(|s| !s.is_empty())),
                ("laterality", self.laterality.clone()),
                ("note", self.note.clone()),
            ],
        );
        Ok((form, vec![("/snomedcode", snomed)]))
    }

    fn path(&self) -> ChartPath {
        ChartPath::encounter_diagnoses(&self.encounter_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![
            ("encounter_id", self.encounter_id.clone()),
            ("patient_id", self.patient_id.clone()),
        ]
    }
}

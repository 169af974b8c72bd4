//! `AddProblem`: what the sink does with it (its envelope and its [`ChartAdd`] behaviour, which
//! makes its `WriteBack`). Its Avro mirror is `athena_contracts::commands::AddProblem` (data
//! only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddProblem;

use super::chart::{Resolved, 
    ChartAdd, SNOMED, bad, chart_add, code, date as fhir_date, one_source, parse, put_opt, us,
};
use super::{Invalid, date, envelope};

envelope!(AddProblem);
chart_add!(AddProblem);

impl ChartAdd for AddProblem {
    const ANSWER_KEY: &'static str = "problemid";
    const LIST_ID_KEY: &'static str = "problemid";
    const RESULT_ID: &'static str = "problem_id";

    /// From the typed fields or an active Condition; read back by SNOMED code.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let typed = self.snomed_code.is_some() || self.start_date.is_some() || self.status.is_some();
        one_source(typed, &self.fhir_resource)?;
        let (snomed, start, status) = match &self.fhir_resource {
            Some(text) => {
                let v = parse(text, "Condition", &self.patient_id)?;
                let snomed =
                    code(&v, "/code", &[SNOMED]).ok_or(bad("Condition has no SNOMED CT coding"))?;
                let start =
                    fhir_date(&v, &["/onsetDateTime", "/onsetPeriod/start", "/recordedDate"])?;
                let clinical = code(
                    &v,
                    "/clinicalStatus",
                    &["http://terminology.hl7.org/CodeSystem/condition-clinical"],
                );
                if matches!(clinical.as_deref(), Some("inactive" | "resolved" | "remission")) {
                    return Err(bad(
                        "Condition is not active; athena's problem list takes active problems",
                    ));
                }
                (snomed, start, None)
            }
            None => (
                self.snomed_code
                    .clone()
                    .ok_or(Invalid::command("snomed_code is required"))?,
                date(self.start_date),
                self.status.clone(),
            ),
        };
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("snomedcode".to_string(), snomed.clone()),
        ];
        put_opt(
            &mut form,
            vec![
                ("startdate", start.map(us)),
                ("status", status),
                ("laterality", self.laterality.clone()),
                ("note", self.note.clone()),
            ],
        );
        Ok((form, vec![("/code", snomed)]))
    }

    fn path(&self) -> ChartPath {
        ChartPath::problems(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

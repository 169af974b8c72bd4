//! `RecordSurgicalHistory`: what the sink does with it (its envelope and its [`ChartAdd`]
//! behaviour, which makes its `WriteBack`). Its Avro mirror is
//! `athena_contracts::commands::RecordSurgicalHistory` (data only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordSurgicalHistory;

use super::chart::{Resolved, 
    CPT, ChartAdd, SNOMED, bad, chart_add, code, date as fhir_date, one_source, parse,
    put_opt, us,
};
use super::{Invalid, date, envelope};

envelope!(RecordSurgicalHistory);
chart_add!(RecordSurgicalHistory);

impl ChartAdd for RecordSurgicalHistory {
    const ANSWER_KEY: &'static str = "procedureid";
    const LIST_ID_KEY: &'static str = "procedureid";
    const RESULT_ID: &'static str = "procedure_id";

    /// From the typed fields or the Procedure; read back by procedure code and date.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let typed = self.procedure_code.is_some() || self.procedure_date.is_some();
        one_source(typed, &self.fhir_resource)?;
        let (proc_code, when) = match &self.fhir_resource {
            Some(text) => {
                let v = parse(text, "Procedure", &self.patient_id)?;
                let pc = code(&v, "/code", &[SNOMED, CPT])
                    .ok_or(bad("Procedure has no SNOMED CT or CPT coding"))?;
                (pc, fhir_date(&v, &["/performedDateTime", "/performedPeriod/start"])?)
            }
            None => (
                self.procedure_code
                    .clone()
                    .ok_or(Invalid::command("procedure_code is required"))?,
                date(self.procedure_date),
            ),
        };
        let when = when.map(us);
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("procedurecode".to_string(), proc_code.clone()),
        ];
        put_opt(
            &mut form,
            vec![("proceduredate", when.clone()), ("note", self.note.clone())],
        );
        Ok((
            form,
            vec![
                ("/procedurecode", proc_code),
                ("/proceduredate", when.unwrap_or_default()),
            ],
        ))
    }

    fn path(&self) -> ChartPath {
        ChartPath::surgical_history(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

//! `UploadLabResult`: what the sink does with it (its envelope and its [`ChartAdd`] behaviour,
//! which makes its `WriteBack`). Its Avro mirror is `athena_contracts::commands::UploadLabResult`
//! (data only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::UploadLabResult;
use serde_json::json;

use super::chart::{Resolved, ChartAdd, chart_add, put_opt, us};
use super::{Invalid, date, envelope};

envelope!(UploadLabResult);
chart_add!(UploadLabResult);

impl ChartAdd for UploadLabResult {
    const ANSWER_KEY: &'static str = "labresultid";
    const LIST_ID_KEY: &'static str = "labresultid";
    const RESULT_ID: &'static str = "lab_result_id";

    /// Read back by observation date and first LOINC code.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let Some(first) = self.analytes.first() else {
            return Err(Invalid::command("at least one analyte is required"));
        };
        let analytes: Vec<_> = self
            .analytes
            .iter()
            .map(|a| {
                json!({
                    "loinc": a.loinc, "analytename": a.analyte_name, "value": a.value,
                    "units": a.units, "referencerange": a.reference_range,
                    "abnormalflag": a.abnormal_flag, "resultstatus": a.result_status,
                    "note": a.note,
                })
            })
            .collect();
        let observed = date(self.observation_date).map(us);
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("analytes".to_string(), json!(analytes).to_string()),
        ];
        put_opt(
            &mut form,
            vec![
                ("observationdate", observed.clone()),
                ("documenttypeid", self.document_type_id.clone()),
                ("autoclose", self.autoclose.then(|| "true".to_string())),
            ],
        );
        Ok((
            form,
            vec![
                ("/observationdate", observed.unwrap_or_default()),
                ("/analytes/0/loinc", first.loinc.clone()),
            ],
        ))
    }

    fn path(&self) -> ChartPath {
        ChartPath::lab_results(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

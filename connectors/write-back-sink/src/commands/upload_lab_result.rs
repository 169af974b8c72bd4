//! `UploadLabResult`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::UploadLabResult` (data only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::UploadLabResult;
use serde_json::json;

use super::chart::{answer_id, count, us};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(UploadLabResult);

fn observed(c: &UploadLabResult) -> String {
    date(c.observation_date).map(us).unwrap_or_default()
}

impl WriteBack for UploadLabResult {
    /// Read back: the patient's lab results with this observation date and first LOINC code,
    /// counted against a baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        if self.analytes.is_empty() {
            return Err(Invalid::command("at least one analyte is required"));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
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
            let mut form = vec![
                ("departmentid".to_string(), self.department_id.clone()),
                ("analytes".to_string(), json!(analytes).to_string()),
            ];
            let obs = observed(self);
            if !obs.is_empty() {
                form.push(("observationdate".into(), obs));
            }
            if let Some(t) = &self.document_type_id {
                form.push(("documenttypeid".into(), t.clone()));
            }
            if self.autoclose {
                form.push(("autoclose".into(), "true".into()));
            }
            let v = cx
                .practice
                .chart_post(&ChartPath::lab_results(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("lab_result_id", &answer_id(&v, "labresultid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "lab_result_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let obs = observed(self);
            let loinc = self.analytes.first().map(|a| a.loinc.clone());
            count(p, &ChartPath::lab_results(&self.patient_id), "labresultid", |v| {
                json_str(v, "observationdate").unwrap_or_default() == obs
                    && v.pointer("/analytes/0/loinc").and_then(|x| x.as_str()) == loinc.as_deref()
            })
            .await
        })
    }
}

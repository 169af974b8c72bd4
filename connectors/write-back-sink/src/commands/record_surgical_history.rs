//! `RecordSurgicalHistory`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::RecordSurgicalHistory` (data
//! only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordSurgicalHistory;

use super::chart::{
    Form,
    CPT, SNOMED, answer_id, bad, code, count, date as fhir_date, invalid_error as invalid,
    one_source, parse, us,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(RecordSurgicalHistory);

/// athena's form, from the typed fields or the Procedure; and (code, date or "").
fn resolve(c: &RecordSurgicalHistory) -> Result<(Form, (String, String)), Invalid> {
    let typed = c.procedure_code.is_some() || c.procedure_date.is_some();
    one_source(typed, &c.fhir_resource)?;
    let (proc_code, when) = match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "Procedure", &c.patient_id)?;
            let pc = code(&v, "/code", &[SNOMED, CPT])
                .ok_or(bad("Procedure has no SNOMED CT or CPT coding"))?;
            (pc, fhir_date(&v, &["/performedDateTime", "/performedPeriod/start"])?)
        }
        None => (
            c.procedure_code
                .clone()
                .ok_or(Invalid::command("procedure_code is required"))?,
            date(c.procedure_date),
        ),
    };
    let when = when.map(us).unwrap_or_default();
    let mut form = vec![
        ("departmentid".to_string(), c.department_id.clone()),
        ("procedurecode".to_string(), proc_code.clone()),
    ];
    if !when.is_empty() {
        form.push(("proceduredate".into(), when.clone()));
    }
    if let Some(n) = &c.note {
        form.push(("note".into(), n.clone()));
    }
    Ok((form, (proc_code, when)))
}

impl WriteBack for RecordSurgicalHistory {
    /// Read back: the patient's surgical history entries with this code and date, counted
    /// against a baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        resolve(self).map(|_| ())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let (form, _) = resolve(self).map_err(invalid)?;
            let v = cx
                .practice
                .chart_post(&ChartPath::surgical_history(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("procedure_id", &answer_id(&v, "procedureid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "procedure_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (_, (pc, when)) = resolve(self).map_err(invalid)?;
            count(
                p,
                &ChartPath::surgical_history(&self.patient_id),
                "procedureid",
                |v| {
                    json_str(v, "procedurecode").as_deref() == Some(pc.as_str())
                        && json_str(v, "proceduredate").unwrap_or_default() == when
                },
            )
            .await
        })
    }
}

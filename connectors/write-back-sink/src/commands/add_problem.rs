//! `AddProblem`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its
//! Avro mirror is `athena_contracts::commands::AddProblem` (data only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddProblem;

use super::chart::{
    Form,
    SNOMED, answer_id, bad, code, count, date as fhir_date, invalid_error as invalid, one_source,
    parse, us,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(AddProblem);

/// athena's form for this problem, from the typed fields or the Condition; and its SNOMED code.
fn resolve(c: &AddProblem) -> Result<(Form, String), Invalid> {
    let typed = c.snomed_code.is_some() || c.start_date.is_some() || c.status.is_some();
    one_source(typed, &c.fhir_resource)?;
    let (snomed, start, status) = match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "Condition", &c.patient_id)?;
            let snomed =
                code(&v, "/code", &[SNOMED]).ok_or(bad("Condition has no SNOMED CT coding"))?;
            let start = fhir_date(&v, &["/onsetDateTime", "/onsetPeriod/start", "/recordedDate"])?;
            let clinical = code(
                &v,
                "/clinicalStatus",
                &["http://terminology.hl7.org/CodeSystem/condition-clinical"],
            );
            if matches!(clinical.as_deref(), Some("inactive" | "resolved" | "remission")) {
                return Err(bad("Condition is not active; athena's problem list takes active problems"));
            }
            (snomed, start, None)
        }
        None => (
            c.snomed_code
                .clone()
                .ok_or(Invalid::command("snomed_code is required"))?,
            date(c.start_date),
            c.status.clone(),
        ),
    };
    let mut form = vec![
        ("departmentid".to_string(), c.department_id.clone()),
        ("snomedcode".to_string(), snomed.clone()),
    ];
    for (k, v) in [
        ("startdate", start.map(us)),
        ("status", status),
        ("laterality", c.laterality.clone()),
        ("note", c.note.clone()),
    ] {
        if let Some(v) = v {
            form.push((k.into(), v));
        }
    }
    Ok((form, snomed))
}

impl WriteBack for AddProblem {
    /// Read back: the patient's problems with this SNOMED code, counted against a baseline.
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
                .chart_post(&ChartPath::problems(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("problem_id", &answer_id(&v, "problemid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "problem_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (_, snomed) = resolve(self).map_err(invalid)?;
            count(p, &ChartPath::problems(&self.patient_id), "problemid", |v| {
                json_str(v, "code").as_deref() == Some(snomed.as_str())
            })
            .await
        })
    }
}

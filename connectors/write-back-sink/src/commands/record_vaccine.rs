//! `RecordVaccine`: what the sink does with it (its envelope and its [`WriteBack`] behaviour).
//! Its Avro mirror is `athena_contracts::commands::RecordVaccine` (data only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordVaccine;

use super::chart::{
    Form,
    CVX, answer_id, bad, code, count, date as fhir_date, invalid_error as invalid, one_source,
    parse, us,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(RecordVaccine);

/// athena's form, from the typed fields or the Immunization; and (cvx, administer date).
fn resolve(c: &RecordVaccine) -> Result<(Form, (String, String)), Invalid> {
    let typed = c.cvx.is_some() || c.administer_date.is_some() || c.lot_number.is_some();
    one_source(typed, &c.fhir_resource)?;
    let (cvx, given, lot, amount, units) = match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "Immunization", &c.patient_id)?;
            let cvx = code(&v, "/vaccineCode", &[CVX]).ok_or(bad("Immunization has no CVX code"))?;
            let given = fhir_date(&v, &["/occurrenceDateTime"])?
                .ok_or(bad("Immunization has no occurrenceDateTime"))?;
            let s = |p: &str| v.pointer(p).and_then(serde_json::Value::as_str).map(String::from);
            let amount = v
                .pointer("/doseQuantity/value")
                .and_then(serde_json::Value::as_f64);
            let units = s("/doseQuantity/unit").or_else(|| s("/doseQuantity/code"));
            (cvx, given, s("/lotNumber"), amount, units)
        }
        None => (
            c.cvx.clone().ok_or(Invalid::command("cvx is required"))?,
            date(c.administer_date).ok_or(Invalid::command("administer_date is required"))?,
            c.lot_number.clone(),
            c.dose_amount,
            c.dose_units.clone(),
        ),
    };
    let given = us(given);
    let mut form = vec![
        ("departmentid".to_string(), c.department_id.clone()),
        ("cvx".to_string(), cvx.clone()),
        ("administerdate".to_string(), given.clone()),
    ];
    for (k, v) in [
        ("lotnumber", lot),
        ("amount", amount.map(|a| a.to_string())),
        ("units", units),
        ("note", c.note.clone()),
    ] {
        if let Some(v) = v {
            form.push((k.into(), v));
        }
    }
    Ok((form, (cvx, given)))
}

impl WriteBack for RecordVaccine {
    /// Read back: the patient's vaccines with this CVX code and date, counted against a
    /// baseline.
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
                .chart_post(&ChartPath::vaccines(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("vaccine_id", &answer_id(&v, "vaccineid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "vaccine_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (_, (cvx, given)) = resolve(self).map_err(invalid)?;
            count(p, &ChartPath::vaccines(&self.patient_id), "vaccineid", |v| {
                json_str(v, "cvx").as_deref() == Some(cvx.as_str())
                    && json_str(v, "administerdate").as_deref() == Some(given.as_str())
            })
            .await
        })
    }
}

//! `AddHistoricalMedication`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::AddHistoricalMedication` (data
//! only). athena documents the call as open only to certain partner types: its refusal is a
//! permanent business error, so the command is REJECTED with athena's reason.

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddHistoricalMedication;

use super::chart::{
    Form,
    AH_MEDICATION, answer_id, bad, code, count, date as fhir_date, invalid_error as invalid,
    one_source, parse, us,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(AddHistoricalMedication);

/// athena's form, from the typed fields or the MedicationStatement; and the medication id.
fn resolve(c: &AddHistoricalMedication) -> Result<(Form, String), Invalid> {
    let typed = c.medication_id.is_some() || c.start_date.is_some() || c.stop_date.is_some();
    one_source(typed, &c.fhir_resource)?;
    let (med, start, stop, sig) = match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "MedicationStatement", &c.patient_id)?;
            let med = code(&v, "/medicationCodeableConcept", &[AH_MEDICATION]).ok_or(bad(
                "MedicationStatement has no athena medication id coding (RxNorm alone is not looked up)",
            ))?;
            let start = fhir_date(&v, &["/effectivePeriod/start", "/effectiveDateTime"])?;
            let stop = fhir_date(&v, &["/effectivePeriod/end"])?;
            let sig = v
                .pointer("/dosage/0/text")
                .and_then(serde_json::Value::as_str)
                .map(String::from);
            (med, start, stop, sig)
        }
        None => (
            c.medication_id
                .clone()
                .ok_or(Invalid::command("medication_id is required"))?,
            date(c.start_date),
            date(c.stop_date),
            c.unstructured_sig.clone(),
        ),
    };
    let mut form = vec![
        ("departmentid".to_string(), c.department_id.clone()),
        ("medicationid".to_string(), med.clone()),
    ];
    for (k, v) in [
        ("startdate", start.map(us)),
        ("stopdate", stop.map(us)),
        ("unstructuredsig", sig),
        ("patientnote", c.note.clone()),
    ] {
        if let Some(v) = v {
            form.push((k.into(), v));
        }
    }
    Ok((form, med))
}

impl WriteBack for AddHistoricalMedication {
    /// Read back: the patient's medications with this medication id, counted against a
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
                .chart_post(&ChartPath::medications(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("medication_entry_id", &answer_id(&v, "medicationentryid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "medication_entry_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (_, med) = resolve(self).map_err(invalid)?;
            count(
                p,
                &ChartPath::medications(&self.patient_id),
                "medicationentryid",
                |v| json_str(v, "medicationid").as_deref() == Some(med.as_str()),
            )
            .await
        })
    }
}

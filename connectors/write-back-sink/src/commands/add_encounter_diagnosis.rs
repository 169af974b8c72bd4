//! `AddEncounterDiagnosis`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::AddEncounterDiagnosis` (data
//! only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddEncounterDiagnosis;

use super::chart::{
    Form,
    ICD10, SNOMED, answer_id, bad, codings, count, invalid_error as invalid, one_source, parse,
};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(AddEncounterDiagnosis);

/// athena's form, from the typed fields or the Condition; and the SNOMED code.
fn resolve(c: &AddEncounterDiagnosis) -> Result<(Form, String), Invalid> {
    let typed = c.snomed_code.is_some() || !c.icd10_codes.is_empty();
    one_source(typed, &c.fhir_resource)?;
    let (snomed, icd10) = match &c.fhir_resource {
        Some(text) => {
            let v = parse(text, "Condition", &c.patient_id)?;
            let all = codings(&v, "/code");
            let snomed = all
                .iter()
                .find(|(s, _, _)| s == SNOMED)
                .map(|(_, c, _)| c.clone())
                .ok_or(bad("Condition has no SNOMED CT coding"))?;
            let icd10: Vec<String> = all
                .into_iter()
                .filter(|(s, _, _)| s == ICD10)
                .map(|(_, c, _)| c)
                .collect();
            (snomed, icd10)
        }
        None => (
            c.snomed_code
                .clone()
                .ok_or(Invalid::command("snomed_code is required"))?,
            c.icd10_codes.clone(),
        ),
    };
    let mut form = vec![("snomedcode".to_string(), snomed.clone())];
    if !icd10.is_empty() {
        form.push(("icd10codes".into(), icd10.join(",")));
    }
    for (k, v) in [("laterality", &c.laterality), ("note", &c.note)] {
        if let Some(v) = v {
            form.push((k.into(), v.clone()));
        }
    }
    Ok((form, snomed))
}

impl WriteBack for AddEncounterDiagnosis {
    /// Read back: the encounter's diagnoses with this SNOMED code, counted against a baseline.
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
                .chart_post(&ChartPath::encounter_diagnoses(&self.encounter_id), form)
                .await?;
            Ok(ids(&[
                ("diagnosis_id", &answer_id(&v, "diagnosisid")),
                ("encounter_id", &self.encounter_id),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "diagnosis_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (_, snomed) = resolve(self).map_err(invalid)?;
            count(
                p,
                &ChartPath::encounter_diagnoses(&self.encounter_id),
                "diagnosisid",
                |v| json_str(v, "snomedcode").as_deref() == Some(snomed.as_str()),
            )
            .await
        })
    }
}

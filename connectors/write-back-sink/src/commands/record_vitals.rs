//! `RecordVitals`: what the sink does with it (its envelope and its [`WriteBack`] behaviour).
//! Its Avro mirror is `athena_contracts::commands::RecordVitals` (data only).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordVitals;
use chrono::NaiveDate;
use serde_json::json;

use super::chart::{
    Readings, answer_id, count, invalid_error as invalid, one_source, parse, us, vitals};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(RecordVitals);

/// The readings (element id, value) and date, from the typed fields or the Observation.
fn resolve(c: &RecordVitals) -> Result<Readings, Invalid> {
    one_source(!c.vitals.is_empty(), &c.fhir_resource)?;
    match &c.fhir_resource {
        Some(text) => {
            let (r, taken) = vitals(&parse(text, "Observation", &c.patient_id)?)?;
            Ok((r, taken.or(date(c.reading_taken))))
        }
        None => Ok((
            c.vitals
                .iter()
                .map(|v| (v.clinical_element_id.clone(), v.value.clone()))
                .collect(),
            date(c.reading_taken),
        )),
    }
}

fn path(c: &RecordVitals) -> ChartPath {
    match &c.encounter_id {
        Some(e) => ChartPath::encounter_vitals(e),
        None => ChartPath::vitals(&c.patient_id),
    }
}

fn taken(d: Option<NaiveDate>) -> String {
    us(d.unwrap_or_else(|| chrono::Utc::now().date_naive()))
}

impl WriteBack for RecordVitals {
    /// Read back: the chart's (or encounter's) readings of the first element with the same
    /// value and date, counted against a baseline (vitals have no duplicate guard).
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        resolve(self).map(|_| ())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let (readings, d) = resolve(self).map_err(invalid)?;
            let when = taken(d);
            // One group: athena's `vitals` is an array of reading groups.
            let group: Vec<_> = readings
                .iter()
                .map(|(e, v)| json!({"clinicalelementid": e, "readingtaken": when, "value": v}))
                .collect();
            let mut form = vec![
                ("departmentid".to_string(), self.department_id.clone()),
                ("vitals".to_string(), json!([group]).to_string()),
                ("returnvitalids".to_string(), "true".to_string()),
            ];
            if let Some(s) = &self.source {
                form.push(("source".into(), s.clone()));
            }
            let v = cx.practice.chart_post(&path(self), form).await?;
            Ok(ids(&[
                ("vital_ids", &answer_id(&v, "vitalids")),
                ("patient_id", &self.patient_id),
                ("encounter_id", self.encounter_id.as_deref().unwrap_or("")),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "vital_ids"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let (readings, d) = resolve(self).map_err(invalid)?;
            let when = taken(d);
            let Some((element, value)) = readings.first() else {
                return Ok((0, None));
            };
            count(p, &path(self), "vitalid", |v| {
                json_str(v, "clinicalelementid").as_deref() == Some(element.as_str())
                    && json_str(v, "value").as_deref() == Some(value.as_str())
                    && json_str(v, "readingtaken").as_deref() == Some(when.as_str())
            })
            .await
        })
    }
}

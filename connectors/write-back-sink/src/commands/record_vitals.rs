//! `RecordVitals`: what the sink does with it (its envelope and its [`ChartAdd`] behaviour,
//! which makes its `WriteBack`). Its Avro mirror is `athena_contracts::commands::RecordVitals`
//! (data only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordVitals;
use serde_json::json;

use super::chart::{Resolved, ChartAdd, chart_add, one_source, parse, us, vitals};
use super::{Invalid, date, envelope};

envelope!(RecordVitals);
chart_add!(RecordVitals);

impl ChartAdd for RecordVitals {
    const ANSWER_KEY: &'static str = "vitalids";
    const LIST_ID_KEY: &'static str = "vitalid";
    const RESULT_ID: &'static str = "vital_ids";

    /// One reading group of the typed readings or the Observation's; read back by the first
    /// reading's element, value and date.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        one_source(!self.vitals.is_empty(), &self.fhir_resource)?;
        let (readings, taken) = match &self.fhir_resource {
            Some(text) => {
                let (r, taken) = vitals(&parse(text, "Observation", &self.patient_id)?)?;
                (r, taken.or(date(self.reading_taken)))
            }
            None => (
                self.vitals
                    .iter()
                    .map(|v| (v.clinical_element_id.clone(), v.value.clone()))
                    .collect(),
                date(self.reading_taken),
            ),
        };
        let when = us(taken.unwrap_or_else(|| chrono::Utc::now().date_naive()));
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
        let (element, value) = readings.into_iter().next().unwrap_or_default();
        Ok((
            form,
            vec![
                ("/clinicalelementid", element),
                ("/value", value),
                ("/readingtaken", when),
            ],
        ))
    }

    fn path(&self) -> ChartPath {
        match &self.encounter_id {
            Some(e) => ChartPath::encounter_vitals(e),
            None => ChartPath::vitals(&self.patient_id),
        }
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![
            ("patient_id", self.patient_id.clone()),
            ("encounter_id", self.encounter_id.clone().unwrap_or_default()),
        ]
    }
}

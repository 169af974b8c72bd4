//! Chart writes and their read-backs (§5.7, lab results §5.5). Every write is a urlencoded
//! form; list-valued parameters (`vitals`, `allergies`, `analytes`) are JSON text in one field.
//!
//! * `POST /v1/{practiceid}/chart/{patientid}/vitals`, `POST …/chart/encounter/{encounterid}/vitals`
//!   — not retried on ambiguity (no duplicate guard). Read back with `GET` on the same paths.
//! * `POST …/chart/{patientid}/problems`, `…/vaccines`, `…/medications`, `…/surgicalhistory`,
//!   `…/familyhistory` — not retried on ambiguity; read back with `GET` on the same path.
//! * `PUT …/chart/{patientid}/allergies` — replaces the whole list; repeating the same list is
//!   harmless, so it is retried.
//! * `POST …/chart/encounter/{encounterid}/diagnoses`, `POST …/orders/referral` — not retried on
//!   ambiguity; read back with `GET …/diagnoses`, `GET …/orders`.
//! * `POST …/patients/{patientid}/documents/labresult` — not retried on ambiguity; read back
//!   with `GET` on the same path.
//!
//! Answers are returned as raw JSON: the shapes differ per call and the sink reads one id out
//! of each.

use http::Method;

use crate::client::PracticeClient;
use crate::error::Error;

/// Where a chart call goes: a route template (for metrics and logs) and its path segments
/// under `/v1/{practiceid}`.
#[derive(Debug, Clone)]
pub struct ChartPath {
    route: &'static str,
    segments: Vec<String>,
    items_key: &'static str,
}

impl ChartPath {
    fn new(route: &'static str, segments: &[&str], items_key: &'static str) -> Self {
        ChartPath {
            route,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            items_key,
        }
    }

    /// `chart/{patientid}/vitals`.
    pub fn vitals(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/vitals",
            &["chart", patient_id, "vitals"],
            "vitals",
        )
    }
    /// `chart/encounter/{encounterid}/vitals`.
    pub fn encounter_vitals(encounter_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/encounter/{encounterid}/vitals",
            &["chart", "encounter", encounter_id, "vitals"],
            "vitals",
        )
    }
    /// `chart/{patientid}/problems`.
    pub fn problems(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/problems",
            &["chart", patient_id, "problems"],
            "problems",
        )
    }
    /// `chart/{patientid}/allergies`.
    pub fn allergies(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/allergies",
            &["chart", patient_id, "allergies"],
            "allergies",
        )
    }
    /// `chart/{patientid}/vaccines`.
    pub fn vaccines(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/vaccines",
            &["chart", patient_id, "vaccines"],
            "vaccines",
        )
    }
    /// `chart/{patientid}/medications`.
    pub fn medications(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/medications",
            &["chart", patient_id, "medications"],
            "medications",
        )
    }
    /// `chart/{patientid}/surgicalhistory`.
    pub fn surgical_history(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/surgicalhistory",
            &["chart", patient_id, "surgicalhistory"],
            "procedures",
        )
    }
    /// `chart/{patientid}/familyhistory`.
    pub fn family_history(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/{patientid}/familyhistory",
            &["chart", patient_id, "familyhistory"],
            "familyhistory",
        )
    }
    /// `chart/encounter/{encounterid}/diagnoses`.
    pub fn encounter_diagnoses(encounter_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/encounter/{encounterid}/diagnoses",
            &["chart", "encounter", encounter_id, "diagnoses"],
            "diagnoses",
        )
    }
    /// `chart/encounter/{encounterid}/orders/referral` (write) — read back with
    /// [`ChartPath::encounter_orders`].
    pub fn referral_order(encounter_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/encounter/{encounterid}/orders/referral",
            &["chart", "encounter", encounter_id, "orders", "referral"],
            "orders",
        )
    }
    /// `chart/encounter/{encounterid}/orders`.
    pub fn encounter_orders(encounter_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/chart/encounter/{encounterid}/orders",
            &["chart", "encounter", encounter_id, "orders"],
            "orders",
        )
    }
    /// `patients/{patientid}/documents/labresult`.
    pub fn lab_results(patient_id: &str) -> Self {
        Self::new(
            "/v1/{practiceid}/patients/{patientid}/documents/labresult",
            &["patients", patient_id, "documents", "labresult"],
            "labresults",
        )
    }

    fn segs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

impl PracticeClient {
    /// `POST` a chart write to `path`. Never retried on ambiguity (no athena call here has a
    /// duplicate guard); returns athena's answer as raw JSON.
    pub async fn chart_post(
        &self,
        path: &ChartPath,
        form: Vec<(String, String)>,
    ) -> Result<serde_json::Value, Error> {
        let call = self.write(Method::POST, path.route, &path.segs(), form, false);
        self.client.json(&call).await
    }

    /// `PUT` a chart write that replaces what it names (the allergy list): repeating it is
    /// harmless, so it is retried.
    pub async fn chart_put(
        &self,
        path: &ChartPath,
        form: Vec<(String, String)>,
    ) -> Result<serde_json::Value, Error> {
        let call = self.write(Method::PUT, path.route, &path.segs(), form, true);
        self.client.json(&call).await
    }

    /// `GET` the list at `path` (with `query`) as raw JSON objects: the answer's array under the
    /// path's items key, or a bare array. Safe to retry.
    pub async fn chart_list(
        &self,
        path: &ChartPath,
        query: &[(&str, &str)],
    ) -> Result<Vec<serde_json::Value>, Error> {
        let mut call = self.get(path.route, &path.segs());
        call.query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let v: serde_json::Value = self.client.json(&call).await?;
        Ok(match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove(path.items_key) {
                Some(serde_json::Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }
}

//! Small read-only endpoints: ping, departments, providers and a patient's chart lists.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::model::ChartKind;
use crate::state::SimState;
use crate::util::{ApiError, ok};

/// `GET /v1/{practiceid}/ping` → `{"pong":"true"}`.
pub async fn ping() -> Response {
    ok(json!({"pong": "true"}))
}

/// `GET /v1/{practiceid}/departments`.
pub async fn departments(State(s): State<SimState>, Path(pid): Path<u64>) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p
            .departments
            .iter()
            .map(|d| json!({"departmentid": d.id, "name": d.name, "state": "MA", "timezonename": "America/New_York"}))
            .collect();
        Ok(json!({"totalcount": items.len(), "departments": items}))
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/providers`.
pub async fn providers(State(s): State<SimState>, Path(pid): Path<u64>) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p.providers.values().map(|x| x.to_json()).collect();
        Ok(json!({"totalcount": items.len(), "providers": items}))
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/providers/{providerid}` — a one-element array.
pub async fn provider(State(s): State<SimState>, Path((pid, id)): Path<(u64, String)>) -> Response {
    s.read(pid, |p| {
        p.providers
            .get(&id)
            .map(|x| json!([x.to_json()]))
            .ok_or_else(|| ApiError::not_found("The provider does not exist."))
    })
    .map(ok)
    .into_response()
}

fn chart(s: &SimState, pid: u64, patient: u64, kind: ChartKind, key: &str) -> Response {
    s.read(pid, |p| {
        if !p.patients.contains_key(&patient) {
            return Err(ApiError::not_found("The patient does not exist."));
        }
        let items: Vec<Value> = p
            .chart
            .iter()
            .filter(|c| c.kind == kind && c.patient_id == patient)
            .map(|c| c.json.clone())
            .collect();
        Ok(json!({"totalcount": items.len(), key: items}))
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/chart/{patientid}/problems`.
pub async fn problems(State(s): State<SimState>, Path((pid, pat)): Path<(u64, u64)>) -> Response {
    chart(&s, pid, pat, ChartKind::Problem, "problems")
}

/// `GET /v1/{practiceid}/chart/{patientid}/allergies`.
pub async fn allergies(State(s): State<SimState>, Path((pid, pat)): Path<(u64, u64)>) -> Response {
    chart(&s, pid, pat, ChartKind::Allergy, "allergies")
}

/// `GET /v1/{practiceid}/chart/{patientid}/medications`.
pub async fn medications(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
) -> Response {
    chart(&s, pid, pat, ChartKind::Medication, "medications")
}

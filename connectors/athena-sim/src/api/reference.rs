//! Small read-only endpoints: ping, departments, providers and a patient's chart lists.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::model::ChartKind;
use crate::state::SimState;
use crate::util::{ApiError, Params, ok, paged};

/// `GET /v1/{practiceid}/ping` → `{"pong":"true"}`.
pub async fn ping() -> Response {
    ok(json!({"pong": "true"}))
}

/// `GET /v1/{practiceid}/departments` (paged: limit 1500 / 5000, `next` links).
pub async fn departments(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p
            .departments
            .iter()
            .map(|d| json!({"departmentid": d.id, "name": d.name, "state": "MA", "timezonename": "America/New_York"}))
            .collect();
        Ok(paged("departments", items, &params, &format!("/v1/{pid}/departments"), 1500, 5000))
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/providers` (paged: limit 1500 / 5000, `next` links).
pub async fn providers(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p.providers.values().map(|x| x.to_json()).collect();
        Ok(paged(
            "providers",
            items,
            &params,
            &format!("/v1/{pid}/providers"),
            1500,
            5000,
        ))
    })
    .map(ok)
    .into_response()
}

/// The appointment types the seeded slots use: (id, name, minutes).
// Guess: ids 2 "New Patient" and 82 "Office Visit" (the ids the seeded slots carry), both
// patient-facing; athena's list has many more fields (duration, generic, template types).
pub const APPOINTMENT_TYPES: &[(&str, &str, u32)] =
    &[("2", "New Patient", 30), ("82", "Office Visit", 15)];

/// `GET /v1/{practiceid}/appointmenttypes` (paged: limit 1500 / 5000, `next` links).
pub async fn appointment_types(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    s.read(pid, |_| {
        let items: Vec<Value> = APPOINTMENT_TYPES
            .iter()
            .map(|(id, name, minutes)| {
                json!({"appointmenttypeid": id, "name": name, "duration": minutes.to_string(),
                       "patientdisplayname": name, "generic": "false", "patient": "true"})
            })
            .collect();
        Ok(paged(
            "appointmenttypes",
            items,
            &params,
            &format!("/v1/{pid}/appointmenttypes"),
            1500,
            5000,
        ))
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/patientappointmentreasons` (`departmentid` and `providerid` required;
/// paged). One reason per appointment type.
// Guess: reason ids are the appointment type ids plus 1000, every reason is valid for every
// department and provider, and the answer's key is `patientappointmentreasons`.
pub async fn appointment_reasons(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    let missing: Vec<String> = ["departmentid", "providerid"]
        .iter()
        .filter(|k| params.get(k).is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return ApiError::missing(missing).into_response();
    }
    s.read(pid, |_| {
        let items: Vec<Value> = APPOINTMENT_TYPES
            .iter()
            .map(|(id, name, _)| {
                let rid = reason_of(id);
                json!({"reasonid": rid.to_string(), "reason": name, "description": name,
                       "reasontype": "all", "schedulingminutes": 0})
            })
            .collect();
        Ok(paged(
            "patientappointmentreasons",
            items,
            &params,
            &format!("/v1/{pid}/patientappointmentreasons"),
            1500,
            5000,
        ))
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

/// The reason id of an appointment type (guess 21: the type id plus 1000).
pub fn reason_of(appointment_type_id: &str) -> String {
    (1000 + appointment_type_id.parse::<u32>().unwrap_or(0)).to_string()
}

/// Insurance packages the simulator offers: (id, name, plan type).
// Guess: athena's package list is practice-specific and searched by name; ours is a small fixed
// synthetic list (any id is still accepted by `POST /patients/{id}/insurances`), filtered by a
// case-insensitive `insurancepackagename` substring, with the usual paging.
pub const INSURANCE_PACKAGES: &[(&str, &str, &str)] = &[
    ("0", "*SELF PAY*", "Self Pay"),
    ("8001", "Synthetic Health PPO", "PPO"),
    ("8002", "Synthetic Health HMO", "HMO"),
    ("8003", "Testcare Medicare", "Medicare"),
];

/// `GET /v1/{practiceid}/insurancepackages` (paged: limit 1500 / 5000, `next` links).
pub async fn insurance_packages(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    let name = params
        .get("insurancepackagename")
        .map(str::to_ascii_lowercase);
    s.read(pid, |_| {
        let items: Vec<Value> = INSURANCE_PACKAGES
            .iter()
            .filter(|(_, n, _)| {
                name.as_deref()
                    .is_none_or(|q| n.to_ascii_lowercase().contains(q))
            })
            .map(|(id, n, plan)| {
                json!({"insurancepackageid": id, "name": n, "insuranceplanname": n,
                       "insuranceproducttype": plan})
            })
            .collect();
        Ok(paged(
            "insurancepackages",
            items,
            &params,
            &format!("/v1/{pid}/insurancepackages"),
            1500,
            5000,
        ))
    })
    .map(ok)
    .into_response()
}

//! Patients (§5.1): match-then-create, update, read, bestmatch / enhancedbestmatch.
//! Every accepted write lands in the ledger and, if subscribed, on the `patients` feed.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::{Value, json};

use crate::model::Practice;
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, ok, parse_us_date};

/// Fields of which a create needs at least one (athena's "at least one of" rule).
const ONE_OF: &[&str] = &[
    "email",
    "guarantoremail",
    "ssn",
    "homephone",
    "mobilephone",
    "workphone",
    "zip",
];
/// Fields stored from a create/update form; the rest (flags like `bypasspatientmatching`) are not.
const STORED: &[&str] = &[
    "firstname",
    "lastname",
    "middlename",
    "suffix",
    "dob",
    "sex",
    "departmentid",
    "email",
    "guarantoremail",
    "ssn",
    "homephone",
    "mobilephone",
    "workphone",
    "zip",
    "address1",
    "address2",
    "city",
    "state",
    "status",
    "language6392code",
    "race",
    "ethnicitycode",
    "consenttocall",
    "consenttotext",
    "contactname",
    "contactmobilephone",
];

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Domain op of `POST /patients`: returns (`[{"patientid"}]`, id).
pub fn create(p: &mut Practice, params: &Params) -> ApiResult<(Value, String)> {
    let mut missing: Vec<String> = ["firstname", "lastname", "dob", "departmentid"]
        .iter()
        .filter(|f| params.get(f).is_none())
        .map(|f| f.to_string())
        .collect();
    if ONE_OF.iter().all(|f| params.get(f).is_none()) {
        // Guess: athena names the whole "at least one of" group in missingfields.
        missing.extend(ONE_OF.iter().map(|f| f.to_string()));
    }
    if !missing.is_empty() {
        return Err(ApiError::missing(missing));
    }
    validate(p, params)?;
    let (first, last, dob) = (
        params.get("firstname").unwrap_or(""),
        params.get("lastname").unwrap_or(""),
        params.get("dob").unwrap_or(""),
    );
    if !params.flag("bypasspatientmatching")
        && let Some(existing) = p.patients.values().find(|x| {
            same(x.field("firstname"), first)
                && same(x.field("lastname"), last)
                && x.field("dob") == dob
        })
    {
        // Match-then-create: the existing id comes back and nothing is written.
        let id = existing.id.to_string();
        return Ok((json!([{ "patientid": id }]), id));
    }
    let fields: BTreeMap<String, String> = STORED
        .iter()
        .filter_map(|k| params.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    let id = p.insert_patient(fields, Utc::now());
    p.patient_changed(id, "AddPatient");
    Ok((json!([{ "patientid": id.to_string() }]), id.to_string()))
}

fn validate(p: &Practice, params: &Params) -> ApiResult<()> {
    if let Some(dob) = params.get("dob")
        && parse_us_date(dob).is_none()
    {
        return Err(ApiError::invalid(
            "dob",
            "Invalid date of birth; use MM/DD/YYYY.",
        ));
    }
    if let Some(d) = params.get("departmentid")
        && !p.has_department(d)
    {
        return Err(ApiError::invalid("departmentid", "Invalid department."));
    }
    if let Some(s) = params.get("status")
        && !matches!(s, "a" | "i" | "p" | "active" | "inactive" | "prospective")
    {
        return Err(ApiError::invalid("status", "Invalid status."));
    }
    for (k, max) in [
        ("firstname", 20),
        ("lastname", 30),
        ("email", 50),
        ("zip", 10),
        ("city", 30),
    ] {
        if params.get(k).is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::invalid(k, &format!("{k} is too long.")));
        }
    }
    Ok(())
}

/// Domain op of `PUT /patients/{patientid}`.
pub fn update(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    validate(p, params)?;
    let pat = p
        .patients
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("The patient does not exist."))?;
    for k in STORED {
        if let Some(v) = params.get(k) {
            pat.fields.insert(k.to_string(), v.to_string());
        }
    }
    pat.modified = Utc::now();
    p.patient_changed(id, "UpdatePatient");
    Ok((json!([{ "patientid": id.to_string() }]), id.to_string()))
}

/// `POST /v1/{practiceid}/patients`.
pub async fn post(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    s.write(pid, "CreatePatient", &params, create)
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/patients/{patientid}`.
pub async fn put(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "UpdatePatient", &params, |p, params| {
        update(p, params, id)
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/patients/{patientid}` — a one-element array.
pub async fn get_one(State(s): State<SimState>, Path((pid, id)): Path<(u64, u64)>) -> Response {
    s.read(pid, |p| {
        p.patients
            .get(&id)
            .map(|x| json!([x.to_json()]))
            .ok_or_else(|| ApiError::not_found("The patient does not exist."))
    })
    .map(ok)
    .into_response()
}

fn score(p: &crate::model::Patient, params: &Params) -> u32 {
    let mut s = 0;
    for (k, w) in [
        ("firstname", 20),
        ("lastname", 30),
        ("dob", 30),
        ("mobilephone", 5),
        ("homephone", 5),
        ("email", 5),
        ("zip", 5),
        ("sex", 5),
    ] {
        if params.get(k).is_some_and(|v| same(v, p.field(k))) {
            s += w;
        }
    }
    s
}

fn matches(s: &SimState, pid: u64, params: &Params, enhanced: bool) -> ApiResult {
    if params.get("lastname").is_none() || params.get("dob").is_none() {
        let miss: Vec<String> = ["firstname", "lastname", "dob"]
            .iter()
            .filter(|f| params.get(f).is_none())
            .map(|f| f.to_string())
            .collect();
        return Err(ApiError::missing(miss));
    }
    s.read(pid, |p| {
        let mut hits: Vec<(u32, Value)> = p
            .patients
            .values()
            .filter(|x| {
                same(x.field("lastname"), params.get("lastname").unwrap_or(""))
                    && x.field("dob") == params.get("dob").unwrap_or("")
            })
            .map(|x| {
                let mut v = x.to_json();
                let sc = score(x, params);
                if enhanced {
                    v["score"] = json!(sc.to_string());
                }
                (sc, v)
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        // Guess: bestmatch returns only the best candidate, enhancedbestmatch all candidates
        // with a score (both as plain arrays).
        let n = if enhanced {
            hits.len()
        } else {
            hits.len().min(1)
        };
        Ok(Value::Array(
            hits.into_iter().take(n).map(|(_, v)| v).collect(),
        ))
    })
}

/// `GET /v1/{practiceid}/patients/bestmatch`.
pub async fn bestmatch(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    matches(&s, pid, &params, false).map(ok).into_response()
}

/// `GET /v1/{practiceid}/patients/enhancedbestmatch`.
pub async fn enhancedbestmatch(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    matches(&s, pid, &params, true).map(ok).into_response()
}

/// `GET /v1/{practiceid}/patients` — search by name / dob / department (`{"patients":[…]}`).
pub async fn list(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p
            .patients
            .values()
            .filter(|x| {
                ["firstname", "lastname", "dob", "departmentid"]
                    .iter()
                    .all(|k| params.get(k).is_none_or(|v| same(v, x.field(k))))
            })
            .map(|x| x.to_json())
            .collect();
        Ok(json!({"totalcount": items.len(), "patients": items}))
    })
    .map(ok)
    .into_response()
    .into_response()
}

/// A 400 helper for handlers that need a numeric id from a string.
pub fn bad_id(field: &str) -> ApiError {
    ApiError::Http(
        StatusCode::BAD_REQUEST,
        json!({"error": format!("Invalid {field}.")}),
    )
}

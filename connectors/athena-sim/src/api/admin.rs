//! Admin endpoints under `/_sim/` for out-of-process users (the demo stack, the CLI's e2e tests):
//! they mirror the `SimState` methods with JSON in and out. Unauthenticated and never throttled.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::FaultRule;
use crate::model::NewPatient;
use crate::state::SimState;
use crate::util::Params;

/// Body of `POST /_sim/faults`: one rule or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FaultBody {
    /// Several rules, in order.
    Many(Vec<FaultRule>),
    /// One rule.
    One(FaultRule),
}

/// `POST /_sim/faults`.
pub async fn post_faults(State(s): State<SimState>, Json(body): Json<FaultBody>) -> Response {
    let rules = match body {
        FaultBody::Many(v) => v,
        FaultBody::One(r) => vec![r],
    };
    let n = rules.len();
    for r in rules {
        s.inject(r);
    }
    Json(json!({"added": n, "queued": s.inner.faults.lock().len()})).into_response()
}

/// `GET /_sim/faults` — the rules still queued.
pub async fn get_faults(State(s): State<SimState>) -> Response {
    Json(json!(s.inner.faults.lock().clone())).into_response()
}

/// `DELETE /_sim/faults`.
pub async fn delete_faults(State(s): State<SimState>) -> Response {
    s.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/ledger`.
pub async fn ledger(State(s): State<SimState>) -> Response {
    Json(json!(s.ledger())).into_response()
}

/// `POST /_sim/revoke`.
pub async fn revoke(State(s): State<SimState>) -> Response {
    s.revoke_tokens();
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sim/generate?n=10` (or JSON `{"n":10}`).
pub async fn generate(State(s): State<SimState>, params: Params) -> Response {
    let n = params
        .usize("n")
        .or_else(|| {
            let raw = params
                .pairs()
                .first()
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            serde_json::from_str::<Value>(&raw)
                .ok()
                .and_then(|v| v["n"].as_u64())
                .map(|n| n as usize)
        })
        .unwrap_or(1);
    s.generate(n);
    Json(json!({"generated": n, "ledger_entries": s.ledger().len()})).into_response()
}

/// `GET /_sim/stats`: token requests, request counts by route template, ledger size and
/// unprocessed feed rows per practice.
pub async fn stats(State(s): State<SimState>) -> Response {
    let pending: Value = {
        let w = s.inner.world.lock();
        w.practices
            .iter()
            .map(|(id, p)| {
                let feeds: serde_json::Map<String, Value> = p
                    .feeds
                    .iter()
                    .map(|(k, f)| {
                        (
                            k.to_string(),
                            json!(f.rows.iter().filter(|r| r.processed_at.is_none()).count()),
                        )
                    })
                    .collect();
                (id.to_string(), Value::Object(feeds))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    Json(json!({
        "token_requests": s.token_requests(),
        "requests": s.request_counts(),
        "ledger_entries": s.ledger().len(),
        "pending_changes": pending,
    }))
    .into_response()
}

/// `POST /_sim/practices/{practiceid}/patients` with a `NewPatient` JSON body.
pub async fn add_patient(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    Json(p): Json<NewPatient>,
) -> Response {
    if !s.config().practices.contains(&pid) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Invalid practice."})),
        )
            .into_response();
    }
    Json(json!({"patientid": s.add_patient(pid, p)})).into_response()
}

/// Body of `POST /_sim/practices/{practiceid}/slots`.
#[derive(Debug, Deserialize)]
pub struct SlotsBody {
    /// Department id.
    pub department_id: String,
    /// Provider id.
    pub provider_id: String,
    /// Date (`YYYY-MM-DD`).
    pub date: NaiveDate,
    /// Start times `HH:MM`.
    pub times: Vec<String>,
}

/// `POST /_sim/practices/{practiceid}/slots`.
pub async fn add_slots(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    Json(b): Json<SlotsBody>,
) -> Response {
    if !s.config().practices.contains(&pid) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Invalid practice."})),
        )
            .into_response();
    }
    let times: Vec<&str> = b.times.iter().map(String::as_str).collect();
    Json(json!({"appointmentids": s.add_open_slots(pid, &b.department_id, &b.provider_id, b.date, &times)})).into_response()
}

/// `PUT /_sim/scopes/withheld` with a JSON list of scope names: later token grants leave them
/// out, and every issued token is revoked so the change applies at once.
pub async fn put_withheld_scopes(
    State(s): State<SimState>,
    Json(scopes): Json<Vec<String>>,
) -> Response {
    s.withhold_scopes(scopes);
    s.revoke_tokens();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/push/dead-letters`: per dead letter its subscription, attempts and size (the
/// bodies are id-only but stay in the simulator).
pub async fn dead_letters(State(s): State<SimState>) -> Response {
    let v: Vec<Value> = s
        .push()
        .dead_letters
        .lock()
        .iter()
        .map(|d| json!({"subscription": d.subscription, "attempts": d.attempts, "bytes": d.body.len()}))
        .collect();
    Json(json!(v)).into_response()
}

/// `POST /_sim/push/subscriptions/{id}/replay`: replays that subscription's dead letters
/// (`{"replayed": n}`; 404 for an unknown subscription).
pub async fn replay_dead_letters(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    if !s.push().subscriptions.lock().contains_key(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Unknown subscription."})),
        )
            .into_response();
    }
    Json(json!({"replayed": s.replay_dead_letters(&id)})).into_response()
}

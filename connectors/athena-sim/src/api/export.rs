//! FHIR Bulk Data `Group/$export` (§6.4): kick-off (202 + `Content-Location`), status polls
//! (202 with `Retry-After` and `X-Progress` for `export_polls` polls, then the manifest),
//! NDJSON files split at `export_max_lines`, and DELETE of the status URL.
//! The data is snapshotted at kick-off, like a real export's `transactionTime`.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::api::fhir::{base_url, fhir, outcome, resources};
use crate::state::SimState;
use crate::util::Params;

/// Types the simulator exports.
pub const EXPORT_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Condition",
    "AllergyIntolerance",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "Immunization",
    "MedicationRequest",
    "Coverage",
    "ServiceRequest",
];

/// One export job.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// Kick-off time (the manifest's `transactionTime`).
    pub transaction_time: DateTime<Utc>,
    /// The kick-off URL.
    pub request: String,
    /// 202 answers still to give.
    pub polls_left: u32,
    /// Files: (type, file name, NDJSON lines).
    pub files: Vec<(String, String, Vec<String>)>,
}

/// `GET /fhir/r4/Group/{groupid}/$export`.
pub async fn kickoff(
    State(s): State<SimState>,
    Path(group): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let prefer_async = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("respond-async"));
    if !prefer_async {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "The Prefer header must be respond-async.",
        );
    }
    // The doc shows `a-1.c-{pid}`, clients send `a-1.C-{pid}`: accept both.
    let pid = group
        .strip_prefix("a-1.C-")
        .or_else(|| group.strip_prefix("a-1.c-"))
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|p| s.config().practices.contains(p));
    let Some(pid) = pid else {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("Group/{group} is not known."),
        );
    };
    let types: Vec<String> = {
        let t = params.list("_type");
        if t.is_empty() {
            EXPORT_TYPES.iter().map(|s| s.to_string()).collect()
        } else {
            t
        }
    };
    if let Some(bad) = types.iter().find(|t| !EXPORT_TYPES.contains(&t.as_str())) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            &format!("Resource type {bad} is not supported for export."),
        );
    }
    let since = match params.get("_since") {
        Some(v) => match DateTime::parse_from_rfc3339(v) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "_since must be a FHIR instant.",
                );
            }
        },
        None => None,
    };
    let max = s.config().export_max_lines.max(1);
    let files = s
        .with_practice(pid, |p| {
            let mut files = Vec::new();
            for ty in &types {
                let lines: Vec<String> = resources(p, ty, None)
                    .into_iter()
                    .filter(|(t, _)| since.is_none_or(|s| *t >= s))
                    .map(|(_, v)| v.to_string())
                    .collect();
                for (n, chunk) in lines.chunks(max).enumerate() {
                    files.push((ty.clone(), format!("{ty}-{}.ndjson", n + 1), chunk.to_vec()));
                }
            }
            files
        })
        .unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let base = base_url(&headers);
    let query = params
        .pairs()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let request = format!(
        "{base}/fhir/r4/Group/{group}/$export{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    s.inner.exports.lock().insert(
        id.clone(),
        ExportJob {
            transaction_time: Utc::now(),
            request,
            polls_left: s.config().export_polls,
            files,
        },
    );
    let mut r = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/fhir/r4/bulkstatus/{id}")) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

/// `GET /fhir/r4/bulkstatus/{jobid}`.
pub async fn status(
    State(s): State<SimState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let total_polls = s.config().export_polls.max(1);
    let mut jobs = s.inner.exports.lock();
    let Some(job) = jobs.get_mut(&id) else {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "Unknown or deleted export job.",
        );
    };
    if job.polls_left > 0 {
        job.polls_left -= 1;
        let pct = 100 * (total_polls - job.polls_left - 1) / total_polls;
        let mut r = StatusCode::ACCEPTED.into_response();
        let h = r.headers_mut();
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(s.config().export_retry_after),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("{pct}%")) {
            h.insert("x-progress", v);
        }
        return r;
    }
    let base = base_url(&headers);
    let output: Vec<_> = job
        .files
        .iter()
        .map(|(ty, name, lines)| json!({"type": ty, "url": format!("{base}/fhir/r4/bulkfiles/{id}/{name}"), "count": lines.len()}))
        .collect();
    fhir(
        StatusCode::OK,
        json!({
            "transactionTime": job.transaction_time.to_rfc3339(),
            "request": job.request,
            // athena's file URLs were observed as pre-signed; ours need no token either.
            "requiresAccessToken": false,
            "output": output,
            "error": [],
        }),
    )
}

/// `DELETE /fhir/r4/bulkstatus/{jobid}` → 202; the job and its files are gone afterwards.
// Guess: standard Bulk Data behaviour (202); athena's is unverified.
pub async fn delete(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    match s.inner.exports.lock().remove(&id) {
        Some(_) => StatusCode::ACCEPTED.into_response(),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            "Unknown or deleted export job.",
        ),
    }
}

/// `GET /fhir/r4/bulkfiles/{jobid}/{file}` — `application/fhir+ndjson`.
pub async fn file(State(s): State<SimState>, Path((id, name)): Path<(String, String)>) -> Response {
    let jobs = s.inner.exports.lock();
    let lines = jobs
        .get(&id)
        .and_then(|j| j.files.iter().find(|f| f.1 == name))
        .map(|f| f.2.join("\n") + "\n");
    match lines {
        Some(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/fhir+ndjson")],
            body,
        )
            .into_response(),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "Unknown export file."),
    }
}

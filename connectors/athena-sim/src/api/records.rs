//! Reads of single records that push notifications name only by athena identifier, the "fetch
//! with" calls of reference §7.4: `GET /v1/{pid}/patients/{patientid}/documents/{kind}/{id}`
//! (kinds `labresult`, `imagingresult`, `order`, `patientcase`) and
//! `GET /v1/{pid}/referringproviders/{id}`. They answer the record's latest changed-data
//! snapshot (`Practice::records`).
// Guess: athena's answer shapes for these reads are not in the reference; the simulator answers
// the same fields as the feed row, as a one-element array like `GET /claims/{id}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::state::SimState;
use crate::util::{ApiError, ok};

/// The feed and id field of each document kind served.
pub fn document_feed(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "labresult" => ("labresults", "labresultid"),
        "imagingresult" => ("imagingresults", "imagingresultid"),
        "order" => ("orders", "orderid"),
        "patientcase" => ("documents/patientcase", "patientcaseid"),
        _ => return None,
    })
}

/// The id field of the feeds whose latest row per record is kept for these reads.
pub fn kept_id_field(feed: &str) -> Option<&'static str> {
    match feed {
        "referringproviders" => Some("referringproviderid"),
        f => ["labresult", "imagingresult", "order", "patientcase"]
            .into_iter()
            .filter_map(document_feed)
            .find(|(p, _)| *p == f)
            .map(|(_, k)| k),
    }
}

async fn document(
    State(s): State<SimState>,
    Path((pid, patient, kind, id)): Path<(u64, String, String, String)>,
) -> Response {
    s.read(pid, |p| {
        let (feed, _) =
            document_feed(&kind).ok_or_else(|| ApiError::not_found("Unknown document type."))?;
        p.records
            .get(&(feed, id.clone()))
            .filter(|r| r["patientid"].to_string().trim_matches('"') == patient)
            .map(|r| json!([r]))
            .ok_or_else(|| ApiError::not_found("The document does not exist."))
    })
    .map(ok)
    .into_response()
}

async fn referring_provider(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, String)>,
) -> Response {
    s.read(pid, |p| {
        p.records
            .get(&("referringproviders", id.clone()))
            .map(|r| json!([r]))
            .ok_or_else(|| ApiError::not_found("The referring provider does not exist."))
    })
    .map(ok)
    .into_response()
}

/// Adds the routes to the guarded router.
pub fn routes(r: axum::Router<SimState>) -> axum::Router<SimState> {
    r.route(
        "/v1/{practiceid}/patients/{patientid}/documents/{kind}/{id}",
        get(document),
    )
    .route(
        "/v1/{practiceid}/referringproviders/{id}",
        get(referring_provider),
    )
}

//! Small helpers shared by the handlers: the `Params` extractor (query string plus urlencoded
//! body, repeated keys kept), athena-style error answers and athena's date/time formats.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde_json::{Value, json};

/// Request parameters as athena reads them: the query string and, for writes, the
/// `application/x-www-form-urlencoded` body. Keys may repeat (`departmentid=1&departmentid=2`).
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds params from decoded pairs.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// First non-empty value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, repeated keys and comma lists flattened, blanks dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// `true` when `key` is `true` (any case) or `1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key).map(str::to_ascii_lowercase).as_deref(),
            Some("true" | "1" | "y")
        )
    }

    /// Parsed `usize` value of `key`, `None` if absent or not a number.
    pub fn usize(&self, key: &str) -> Option<usize> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// All params as a map (repeated keys joined with `,`), the ledger's `params`.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.pairs {
            out.entry(k.clone())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        out
    }

    /// The pairs, for rebuilding a `next` link.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // Guess: athena reads a form body even without the content type (clients differ); a
        // body that does not decode as a form is ignored rather than rejected.
        if (is_form || !body.is_empty())
            && let Ok(more) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        {
            pairs.extend(more);
        }
        Ok(Params { pairs })
    }
}

/// A handler failure, rendered the way athena renders it.
#[derive(Debug)]
pub enum ApiError {
    /// An HTTP error with a JSON body (`{"error": ...}` and friends).
    Http(StatusCode, Value),
    /// A business failure answered as HTTP 200 `{"success":"false","errormessage":...}`.
    Business(String),
}

impl ApiError {
    /// `status` with body `{"error": msg}`.
    pub fn new(status: StatusCode, msg: &str) -> Self {
        ApiError::Http(status, json!({ "error": msg }))
    }

    /// 400 `Additional fields are required.` with `missingfields`.
    pub fn missing(fields: Vec<String>) -> Self {
        ApiError::Http(
            StatusCode::BAD_REQUEST,
            json!({"invalidfields": [], "missingfields": fields, "error": "Additional fields are required."}),
        )
    }

    /// 400 with `invalidfields`.
    pub fn invalid(field: &str, msg: &str) -> Self {
        ApiError::Http(
            StatusCode::BAD_REQUEST,
            json!({"invalidfields": [field], "missingfields": [], "error": msg}),
        )
    }

    /// 404 with `error`.
    pub fn not_found(msg: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Http(status, body) => (status, axum::Json(body)).into_response(),
            ApiError::Business(msg) => {
                axum::Json(json!({"success": "false", "errormessage": msg})).into_response()
            }
        }
    }
}

/// Result type of handlers and domain operations.
pub type ApiResult<T = Value> = Result<T, ApiError>;

/// JSON 200 answer.
pub fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// athena's `MM/DD/YYYY HH:MM:SS`, US Eastern (the practice-local stamp of `lastmodified`).
pub fn eastern_stamp(t: DateTime<Utc>) -> String {
    t.with_timezone(&New_York)
        .format("%m/%d/%Y %H:%M:%S")
        .to_string()
}

/// Parses athena's `MM/DD/YYYY HH24:MI:SS` as US Eastern wall-clock time.
pub fn parse_eastern(s: &str) -> Option<DateTime<Utc>> {
    let ndt = NaiveDateTime::parse_from_str(s.trim(), "%m/%d/%Y %H:%M:%S").ok()?;
    New_York
        .from_local_datetime(&ndt)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// athena's `MM/DD/YYYY`.
pub fn us_date(d: NaiveDate) -> String {
    d.format("%m/%d/%Y").to_string()
}

/// Parses `MM/DD/YYYY`.
pub fn parse_us_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%m/%d/%Y").ok()
}

/// Today's date in US Eastern (athena's practice-local "today" for the simulated practices).
pub fn today_eastern() -> NaiveDate {
    Utc::now().with_timezone(&New_York).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eastern_round_trip_is_exact_to_the_second() {
        let t = Utc.with_ymd_and_hms(2026, 7, 4, 16, 30, 5).unwrap();
        let s = eastern_stamp(t);
        assert_eq!(s, "07/04/2026 12:30:05"); // EDT = UTC-4
        assert_eq!(parse_eastern(&s), Some(t));
    }

    #[test]
    fn params_flatten_repeats_and_commas() {
        let p = Params::from_pairs(vec![
            ("departmentid".into(), "1,2".into()),
            ("departmentid".into(), "3".into()),
        ]);
        assert_eq!(p.list("departmentid"), vec!["1", "2", "3"]);
        assert_eq!(p.to_map()["departmentid"], "1,2,3");
    }
}

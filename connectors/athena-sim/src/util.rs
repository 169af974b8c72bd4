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
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let is_form = content_type.starts_with("application/x-www-form-urlencoded");
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(boundary) = multipart_boundary(&content_type) {
            pairs.extend(parse_multipart(&body, &boundary));
            return Ok(Params { pairs });
        }
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

fn multipart_boundary(content_type: &str) -> Option<String> {
    if !content_type.starts_with("multipart/form-data") {
        return None;
    }
    content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A small `multipart/form-data` reader (athena documents multipart for document uploads).
/// File parts become base64 text, so handlers see the same `attachmentcontents` as from a
/// urlencoded form. Malformed parts are skipped.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    use base64::Engine;
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut rest = body;
    // Skip the preamble up to the first delimiter.
    let Some(start) = find(rest, delim.as_bytes()) else {
        return out;
    };
    rest = &rest[start + delim.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let part_start = if rest.starts_with(b"\r\n") { 2 } else { 0 };
        let Some(end) = find(&rest[part_start..], delim.as_bytes()) else {
            break;
        };
        let part = &rest[part_start..part_start + end];
        rest = &rest[part_start + end + delim.len()..];
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]);
        let mut content = &part[split + 4..];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or("");
        let attr = |key: &str| {
            disposition.split(';').map(str::trim).find_map(|p| {
                p.strip_prefix(key)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        let Some(name) = attr("name") else { continue };
        let value = if attr("filename").is_some() {
            base64::engine::general_purpose::STANDARD.encode(content)
        } else {
            String::from_utf8_lossy(content).into_owned()
        };
        out.push((name, value));
    }
    out
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

/// One page of a proprietary list (reference §3.4): `limit` (default `default_limit`, at most
/// `max`) and 0-based `offset`, `totalcount`, and relative `next` / `previous` links that carry
/// the request's other parameters, the way athena pages (`path` is `/v1/{pid}/...`).
pub fn paged(
    key: &str,
    items: Vec<Value>,
    params: &Params,
    path: &str,
    default_limit: usize,
    max: usize,
) -> Value {
    let total = items.len();
    let limit = params.usize("limit").unwrap_or(default_limit).clamp(1, max);
    let offset = params.usize("offset").unwrap_or(0);
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let link = |off: usize| {
        let mut q: Vec<(String, String)> = params
            .pairs()
            .iter()
            .filter(|(k, _)| k != "offset" && k != "limit")
            .cloned()
            .collect();
        q.push(("limit".into(), limit.to_string()));
        q.push(("offset".into(), off.to_string()));
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let mut v = serde_json::json!({ key: page, "totalcount": total });
    if offset + limit < total {
        v["next"] = Value::String(link(offset + limit));
    }
    if offset > 0 {
        v["previous"] = Value::String(link(offset.saturating_sub(limit)));
    }
    v
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
    fn multipart_text_and_file_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"departmentid\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"attachmentcontents\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--XyZ--\r\n";
        let pairs = parse_multipart(body, "XyZ");
        assert_eq!(
            pairs,
            vec![
                ("departmentid".into(), "1".into()),
                ("attachmentcontents".into(), "JVBERg==".into())
            ]
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"XyZ\""),
            Some("XyZ".into())
        );
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

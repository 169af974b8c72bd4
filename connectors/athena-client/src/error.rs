//! One error type for the whole client and the single place where HTTP responses are classified.
//!
//! Every failure the client can report is a variant of [`Error`], and every variant maps to exactly one
//! [`ErrorClass`] through [`Error::class`]. The connectors decide what to do (retry, DLQ, stop) from the class
//! alone, so the mapping below is the contract. [`classify`] turns an athena HTTP response into `Ok(())` or an
//! `Error`; no other code inspects status codes.
//!
//! PHI rule: messages carry athena's own `error` text (athena documents it as safe to show) and ids, never our
//! request bodies and never serde error text (serde echoes offending values, which may be patient fields).

use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// What a caller should do with an [`Error`]. The only retry vocabulary the connectors need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (5xx, 408, timeouts, connection failures on idempotent requests): back off and try again.
    Retriable,
    /// athena throttled us: wait `retry_after` (capped) or back off, and slow every caller sharing the key.
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// This request can never succeed as sent (validation, business rule, not found, taken slot):
    /// report it (result topic / DLQ) and move on.
    Permanent,
    /// Configuration, credentials or a programming error: stop with a clear message.
    Fatal,
    /// A write may or may not have been applied by athena (timeout or dropped connection after sending).
    /// Never retried by the client; the caller must read back and reconcile.
    Ambiguous,
}

impl ErrorClass {
    /// A short, bounded name for metric labels (`errors_total{class=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Retriable => "retriable",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
            ErrorClass::Ambiguous => "ambiguous",
        }
    }
}

/// Every failure of the athena client. Each variant's doc names its [`ErrorClass`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration; `key` is the dotted config key. Class: Fatal.
    #[error("{key}: {message}")]
    Config {
        /// Dotted config key, e.g. `retry.max_attempts`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// Credentials rejected, or an API call still answered 401 after one token refresh. Class: Fatal.
    #[error("unauthorized (HTTP {status}): {message}")]
    Unauthorized {
        /// HTTP status (401, or 400 from the token endpoint).
        status: u16,
        /// athena's `error` text, if any.
        message: String,
    },
    /// The gateway refused the request for lack of permission: a 403 naming a missing scope
    /// (`WWW-Authenticate: ... insufficient_scope`), a Mashery error code other than the two
    /// throttling ones (`ERR_403_NOT_AUTHORIZED`, ...), or a non-JSON body saying so. The app or
    /// token lacks a scope or practice access; nothing was applied. Class: Fatal.
    #[error("forbidden (HTTP {status}): {reason}")]
    Forbidden {
        /// HTTP status (403).
        status: u16,
        /// What identified it as a permission refusal (header or body marker, the missing scope
        /// when athena named it); never a request value.
        reason: String,
    },
    /// athena throttled the request (429, Mashery/Apigee throttling 403, or daily quota exhausted).
    /// Class: RateLimited.
    #[error("rate limited (HTTP {status}): {reason}")]
    RateLimited {
        /// HTTP status (429 or 403).
        status: u16,
        /// `Retry-After` as sent by athena, uncapped; the transport applies the configured cap.
        retry_after: Option<Duration>,
        /// Short marker explaining why this was judged a throttle (e.g. `X-Mashery-Error-Code`).
        reason: String,
    },
    /// The daily quota of this API key is exhausted (`X-RateLimit-Remaining: 0`); requests are refused locally
    /// until `retry_after` has passed (midnight GMT, capped). Class: RateLimited.
    #[error("daily athena quota exhausted; retry in {}s", .retry_after.as_secs())]
    QuotaExhausted {
        /// Time until the local pause ends.
        retry_after: Duration,
    },
    /// A 5xx or 408 answer. Class: Retriable (the transport turns it into [`Error::Ambiguous`] for writes).
    #[error("server error (HTTP {status}){}", fmt_msg(.message))]
    Server {
        /// HTTP status.
        status: u16,
        /// athena's `error` text, if the body had one.
        message: Option<String>,
    },
    /// The request timed out. Class: Retriable (Ambiguous for writes, via the transport).
    #[error("request timed out")]
    Timeout,
    /// The connection could not be established; nothing was sent. Class: Retriable, even for writes.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The connection broke after the request may have been sent, or the body could not be read.
    /// Class: Retriable (Ambiguous for writes, via the transport).
    #[error("transport error: {0}")]
    Transport(String),
    /// A non-idempotent write whose outcome is unknown (timed out, connection dropped, 5xx). Never retried.
    /// Class: Ambiguous.
    #[error("outcome unknown for {method} {route}: {cause}")]
    Ambiguous {
        /// HTTP method of the write.
        method: String,
        /// Route template of the write (never the concrete URL).
        route: String,
        /// The underlying transient failure.
        cause: Box<Error>,
    },
    /// athena refused for a business reason: 403 with a JSON `error` (e.g. "Changed messages require
    /// setup (subscription) that has not been done."), other 4xx, or HTTP 200 with `success:false` /
    /// `errormessage` on a write. Class: Permanent.
    #[error("rejected by athena (HTTP {status}): {message}")]
    Business {
        /// HTTP status (200 when athena reported failure in the body).
        status: u16,
        /// athena's message.
        message: String,
    },
    /// 400 naming missing or invalid fields. Class: Permanent.
    #[error(
        "validation failed: {message} (missing: {missing_fields:?}, invalid: {invalid_fields:?})"
    )]
    Validation {
        /// athena's `error` text.
        message: String,
        /// Field names athena reported missing (names only, no values).
        missing_fields: Vec<String>,
        /// Field names athena reported invalid.
        invalid_fields: Vec<String>,
    },
    /// 409: the slot is already booked or not bookable. Class: Permanent.
    #[error("slot taken: {message}")]
    SlotTaken {
        /// athena's `error` text.
        message: String,
    },
    /// 404: the entity or practice does not exist. Class: Permanent.
    #[error("not found: {message}")]
    NotFound {
        /// athena's `error` text.
        message: String,
    },
    /// A 2xx body that could not be decoded. Only position and category are kept (no serde text: it would
    /// echo values). Class: Permanent for reads, Ambiguous for writes (the write did happen).
    #[error("could not decode response of {route} ({category} at line {line}, column {column})")]
    Decode {
        /// Route template.
        route: String,
        /// serde_json error category (syntax, data, eof, io).
        category: &'static str,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// Whether the request was a write (which athena applied).
        write: bool,
    },
    /// A FHIR bulk export reported failure or an unusable answer. Class: Permanent.
    #[error("bulk export failed: {0}")]
    BulkExport(String),
    /// A bug or an impossible state inside the client (bad URL join, request build failure). Class: Fatal.
    #[error("internal error: {0}")]
    Internal(String),
}

fn fmt_msg(m: &Option<String>) -> String {
    m.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

impl Error {
    /// The one mapping from error to class. See the variant docs and `docs/athena-client.md`.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::Internal(_) => ErrorClass::Fatal,
            Error::RateLimited { retry_after, .. } => ErrorClass::RateLimited {
                retry_after: *retry_after,
            },
            Error::QuotaExhausted { retry_after } => ErrorClass::RateLimited {
                retry_after: Some(*retry_after),
            },
            Error::Server { .. } | Error::Timeout | Error::Connect(_) | Error::Transport(_) => {
                ErrorClass::Retriable
            }
            Error::Ambiguous { .. } => ErrorClass::Ambiguous,
            Error::Decode { write: true, .. } => ErrorClass::Ambiguous,
            Error::Decode { write: false, .. }
            | Error::Business { .. }
            | Error::Validation { .. }
            | Error::SlotTaken { .. }
            | Error::NotFound { .. }
            | Error::BulkExport(_) => ErrorClass::Permanent,
        }
    }

    /// A short, bounded name of the variant (`athena.NotFound`, `athena.Server`, ...) for
    /// dead-letter headers and logs; it never carries a message.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Config { .. } => "athena.Config",
            Error::Unauthorized { .. } => "athena.Unauthorized",
            Error::Forbidden { .. } => "athena.Forbidden",
            Error::RateLimited { .. } => "athena.RateLimited",
            Error::QuotaExhausted { .. } => "athena.QuotaExhausted",
            Error::Server { .. } => "athena.Server",
            Error::Timeout => "athena.Timeout",
            Error::Connect(_) => "athena.Connect",
            Error::Transport(_) => "athena.Transport",
            Error::Ambiguous { .. } => "athena.Ambiguous",
            Error::Business { .. } => "athena.Business",
            Error::Validation { .. } => "athena.Validation",
            Error::SlotTaken { .. } => "athena.SlotTaken",
            Error::NotFound { .. } => "athena.NotFound",
            Error::Decode { .. } => "athena.Decode",
            Error::BulkExport(_) => "athena.BulkExport",
            Error::Internal(_) => "athena.Internal",
        }
    }

    /// Whether this failure happened before any byte of the request could reach athena (so even a
    /// non-idempotent write is safe to retry).
    pub(crate) fn is_pre_send(&self) -> bool {
        matches!(
            self,
            Error::Connect(_)
                | Error::RateLimited { .. }
                | Error::QuotaExhausted { .. }
                | Error::Unauthorized { .. }
        )
    }

    pub(crate) fn config(key: &str, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A decode error stripped of serde's message (which may quote patient data).
    pub(crate) fn decode(route: &str, e: &serde_json::Error, write: bool) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        Error::Decode {
            route: route.to_owned(),
            category,
            line: e.line(),
            column: e.column(),
            write,
        }
    }

    /// Map a reqwest failure (no HTTP response) to an error, without echoing the URL (it may hold ids
    /// in a query string, which are fine, but never bodies).
    pub(crate) fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Error::Timeout
        } else if e.is_connect() {
            Error::Connect(short_source(e))
        } else if e.is_builder() {
            Error::Internal("could not build request".into())
        } else {
            Error::Transport(short_source(e))
        }
    }
}

fn short_source(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = String::from(if e.is_body() { "body" } else { "request" });
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Markers that identify a gateway throttle inside a 403 body (lower-cased comparison).
const THROTTLE_MARKERS: &[&str] = &[
    "over qps",
    "over rate",
    "overqps",
    "over_qps",
    "over_rate",
    "rate limit",
    "ratelimit",
    "quota",
    "too many requests",
];

/// Classify one athena HTTP response. The ONLY place status codes are interpreted.
///
/// `write` says whether the request was a POST/PUT/DELETE that athena would apply: for writes a 2xx body
/// with `success:false` or a non-empty `error`/`errormessage` is a business failure.
/// The table (also in `docs/athena-client.md`):
///
/// | Response | Result |
/// |---|---|
/// | 429 | `RateLimited` with `Retry-After` |
/// | 403 with a throttling `X-Mashery-Error-Code` (`*_OVER_QPS`, `*_OVER_RATE`) / `Retry-After` / throttle marker | `RateLimited` |
/// | 403 with `WWW-Authenticate: ... insufficient_scope`, another Mashery code, or a non-JSON body naming a permission | `Forbidden` |
/// | other 403 without a JSON object body | `RateLimited` (gateway) |
/// | 403 with JSON `error` | `Business` |
/// | 401 | `Unauthorized` (the transport refreshes once before surfacing it) |
/// | 400 with `missingfields`/`invalidfields` | `Validation` |
/// | 404 | `NotFound` |
/// | 409 | `SlotTaken` |
/// | 408, 5xx | `Server` (Retriable; Ambiguous for writes) |
/// | other 4xx | `Business` |
/// | 2xx write with `success:false` or `error`/`errormessage` | `Business` (status 200) |
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    write: bool,
) -> Result<(), Error> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let obj = json.as_ref().and_then(first_object);
    let athena_error = obj.and_then(|o| text_field(o, "error"));
    let code = status.as_u16();

    if status.is_success() {
        if write && let Some(o) = obj {
            if let Some(v) = o.get("success")
                && !crate::model::de::truthy(v)
            {
                let msg = text_field(o, "errormessage")
                    .or(athena_error)
                    .unwrap_or_else(|| "success=false".into());
                return Err(Error::Business {
                    status: code,
                    message: msg,
                });
            }
            if let Some(msg) = text_field(o, "errormessage").or(athena_error) {
                return Err(Error::Business {
                    status: code,
                    message: msg,
                });
            }
        }
        return Ok(());
    }

    let retry_after = parse_retry_after(headers);
    match code {
        429 => Err(Error::RateLimited {
            status: code,
            retry_after,
            reason: "HTTP 429".into(),
        }),
        403 => {
            if let Some(reason) = permission_reason(headers, body, obj.is_some()) {
                Err(Error::Forbidden {
                    status: code,
                    reason,
                })
            } else if let Some(reason) = throttle_reason(headers, body, obj.is_some()) {
                Err(Error::RateLimited {
                    status: code,
                    retry_after,
                    reason,
                })
            } else {
                Err(Error::Business {
                    status: code,
                    message: athena_error.unwrap_or_else(|| "forbidden".into()),
                })
            }
        }
        401 => Err(Error::Unauthorized {
            status: code,
            message: athena_error.unwrap_or_else(|| "unauthorized".into()),
        }),
        400 => {
            let missing = obj
                .map(|o| string_list(o, "missingfields"))
                .unwrap_or_default();
            let invalid = obj
                .map(|o| string_list(o, "invalidfields"))
                .unwrap_or_default();
            let has_lists = obj.is_some_and(|o| {
                o.contains_key("missingfields") || o.contains_key("invalidfields")
            });
            let message = athena_error.unwrap_or_else(|| "bad request".into());
            if has_lists {
                Err(Error::Validation {
                    message,
                    missing_fields: missing,
                    invalid_fields: invalid,
                })
            } else {
                Err(Error::Business {
                    status: code,
                    message,
                })
            }
        }
        404 => Err(Error::NotFound {
            message: athena_error.unwrap_or_else(|| "not found".into()),
        }),
        409 => Err(Error::SlotTaken {
            message: athena_error.unwrap_or_else(|| "conflict".into()),
        }),
        408 | 500..=599 => Err(Error::Server {
            status: code,
            message: athena_error,
        }),
        _ => Err(Error::Business {
            status: code,
            message: athena_error.unwrap_or_else(|| format!("HTTP {code}")),
        }),
    }
}

/// Markers of a permission refusal inside a non-JSON 403 body (lower-cased comparison).
const PERMISSION_MARKERS: &[&str] = &[
    "insufficient_scope",
    "insufficient scope",
    "not authorized",
    "not authorised",
    "permission",
    "access denied",
];

/// Why a 403 looks like a permission refusal (missing scope, app not authorised) rather than a
/// throttle or a business answer, if it does. Checked before [`throttle_reason`], whose last
/// rule (any non-JSON 403 is the gateway throttling) would otherwise swallow it.
fn permission_reason(headers: &HeaderMap, body: &[u8], json_object: bool) -> Option<String> {
    if let Some(v) = headers
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        && v.contains("insufficient_scope")
    {
        // The `scope="..."` parameter names what is missing: scope names, never PHI.
        let scope = v
            .split("scope=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        return Some(format!("insufficient_scope (needs {scope})"));
    }
    if let Some(code) = headers
        .get("x-mashery-error-code")
        .and_then(|v| v.to_str().ok())
        && !code.contains("OVER_QPS")
        && !code.contains("OVER_RATE")
    {
        return Some(format!("X-Mashery-Error-Code {code}"));
    }
    if json_object {
        return None;
    }
    let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
    if THROTTLE_MARKERS.iter().any(|m| lower.contains(m)) {
        return None;
    }
    PERMISSION_MARKERS
        .iter()
        .find(|m| lower.contains(*m))
        .map(|m| format!("body marker '{m}'"))
}

/// Why a 403 looks like a throttle rather than a business refusal, if it does.
fn throttle_reason(headers: &HeaderMap, body: &[u8], json_object: bool) -> Option<String> {
    if let Some(v) = headers.get("x-mashery-error-code") {
        return Some(format!(
            "X-Mashery-Error-Code {}",
            v.to_str().unwrap_or("?")
        ));
    }
    if headers.contains_key(http::header::RETRY_AFTER) {
        return Some("Retry-After on 403".into());
    }
    if headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        == Some("0")
    {
        return Some("X-RateLimit-Remaining: 0".into());
    }
    let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
    if let Some(m) = THROTTLE_MARKERS.iter().find(|m| lower.contains(*m)) {
        return Some(format!("body marker '{m}'"));
    }
    if !json_object {
        return Some("403 without JSON body (gateway)".into());
    }
    None
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// athena wraps some answers in a one-element array; look at the first object either way.
fn first_object(v: &serde_json::Value) -> Option<&serde_json::Map<String, serde_json::Value>> {
    match v {
        serde_json::Value::Object(o) => Some(o),
        serde_json::Value::Array(a) => a.first().and_then(|f| f.as_object()),
        _ => None,
    }
}

fn text_field(o: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match o.get(key)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::String(_) => None,
        other => Some(other.to_string()),
    }
}

fn string_list(o: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<String> {
    match o.get(key) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => {
            s.split(',').map(|s| s.trim().to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn class_of(
        status: u16,
        headers: &[(&'static str, &str)],
        body: &str,
        write: bool,
    ) -> Option<ErrorClass> {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &h(headers),
            body.as_bytes(),
            write,
        )
        .err()
        .map(|e| e.class())
    }

    #[test]
    fn classification_table() {
        let rl = |s| {
            Some(ErrorClass::RateLimited {
                retry_after: Some(Duration::from_secs(s)),
            })
        };
        let rl_none = Some(ErrorClass::RateLimited { retry_after: None });
        type Case<'a> = (
            u16,
            Vec<(&'static str, &'a str)>,
            &'a str,
            bool,
            Option<ErrorClass>,
        );
        let cases: Vec<Case> = vec![
            (200, vec![], r#"{"patients":[]}"#, false, None),
            (
                200,
                vec![],
                r#"{"success":true,"claimids":["1"],"errormessage":""}"#,
                true,
                None,
            ),
            (200, vec![], r#"[{"patientid":"5309"}]"#, true, None),
            (429, vec![("retry-after", "1")], "", false, rl(1)),
            (429, vec![], "{}", true, rl_none),
            (403, vec![], "<h1>Developer Over Qps</h1>", false, rl_none),
            (403, vec![], "", false, rl_none),
            (
                403,
                vec![(
                    "www-authenticate",
                    "Bearer error=\"insufficient_scope\", scope=\"system/Patient.read\"",
                )],
                "<h1>Not Authorized</h1>",
                false,
                Some(ErrorClass::Fatal),
            ),
            (
                403,
                vec![("x-mashery-error-code", "ERR_403_NOT_AUTHORIZED")],
                "<h1>Not Authorized</h1>",
                false,
                Some(ErrorClass::Fatal),
            ),
            (
                403,
                vec![],
                "<h1>Not Authorized</h1>",
                true,
                Some(ErrorClass::Fatal),
            ),
            (
                403,
                vec![("x-mashery-error-code", "ERR_403_DEVELOPER_OVER_RATE")],
                r#"{"error":"x"}"#,
                false,
                rl_none,
            ),
            (
                403,
                vec![("retry-after", "7")],
                r#"{"error":"slow down"}"#,
                false,
                rl(7),
            ),
            (
                403,
                vec![],
                r#"{"error":"Developer Over Qps"}"#,
                false,
                rl_none,
            ),
            (
                403,
                vec![],
                r#"{"error":"Changed messages require setup (subscription) that has not been done."}"#,
                false,
                Some(ErrorClass::Permanent),
            ),
            (500, vec![], "", false, Some(ErrorClass::Retriable)),
            (502, vec![], "<html>", true, Some(ErrorClass::Retriable)),
            (503, vec![], "", false, Some(ErrorClass::Retriable)),
            (408, vec![], "", false, Some(ErrorClass::Retriable)),
            (
                200,
                vec![],
                r#"{"success":"false","errormessage":"Submitted snomedcode of '0' is not valid."}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
            (
                200,
                vec![],
                r#"{"success":false,"errormessage":"already frozen"}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
            (
                200,
                vec![],
                r#"{"error":"nope"}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
            (200, vec![], r#"{"error":"nope"}"#, false, None),
            (
                400,
                vec![],
                r#"{"invalidfields":[],"missingfields":["lastname","dob","firstname"],"error":"Additional fields are required."}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
            (
                409,
                vec![],
                r#"{"error":"That appointment time was already booked or not available for booking."}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
            (
                404,
                vec![],
                r#"{"error":"Invalid practice."}"#,
                false,
                Some(ErrorClass::Permanent),
            ),
            (
                401,
                vec![],
                r#"{"error":"Unauthorized"}"#,
                false,
                Some(ErrorClass::Fatal),
            ),
            (
                422,
                vec![],
                r#"{"error":"x"}"#,
                true,
                Some(ErrorClass::Permanent),
            ),
        ];
        for (status, headers, body, write, want) in cases {
            assert_eq!(
                class_of(status, &headers, body, write),
                want,
                "status {status} body {body}"
            );
        }
    }

    #[test]
    fn variants_are_specific() {
        let e = classify(
            StatusCode::CONFLICT,
            &HeaderMap::new(),
            br#"{"error":"taken"}"#,
            true,
        )
        .unwrap_err();
        assert!(matches!(e, Error::SlotTaken { .. }));
        let e = classify(StatusCode::NOT_FOUND, &HeaderMap::new(), b"", false).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }));
        let e = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"missingfields":["dob"],"error":"x"}"#,
            true,
        )
        .unwrap_err();
        match e {
            Error::Validation { missing_fields, .. } => {
                assert_eq!(missing_fields, vec!["dob".to_string()])
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = classify(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"error":"Changed messages require setup"}"#,
            false,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Business { status: 403, .. }));
    }

    #[test]
    fn write_failures_are_ambiguous_only_via_wrapping() {
        let inner = Error::Timeout;
        assert_eq!(inner.class(), ErrorClass::Retriable);
        let amb = Error::Ambiguous {
            method: "PUT".into(),
            route: "/v1/{practiceid}/appointments/{appointmentid}".into(),
            cause: Box::new(inner),
        };
        assert_eq!(amb.class(), ErrorClass::Ambiguous);
        assert_eq!(
            Error::config("retry.max_attempts", "must be >= 1").class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            Error::decode(
                "/r",
                &serde_json::from_str::<u8>("\"x\"").unwrap_err(),
                true
            )
            .class(),
            ErrorClass::Ambiguous
        );
    }

    #[test]
    fn decode_error_does_not_echo_values() {
        let e = serde_json::from_str::<u64>("\"Jane Sandboxtest\"").unwrap_err();
        let msg = Error::decode("/v1/{practiceid}/patients/{patientid}", &e, false).to_string();
        assert!(!msg.contains("Sandboxtest"), "{msg}");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(&h(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(&h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&h(&[("retry-after", "soon")])), None);
    }
}

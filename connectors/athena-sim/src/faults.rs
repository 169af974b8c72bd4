//! Scripted fault injection. Rules are matched in insertion order by method and path substring;
//! each match consumes one of the rule's `times` and the rule is dropped when it reaches zero.
//!
//! A "dropped connection" is produced by answering with a body stream that fails before its
//! first byte: hyper has only buffered the head at that point, so it aborts the connection
//! without sending anything and the client sees a connection error, not a status.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::state::SimState;

/// One scripted fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method to match (any case); `None` = any method.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the request path to match; `None` = any path.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// What to do instead of (or around) normal handling.
    pub fault: Fault,
    /// How many matching requests the rule applies to.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    /// A rule for every method and path, applied `times` times.
    pub fn new(fault: Fault, times: u32) -> Self {
        FaultRule {
            method: None,
            path_contains: None,
            fault,
            times,
        }
    }

    /// Restricts the rule to a method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Restricts the rule to paths containing `s`.
    pub fn path(mut self, s: &str) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|s| path.contains(s))
    }
}

/// What a fault does. JSON (admin endpoint): `{"status":{"code":500}}`, `{"latency":"2s"}`,
/// `"drop_connection"`, `"apply_then_drop"`, `"exhaust_quota"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer this status instead of handling (body defaults to an athena-style JSON error).
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u64>,
        /// Raw body; `None` = `{"error":"Simulated fault."}`.
        #[serde(default)]
        body: Option<String>,
    },
    /// Delay, then handle normally.
    Latency(#[serde(with = "humantime_serde")] Duration),
    /// Close the connection without a response; the write is NOT applied.
    DropConnection,
    /// Apply the write, then close the connection without a response.
    ApplyThenDrop,
    /// Answer as if the daily quota were exhausted (403/429 `ERR_403_DEVELOPER_OVER_RATE`,
    /// `X-RateLimit-Remaining: 0`) for this request.
    ExhaustQuota,
}

impl SimState {
    /// Takes the first matching rule's fault, consuming one use.
    pub(crate) fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = self.inner.faults.lock();
        let i = faults.iter().position(|r| r.matches(method, path))?;
        let fault = faults[i].fault.clone();
        faults[i].times -= 1;
        if faults[i].times == 0 {
            faults.remove(i);
        }
        Some(fault)
    }
}

/// A response whose body fails before the first byte, making hyper abort the connection.
pub fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated drop",
        ))
    });
    Response::new(Body::from_stream(stream))
}

/// Middleware applying scripted faults to every non-admin route.
pub async fn fault_layer(State(state): State<SimState>, req: Request, next: Next) -> Response {
    let fault = state.take_fault(req.method().as_str(), req.uri().path());
    let Some(fault) = fault else {
        return next.run(req).await;
    };
    tracing::info!(method = %req.method(), path = req.uri().path(), ?fault, "Injecting fault.");
    match fault {
        Fault::Status {
            code,
            retry_after,
            body,
        } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match body {
                Some(b) => (status, b).into_response(),
                None => (
                    status,
                    axum::Json(serde_json::json!({"error": "Simulated fault."})),
                )
                    .into_response(),
            };
            if let Some(s) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(s));
            }
            resp
        }
        Fault::Latency(d) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Fault::DropConnection => dropped_connection(),
        Fault::ApplyThenDrop => {
            let _ = next.run(req).await;
            dropped_connection()
        }
        Fault::ExhaustQuota => {
            crate::guard::throttled(&state, crate::guard::Throttle::Rate, Some(0))
        }
    }
}

//! The API gateway in front of every `/v1` and `/fhir` route, in athena's order: bearer token
//! (401), scope (403, [`crate::scopes`]), per-second QPS bucket and daily quota (Mashery-style 403 or 429), then the practice id
//! (404 `Invalid practice.`). Also the outermost request counter that stamps `X-Request-Id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::json;

use crate::state::SimState;

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// Counts the request under its route template and adds athena's `X-Request-Id`.
pub async fn count_layer(State(state): State<SimState>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "<unmatched>".into());
    let method = req.method().as_str().to_string();
    *state
        .inner
        .counts
        .lock()
        .entry((method.clone(), template.clone()))
        .or_insert(0) += 1;
    let mut resp = next.run(req).await;
    // Route template only: the raw URI can carry names and dates of birth (bestmatch queries).
    tracing::debug!(
        method,
        route = template,
        status = resp.status().as_u16(),
        "Handled request."
    );
    // Observed format `rrt-…-gea1-…`; ours is recognisably simulated.
    let id = format!(
        "rrt-sim{:010}-gea1-{}",
        REQUEST_SEQ.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    /// Per-second limit.
    Qps,
    /// Daily quota.
    Rate,
}

/// The gateway's throttling answer: non-JSON body and Mashery error code (status 403 or 429).
pub fn throttled(state: &SimState, kind: Throttle, remaining: Option<u64>) -> Response {
    let cfg = state.config();
    let status = StatusCode::from_u16(cfg.throttle_status).unwrap_or(StatusCode::FORBIDDEN);
    let (code, body) = match kind {
        Throttle::Qps => ("ERR_403_DEVELOPER_OVER_QPS", "<h1>Developer Over Qps</h1>"),
        Throttle::Rate => (
            "ERR_403_DEVELOPER_OVER_RATE",
            "<h1>Developer Over Rate</h1>",
        ),
    };
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html")], body).into_response();
    let h = resp.headers_mut();
    h.insert("x-mashery-error-code", HeaderValue::from_static(code));
    h.insert("x-ratelimit-limit", HeaderValue::from(cfg.daily_quota));
    let remaining = remaining.unwrap_or_else(|| quota_remaining(state));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if let Some(s) = cfg.throttle_retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

fn quota_remaining(state: &SimState) -> u64 {
    let q = state.inner.quota.lock();
    state.config().daily_quota.saturating_sub(q.1)
}

fn unauthorized(body: Response) -> Response {
    let mut r = body;
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

/// Who sent a request, for the simulator's own records: the first 8 hex digits of the SHA-256 of
/// the access token it carried. Each client process fetches its own token, so this tells them
/// apart without keeping the token itself (a test reads it from the poll log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    fn of(token: &str) -> Caller {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(token.as_bytes());
        Caller(d[..4].iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Token check, throttling, quota and practice validation for API routes.
pub async fn api_guard(State(state): State<SimState>, mut req: Request, next: Next) -> Response {
    // 1. Bearer token.
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_string);
    let Some(token) = bearer else {
        // Guess: the gateway answers a missing key the Mashery way ("Developer Inactive" is what
        // athena's error reference says a missing bearer header typically yields), without JSON.
        return unauthorized(
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<h1>Developer Inactive</h1>",
            )
                .into_response(),
        );
    };
    let granted = {
        let tokens = state.inner.tokens.lock();
        tokens
            .get(&token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.scope.clone())
    };
    // Guess: an unknown or expired token reaches athena's OAuth check and gets a JSON 401.
    let Some(granted) = granted else {
        return unauthorized(
            axum::Json(json!({"error": "Unauthorized", "detailedmessage": "The access token is invalid or has expired."}))
                .into_response(),
        );
    };
    // 1b. Scopes, by the default per-route rule (any route, including ones added later).
    if let Some(needed) = crate::scopes::first_missing(
        &granted,
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
    ) {
        tracing::info!(needed, "Refused a request whose token lacks a scope.");
        return crate::scopes::forbidden(&needed);
    }
    req.extensions_mut().insert(Caller::of(&token));
    // 2. Per-second limit (token bucket refilled continuously, capacity = one second's worth).
    if let Some(qps) = state.config().qps_limit {
        let mut b = state.inner.qps.lock();
        let now = Instant::now();
        let cap = f64::from(qps.max(1));
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * cap).min(cap);
        b.last = now;
        if b.tokens < 1.0 {
            drop(b);
            state
                .inner
                .qps_throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return throttled(&state, Throttle::Qps, None);
        }
        b.tokens -= 1.0;
    }
    // 3. Daily quota, reset at 00:00 GMT.
    let remaining = {
        let mut q = state.inner.quota.lock();
        let today = Utc::now().date_naive();
        if q.0 != today {
            *q = (today, 0);
        }
        if q.1 >= state.config().daily_quota {
            None
        } else {
            q.1 += 1;
            Some(state.config().daily_quota - q.1)
        }
    };
    let Some(remaining) = remaining else {
        return throttled(&state, Throttle::Rate, Some(0));
    };
    // 4. Practice id of proprietary routes.
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v1/") {
        let seg = rest.split('/').next().unwrap_or("");
        let known = seg
            .parse::<u64>()
            .ok()
            .is_some_and(|p| state.config().practices.contains(&p));
        if !known {
            let mut r = (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "Invalid practice."})),
            )
                .into_response();
            add_quota_headers(&state, &mut r, remaining);
            return r;
        }
    }
    let mut resp = next.run(req).await;
    add_quota_headers(&state, &mut resp, remaining);
    resp
}

fn add_quota_headers(state: &SimState, resp: &mut Response, remaining: u64) {
    let h = resp.headers_mut();
    h.insert(
        "x-ratelimit-limit",
        HeaderValue::from(state.config().daily_quota),
    );
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
}

//! `POST /oauth2/v1/token`: the 2-legged client-credentials grant (§2.2), with its own
//! per-minute rate limit reported in `X-RateLimit-Limit`/`-Remaining`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use chrono::Utc;
use serde_json::json;

use crate::state::{IssuedToken, SimState};
use crate::util::Params;

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /oauth2/v1/token` — Basic auth + `grant_type=client_credentials&scope=…`.
pub async fn token(State(state): State<SimState>, headers: HeaderMap, params: Params) -> Response {
    state.inner.token_requests.fetch_add(1, Ordering::Relaxed);
    let cfg = state.config();
    let limit = cfg.token_rate_limit_per_minute;
    // Fixed window that resets at the top of each minute, as athena documents for token calls.
    let minute = Utc::now().timestamp().div_euclid(60);
    let (allowed, remaining) = {
        let mut w = state.inner.token_window.lock();
        if w.0 != minute {
            *w = (minute, 0);
        }
        if w.1 >= limit {
            (false, 0)
        } else {
            w.1 += 1;
            (true, limit - w.1)
        }
    };
    let mut resp = if !allowed {
        // Guess: the token endpoint is Okta-backed; Okta answers its rate limit with 429 and an
        // `E0000047` JSON body, so we do that rather than the Mashery 403 of API routes.
        let secs_left = 60 - Utc::now().timestamp().rem_euclid(60);
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs_left));
        r
    } else {
        grant(&state, &headers, &params)
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    resp
}

fn grant(state: &SimState, headers: &HeaderMap, params: &Params) -> Response {
    let cfg = state.config();
    let creds_ok = basic_credentials(headers)
        .is_some_and(|(id, secret)| id == cfg.client_id && secret == cfg.client_secret);
    if !creds_ok {
        tracing::info!("Rejected token request with invalid client credentials.");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "The client secret supplied for a confidential client is invalid."})),
        )
            .into_response();
    }
    if params.get("grant_type") != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type", "error_description": "The authorization grant type is not supported by the authorization server."})),
        )
            .into_response();
    }
    let Some(scope) = params.get("scope") else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "access_denied", "detailedmessage": "Policy evaluation failed for this request, please check the policy configurations."})),
        )
            .into_response();
    };
    // athena grants what the app was given in the Developer Console, which may be less than
    // asked for; `withheld_scopes` plays an app that lacks some.
    let withheld = state.inner.withheld_scopes.lock().clone();
    let granted: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !withheld.iter().any(|w| w == s))
        .collect();
    let scope = granted.join(" ");
    let scope = scope.as_str();
    let token = format!("sim-{}", uuid::Uuid::new_v4().simple());
    state.inner.tokens.lock().insert(
        token.clone(),
        IssuedToken {
            expires: Instant::now() + cfg.token_ttl,
            scope: scope.to_string(),
        },
    );
    // athena has been seen sending `expires_in` as a string; always do so, so clients must cope.
    // Round up so a sub-second test ttl is not advertised as "0".
    let ttl = cfg.token_ttl.as_millis().div_ceil(1000).max(1);
    axum::Json(json!({
        "access_token": token,
        "expires_in": ttl.to_string(),
        "token_type": "Bearer",
        "scope": scope,
    }))
    .into_response()
}

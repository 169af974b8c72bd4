//! OAuth 2.0 client-credentials tokens: fetch, cache, refresh ahead of expiry, refresh once after a 401.
//!
//! One [`TokenManager`] per client. The cached token lives behind a `tokio::sync::Mutex`; whoever finds it
//! missing or about to expire refreshes it *while holding the lock*, so concurrent callers wait for that single
//! in-flight refresh and then re-check (check-after-lock) instead of each fetching their own. athena allows only
//! 5 token requests per minute in preview, so every grant also passes the limiter's token budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::error::{Error, classify};
use crate::model::de;
use crate::transport::rate_limit::RateLimiter;

/// A bearer token with its local expiry.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) secret: SecretString,
    /// When to refresh proactively: expiry minus the margin (at most half the lifetime, so short-lived
    /// tokens are not refreshed on every call).
    pub(crate) refresh_at: Instant,
    /// Increments per grant, so a 401 can tell whether the token it used is still the cached one.
    pub(crate) generation: u64,
    /// The scopes athena granted (its `scope` answer, space-separated), when it sent them.
    pub(crate) scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    /// Observed both as a number and as a string (`"3600"`).
    #[serde(default, deserialize_with = "de::opt_u64_lenient")]
    expires_in: Option<u64>,
    /// The granted scopes (space-separated); athena may grant fewer than were requested.
    #[serde(default)]
    scope: Option<String>,
}

/// Fetches and caches access tokens for one client id.
pub(crate) struct TokenManager {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    scope: String,
    margin: Duration,
    limiter: Arc<RateLimiter>,
    cached: Mutex<Option<Token>>,
    generation: AtomicU64,
    grants: AtomicU64,
}

impl TokenManager {
    pub(crate) fn new(
        http: reqwest::Client,
        token_url: Url,
        client_id: String,
        client_secret: SecretString,
        scopes: &[String],
        margin: Duration,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        TokenManager {
            http,
            token_url,
            client_id,
            client_secret,
            scope: scopes.join(" "),
            margin,
            limiter,
            cached: Mutex::new(None),
            generation: AtomicU64::new(0),
            grants: AtomicU64::new(0),
        }
    }

    /// The scopes this manager requests (space-separated).
    pub(crate) fn requested_scope(&self) -> &str {
        &self.scope
    }

    /// How many token grants this manager requested (for stats and tests).
    pub(crate) fn grants(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }

    /// A valid token, refreshing first if it expires within the margin.
    pub(crate) async fn token(&self) -> Result<Token, Error> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && t.refresh_at > Instant::now()
        {
            return Ok(t.clone());
        }
        let t = self.fetch().await?;
        *cached = Some(t.clone());
        Ok(t)
    }

    /// athena answered 401 to a request made with `used`: replace that token unless someone already did.
    pub(crate) async fn refresh_after_401(&self, used: &Token) -> Result<Token, Error> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && t.generation != used.generation
            && t.refresh_at > Instant::now()
        {
            return Ok(t.clone());
        }
        *cached = None;
        let t = self.fetch().await?;
        *cached = Some(t.clone());
        Ok(t)
    }

    async fn fetch(&self) -> Result<Token, Error> {
        self.limiter.acquire_token_grant().await;
        self.grants.fetch_add(1, Ordering::Relaxed);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            self.client_secret.expose_secret()
        ));
        let started = Instant::now();
        let resp = self
            .http
            .post(self.token_url.clone())
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", self.scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| Error::from_reqwest(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| Error::from_reqwest(&e))?;
        // The token endpoint's X-RateLimit-* headers describe the per-minute token budget, not the daily
        // API quota, so they are deliberately NOT fed to the limiter's quota snapshot.
        if let Err(e) = classify(status, &headers, &body, false) {
            tracing::warn!(http.status_code = status.as_u16(), error = %e, "Token request failed.");
            return Err(match e {
                // A 400/403 business answer from the token endpoint means bad credentials or scopes.
                Error::Business { status, message } => Error::Unauthorized { status, message },
                Error::Validation { message, .. } => Error::Unauthorized {
                    status: 400,
                    message,
                },
                other => other,
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::decode("/oauth2/v1/token", &e, false))?;
        let ttl = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            ttl_secs = ttl.as_secs(),
            generation,
            "Obtained athena access token."
        );
        let margin = self.margin.min(ttl / 2);
        Ok(Token {
            secret: parsed.access_token,
            refresh_at: started + ttl - margin,
            generation,
            scope: parsed.scope,
        })
    }
}

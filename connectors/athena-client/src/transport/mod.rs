//! The HTTP transport every API call goes through.
//!
//! Order of layers for one call (redpanda-connect style: policy around the transport, not inside endpoints):
//! rate limiter (per API key, fair per practice) -> bearer token -> `X-Request-Id` (uuid v4) -> send with
//! timeout -> [`crate::error::classify`] -> retry policy -> lenient decoding (in the API modules).
//!
//! Retry policy: only `Retriable` and `RateLimited` failures are retried, at most `retry.max_attempts` attempts
//! in total, with full-jitter exponential backoff; `RateLimited` pauses the shared limiter for `Retry-After`
//! (capped) so every caller slows down. A 401 refreshes the token once and repeats the request once (athena did
//! not process it, so this is safe for writes too). A non-idempotent request that failed after it may have
//! reached athena (timeout, reset, 5xx) becomes [`Error::Ambiguous`] and is never retried.
//!
//! Each call runs in a `tracing` span `athena_request`, exported as an OpenTelemetry HTTP client span
//! `<method> <route template>` with `http.request.method`, `url.template` (the route template, never the
//! concrete URL), `server.address`, `server.port`, `http.response.status_code`, `attempt` and athena's
//! `X-Request-Id`.
//!
//! Metrics: the client knows no Prometheus (and no Kafka). A process that exports metrics installs one
//! [`RequestObserver`] ([`crate::AthenaClient::set_observer`]); the transport tells it every attempt (route
//! template, status class, time to the response headers), every throttle and every quota header, as they
//! happen and whatever the log level.

pub mod rate_limit;
pub mod retry;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use tracing::{Instrument, field::Empty};
use url::Url;

use crate::auth::{Token, TokenManager};
use crate::config::RetryConfig;
use crate::error::{Error, ErrorClass, classify};
use rate_limit::RateLimiter;

/// One logical API call (possibly several attempts).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Route template for spans and metrics, e.g. `/v1/{practiceid}/appointments/{appointmentid}`.
    pub(crate) route: Cow<'static, str>,
    pub(crate) url: Url,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) form: Option<Vec<(String, String)>>,
    /// A JSON body (FHIR writes such as `POST /Subscription`); mutually exclusive with `form`.
    pub(crate) json: Option<serde_json::Value>,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Rate-limiter lane: the practice id, or `""`.
    pub(crate) lane: String,
    /// Safe to repeat after an ambiguous failure.
    pub(crate) idempotent: bool,
    /// A write whose 2xx body must be checked for `success:false` / `errormessage`.
    pub(crate) write: bool,
    /// Send the bearer token (false for pre-signed download URLs on foreign hosts).
    pub(crate) bearer: bool,
    /// Per-attempt timeout; `None` for streaming downloads (the client's read timeout still applies).
    pub(crate) timeout: Option<Duration>,
}

impl Call {
    /// A GET: idempotent, not a write.
    pub(crate) fn get(
        route: impl Into<Cow<'static, str>>,
        url: Url,
        lane: impl Into<String>,
    ) -> Self {
        Call {
            method: Method::GET,
            route: route.into(),
            url,
            query: Vec::new(),
            form: None,
            json: None,
            headers: Vec::new(),
            lane: lane.into(),
            idempotent: true,
            write: false,
            bearer: true,
            timeout: None,
        }
    }

    /// A write with a urlencoded form body. `idempotent` says whether repeating it is harmless.
    pub(crate) fn write(
        method: Method,
        route: impl Into<Cow<'static, str>>,
        url: Url,
        lane: impl Into<String>,
        form: Vec<(String, String)>,
        idempotent: bool,
    ) -> Self {
        Call {
            method,
            form: Some(form),
            idempotent,
            write: true,
            ..Call::get(route, url, lane)
        }
    }

    pub(crate) fn query(mut self, q: Vec<(String, String)>) -> Self {
        self.query = q;
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A buffered successful answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

enum Outcome {
    Buffered(Reply),
    Streaming(reqwest::Response),
}

/// One counter row: requests by method, route template and status class.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// HTTP method.
    pub method: String,
    /// Route template (bounded label set).
    pub route: String,
    /// `2xx`, `3xx`, `4xx`, `5xx` or `error` (no HTTP answer).
    pub status_class: &'static str,
}

/// What the transport tells an installed [`RequestObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// One HTTP attempt got its response headers, or failed without any.
    Request {
        /// HTTP method.
        method: &'a str,
        /// Route template (bounded label set), never the concrete URL.
        route: &'a str,
        /// `2xx`, `3xx`, `4xx`, `5xx` or `error` (no HTTP answer).
        status_class: &'static str,
        /// From sending to the response headers (or the failure).
        elapsed: Duration,
    },
    /// A response judged to be throttling (429, throttling 403), or a request refused locally
    /// because the daily quota is exhausted.
    Throttled,
    /// `X-RateLimit-Remaining` of an API (not token) response.
    QuotaRemaining(u64),
}

/// Receives the client's [`ClientEvent`]s (metrics export). Called on the request path: keep it
/// cheap and non-blocking.
pub trait RequestObserver: Send + Sync {
    /// One event.
    fn observe(&self, event: ClientEvent<'_>);
}

/// A snapshot of the client's counters, for export to Prometheus by the connector crates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    /// Attempts by method, route template and status class.
    pub requests: BTreeMap<RequestKey, u64>,
    /// Responses judged to be throttling (429, throttling 403).
    pub throttled: u64,
    /// Attempts repeated by the retry policy (excluding the one 401 refresh).
    pub retries: u64,
    /// Requests repeated after a token refresh triggered by a 401.
    pub auth_refreshes: u64,
    /// Writes that ended as `Ambiguous`.
    pub ambiguous: u64,
    /// Token grants requested from the token endpoint.
    pub token_requests: u64,
}

impl ClientStats {
    /// Total attempts for a route template (any method, any status).
    pub fn attempts(&self, route: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.route == route)
            .map(|(_, v)| *v)
            .sum()
    }
}

/// The transport shared by all clones of one `AthenaClient`.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) auth: TokenManager,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) retry: RetryConfig,
    pub(crate) request_timeout: Duration,
    stats: Mutex<ClientStats>,
    observer: OnceLock<Arc<dyn RequestObserver>>,
}

fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "error",
    }
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        auth: TokenManager,
        limiter: Arc<RateLimiter>,
        retry: RetryConfig,
        request_timeout: Duration,
    ) -> Self {
        Transport {
            http,
            auth,
            limiter,
            retry,
            request_timeout,
            stats: Mutex::new(ClientStats::default()),
            observer: OnceLock::new(),
        }
    }

    /// Installs `observer`; false when one is installed already (the first one stays).
    pub(crate) fn set_observer(&self, observer: Arc<dyn RequestObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    fn notify(&self, event: ClientEvent<'_>) {
        if let Some(o) = self.observer.get() {
            o.observe(event);
        }
    }

    fn throttled(&self) {
        self.stats.lock().throttled += 1;
        self.notify(ClientEvent::Throttled);
    }

    pub(crate) fn stats(&self) -> ClientStats {
        let mut s = self.stats.lock().clone();
        s.token_requests = self.auth.grants();
        s
    }

    /// Send and buffer the whole answer.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, Error> {
        match self.run(call, false).await? {
            Outcome::Buffered(r) => Ok(r),
            Outcome::Streaming(_) => Err(Error::Internal(
                "streaming outcome for a buffered call".into(),
            )),
        }
    }

    /// Send and return the successful response with its body unread (for NDJSON downloads).
    pub(crate) async fn send_streaming(&self, call: &Call) -> Result<reqwest::Response, Error> {
        match self.run(call, true).await? {
            Outcome::Streaming(r) => Ok(r),
            Outcome::Buffered(_) => Err(Error::Internal(
                "buffered outcome for a streaming call".into(),
            )),
        }
    }

    async fn run(&self, call: &Call, stream: bool) -> Result<Outcome, Error> {
        // An OpenTelemetry HTTP client span (semantic conventions): named by method and route
        // template, never the concrete URL, whose path and query may carry patient data.
        let span = tracing::info_span!(
            "athena_request",
            otel.name = %format_args!("{} {}", call.method, call.route),
            otel.kind = "client",
            http.request.method = %call.method,
            url.template = %call.route,
            server.address = call.url.host_str().unwrap_or(""),
            server.port = call.url.port_or_known_default().map_or(0, i64::from),
            practice_id = %call.lane,
            http.response.status_code = Empty,
            attempt = Empty,
            athena.request_id = Empty,
        );
        self.run_inner(call, stream).instrument(span).await
    }

    async fn run_inner(&self, call: &Call, stream: bool) -> Result<Outcome, Error> {
        let max = self.retry.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        let mut fresh_token: Option<Token> = None;
        loop {
            attempt += 1;
            tracing::Span::current().record("attempt", attempt);
            if let Err(retry_after) = self.limiter.acquire(&call.lane).await {
                self.throttled();
                return Err(Error::QuotaExhausted { retry_after });
            }

            // Token problems happen before the API request is sent: never ambiguous.
            let token = if call.bearer {
                match fresh_token.take() {
                    Some(t) => Some(t),
                    None => match self.auth.token().await {
                        Ok(t) => Some(t),
                        Err(e) => match self.decide(call, e, attempt, max, true).await {
                            Some(e) => return Err(e),
                            None => continue,
                        },
                    },
                }
            } else {
                None
            };

            match self.attempt(call, token.as_ref(), stream).await {
                Ok(o) => return Ok(o),
                Err(Error::Unauthorized { .. }) if !refreshed && token.is_some() => {
                    refreshed = true;
                    attempt -= 1;
                    self.stats.lock().auth_refreshes += 1;
                    tracing::info!(
                        "athena answered 401; refreshing the token and repeating the request once."
                    );
                    let used = token.as_ref().expect("checked above");
                    match self.auth.refresh_after_401(used).await {
                        Ok(t) => fresh_token = Some(t),
                        // The token endpoint failed: nothing was sent to the API, so apply the normal
                        // policy as a pre-send failure (the next loop fetches a token again).
                        Err(e) => {
                            if let Some(e) = self.decide(call, e, attempt, max, true).await {
                                return Err(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    if let Some(e) = self.decide(call, e, attempt, max, false).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Apply the retry policy to a failed attempt: `None` = try again (after waiting), `Some` = give up.
    async fn decide(
        &self,
        call: &Call,
        e: Error,
        attempt: u32,
        max: u32,
        pre_send: bool,
    ) -> Option<Error> {
        let e = if !call.idempotent
            && !pre_send
            && e.class() == ErrorClass::Retriable
            && !e.is_pre_send()
        {
            self.stats.lock().ambiguous += 1;
            tracing::warn!(error = %e, "Write outcome unknown; not retrying (caller must reconcile).");
            return Some(Error::Ambiguous {
                method: call.method.to_string(),
                route: call.route.to_string(),
                cause: Box::new(e),
            });
        } else {
            e
        };
        let class = e.class();
        if let ErrorClass::RateLimited { .. } = class {
            self.throttled();
        }
        if attempt >= max {
            return Some(e);
        }
        let backoff = retry::full_jitter(&self.retry, attempt, &mut rand::rng());
        match class {
            ErrorClass::Retriable => {
                tracing::info!(error = %e, delay_ms = backoff.as_millis() as u64, "Retrying athena request.");
                self.stats.lock().retries += 1;
                tokio::time::sleep(backoff).await;
                None
            }
            ErrorClass::RateLimited { retry_after } => {
                // Pause everyone sharing the key; the next acquire() waits for the pause.
                let applied = self.limiter.pause_for(retry_after.unwrap_or(backoff));
                tracing::warn!(
                    pause_ms = applied.as_millis() as u64,
                    "athena throttled the request; pausing callers."
                );
                self.stats.lock().retries += 1;
                None
            }
            _ => Some(e),
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        token: Option<&Token>,
        stream: bool,
    ) -> Result<Outcome, Error> {
        let mut rb = self.http.request(call.method.clone(), call.url.clone());
        if let Some(t) = call.timeout.or(if stream {
            None
        } else {
            Some(self.request_timeout)
        }) {
            rb = rb.timeout(t);
        }
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if let Some(form) = &call.form {
            rb = rb.form(form);
        }
        if let Some(json) = &call.json {
            rb = rb.json(json);
        }
        for (k, v) in &call.headers {
            rb = rb.header(*k, v);
        }
        rb = rb.header("X-Request-Id", uuid::Uuid::new_v4().to_string());
        if let Some(t) = token {
            rb = rb.bearer_auth(t.secret.expose_secret());
        }
        let started = Instant::now();
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(call, "error", started.elapsed());
                return Err(Error::from_reqwest(&e));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let span = tracing::Span::current();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            span.record("athena.request_id", id);
        }
        self.count(call, status_class(status), started.elapsed());
        if call.bearer
            && let Some(remaining) = self.limiter.observe(&headers)
        {
            self.notify(ClientEvent::QuotaRemaining(remaining));
        }
        if stream && status.is_success() {
            return Ok(Outcome::Streaming(resp));
        }
        let body = resp.bytes().await.map_err(|e| Error::from_reqwest(&e))?;
        classify(status, &headers, &body, call.write)?;
        Ok(Outcome::Buffered(Reply {
            status,
            headers,
            body,
        }))
    }

    fn count(&self, call: &Call, class: &'static str, elapsed: Duration) {
        let key = RequestKey {
            method: call.method.to_string(),
            route: call.route.to_string(),
            status_class: class,
        };
        *self.stats.lock().requests.entry(key).or_default() += 1;
        self.notify(ClientEvent::Request {
            method: call.method.as_str(),
            route: &call.route,
            status_class: class,
            elapsed,
        });
    }
}

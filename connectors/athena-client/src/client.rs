//! [`AthenaClient`] (one per app credential, cheap to clone) and [`PracticeClient`] (one practice's view).
//!
//! URL layout: token `{base}/oauth2/v1/token`, proprietary `{base}/v1/{practiceid}/...`, FHIR
//! `{base}/fhir/r4/...`. Path segments are pushed through `url`'s segment API, so ids are always encoded
//! and the FHIR base never loses its `r4` (the trailing-slash trap).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::Method;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::TokenManager;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::transport::rate_limit::{QuotaSnapshot, RateLimiter};
use crate::transport::{Call, ClientStats, Reply, Transport};

/// An athenaOne practice id (the first path segment of every proprietary call), e.g. 195900.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PracticeId(pub u64);

impl fmt::Display for PracticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for PracticeId {
    fn from(v: u64) -> Self {
        PracticeId(v)
    }
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) transport: Transport,
}

/// The athenahealth client. Cheap to clone (an `Arc` inside); clones share token cache, stats and limiter.
/// Every client with the same `base_url` + `client_id` in this process also shares one rate limiter.
#[derive(Clone)]
pub struct AthenaClient {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for AthenaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AthenaClient")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl AthenaClient {
    /// Validate the config and build the client. No I/O happens here (the first call fetches a token).
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.request_timeout)
            .user_agent(concat!("athena-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("could not build HTTP client: {e}")))?;
        let key = format!(
            "{}|{}",
            config.base_url.as_str().trim_end_matches('/'),
            config.client_id
        );
        let limiter = RateLimiter::shared(&key, &config.rate_limit);
        let token_url = join(&config.base_url, &["oauth2", "v1", "token"]);
        let auth = TokenManager::new(
            http.clone(),
            token_url,
            config.client_id.clone(),
            config.client_secret.clone(),
            &config.scopes,
            config.token_refresh_margin,
            limiter.clone(),
        );
        let transport = Transport::new(
            http,
            auth,
            limiter,
            config.retry.clone(),
            config.request_timeout,
        );
        Ok(AthenaClient {
            inner: Arc::new(Inner { config, transport }),
        })
    }

    /// The view of one practice; all proprietary endpoints hang off it.
    pub fn practice(&self, practice_id: impl Into<PracticeId>) -> PracticeClient {
        PracticeClient {
            client: self.clone(),
            practice: practice_id.into(),
        }
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Counters for metrics export.
    pub fn stats(&self) -> ClientStats {
        self.inner.transport.stats()
    }

    /// Installs the observer of every request, throttle and quota header of this client and
    /// all its clones (metrics export); false when one is installed already (the first stays).
    pub fn set_observer(&self, observer: std::sync::Arc<dyn crate::RequestObserver>) -> bool {
        self.inner.transport.set_observer(observer)
    }

    /// Limits this process to `share` of the key's `rate_limit` (see
    /// [`RateLimiter::set_share`]); shared by every client of the same key.
    pub fn set_rate_share(&self, share: f64) {
        self.inner.transport.limiter.set_share(share);
    }

    /// The requests per second the shared limiter currently allows.
    pub fn rate(&self) -> f64 {
        self.inner.transport.limiter.rate()
    }

    /// The latest `X-RateLimit-*` quota headers seen by the shared limiter.
    pub fn quota(&self) -> QuotaSnapshot {
        self.inner.transport.limiter.quota()
    }

    /// Fetch a token now (health checks: proves credentials and scopes without touching patient data).
    pub async fn check_credentials(&self) -> Result<(), Error> {
        self.inner.transport.auth.token().await.map(|_| ())
    }

    /// The scopes the current token was granted (athena's `scope` answer of the token grant),
    /// or the requested ones when athena did not say. Fetches a token if none is cached.
    pub async fn granted_scopes(&self) -> Result<Vec<String>, Error> {
        let auth = &self.inner.transport.auth;
        let token = auth.token().await?;
        let granted = token
            .scope
            .as_deref()
            .unwrap_or_else(|| auth.requested_scope());
        Ok(granted.split_whitespace().map(str::to_owned).collect())
    }

    /// `{base}/<segments...>` with each segment encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        join(&self.inner.config.base_url, segments)
    }

    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, Error> {
        self.inner.transport.send(call).await
    }

    pub(crate) async fn send_streaming(&self, call: &Call) -> Result<reqwest::Response, Error> {
        self.inner.transport.send_streaming(call).await
    }

    /// Send and decode the body as `T` (JSON); decode errors never quote the payload.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T, Error> {
        let reply = self.send(call).await?;
        decode(&call.route, &reply.body, call.write)
    }
}

/// Decode a body leniently-but-strictly-typed, mapping errors without echoing values.
pub(crate) fn decode<T: DeserializeOwned>(
    route: &str,
    body: &[u8],
    write: bool,
) -> Result<T, Error> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Error::decode(route, &e, write))
}

/// Decode a `serde_json::Value` into `T`, mapping errors without echoing values.
pub(crate) fn from_value<T: DeserializeOwned>(
    route: &str,
    v: serde_json::Value,
    write: bool,
) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::decode(route, &e, write))
}

fn join(base: &Url, segments: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty();
        segs.extend(segments);
    }
    u
}

/// One practice's view of the client: proprietary endpoints under `/v1/{practiceid}`.
#[derive(Clone, Debug)]
pub struct PracticeClient {
    pub(crate) client: AthenaClient,
    pub(crate) practice: PracticeId,
}

impl PracticeClient {
    /// The practice this view is bound to.
    pub fn practice_id(&self) -> PracticeId {
        self.practice
    }

    /// The underlying client.
    pub fn client(&self) -> &AthenaClient {
        &self.client
    }

    /// `{base}/v1/{practiceid}/<segments...>`.
    pub(crate) fn v1(&self, segments: &[&str]) -> Url {
        let pid = self.practice.to_string();
        let mut all: Vec<&str> = vec!["v1", &pid];
        all.extend_from_slice(segments);
        self.client.url(&all)
    }

    pub(crate) fn lane(&self) -> String {
        self.practice.to_string()
    }

    pub(crate) fn get(&self, route: impl Into<Cow<'static, str>>, segments: &[&str]) -> Call {
        Call::get(route, self.v1(segments), self.lane())
    }

    pub(crate) fn write(
        &self,
        method: Method,
        route: impl Into<Cow<'static, str>>,
        segments: &[&str],
        form: Vec<(String, String)>,
        idempotent: bool,
    ) -> Call {
        Call::write(
            method,
            route,
            self.v1(segments),
            self.lane(),
            form,
            idempotent,
        )
    }

    /// `GET /v1/{practiceid}/departments` — the practice's departments as athena sent them
    /// (`{"departments":[...]}`; a body without that list is [`Error::Decode`]). Safe to retry.
    pub async fn departments(&self) -> Result<Vec<serde_json::Value>, Error> {
        #[derive(serde::Deserialize)]
        struct Departments {
            departments: Vec<serde_json::Value>,
        }
        let route = "/v1/{practiceid}/departments";
        let v: serde_json::Value = self.client.json(&self.get(route, &["departments"])).await?;
        serde_json::from_value::<Departments>(v)
            .map(|d| d.departments)
            .map_err(|e| Error::decode(route, &e, false))
    }

    /// `GET /v1/{practiceid}/ping` — a cheap health probe.
    /// Safe to retry.
    pub async fn ping(&self) -> Result<(), Error> {
        self.client
            .send(&self.get("/v1/{practiceid}/ping", &["ping"]))
            .await
            .map(|_| ())
    }
}

/// A small builder for urlencoded form / query pairs; `None`s are skipped.
#[derive(Debug, Default, Clone)]
pub(crate) struct Form(pub(crate) Vec<(String, String)>);

impl Form {
    pub(crate) fn new() -> Self {
        Form(Vec::new())
    }
    pub(crate) fn put(mut self, k: &str, v: impl ToString) -> Self {
        self.0.push((k.to_owned(), v.to_string()));
        self
    }
    pub(crate) fn opt<V: ToString>(self, k: &str, v: Option<V>) -> Self {
        match v {
            Some(v) => self.put(k, v),
            None => self,
        }
    }
    pub(crate) fn list(self, k: &str, v: &[String]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(k, v.join(","))
        }
    }
    pub(crate) fn extend(mut self, extra: &[(String, String)]) -> Self {
        self.0.extend(extra.iter().cloned());
        self
    }
    pub(crate) fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    #[test]
    fn urls_are_joined_per_segment() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            join(&base, &["fhir", "r4", "Patient", "a-1.E-2"]).as_str(),
            "http://127.0.0.1:9/prefix/fhir/r4/Patient/a-1.E-2"
        );
        assert_eq!(
            join(&Environment::Preview.base_url(), &["v1", "195900", "ping"]).path(),
            "/v1/195900/ping"
        );
        assert_eq!(join(&base, &["v1", "a/b"]).path(), "/prefix/v1/a%2Fb");
    }
}

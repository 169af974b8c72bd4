//! Client configuration: endpoint, credentials, timeouts, retry and rate-limit settings.
//!
//! Deserialized from the connector's TOML with `deny_unknown_fields` and humantime durations ("30s").
//! [`ClientConfig::validate`] is pure (no I/O) and names the dotted key in its error.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::error::Error;

/// Preview (sandbox) base URL.
pub const PREVIEW_BASE_URL: &str = "https://api.preview.platform.athenahealth.com";
/// Production base URL.
pub const PRODUCTION_BASE_URL: &str = "https://api.platform.athenahealth.com";
/// Scope of the proprietary athenaOne API.
pub const DEFAULT_SCOPE: &str = "athena/service/Athenanet.MDP.*";

/// Which athena environment to talk to. Credentials are issued per environment and are not interchangeable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// `https://api.preview.platform.athenahealth.com` (sandbox, shared practice 195900).
    Preview,
    /// `https://api.platform.athenahealth.com`.
    Production,
    /// Any other host, e.g. the simulator.
    Custom(Url),
}

impl Environment {
    /// The base URL (scheme + host, no path) of this environment.
    pub fn base_url(&self) -> Url {
        match self {
            Environment::Preview => Url::parse(PREVIEW_BASE_URL).expect("constant URL"),
            Environment::Production => Url::parse(PRODUCTION_BASE_URL).expect("constant URL"),
            Environment::Custom(u) => u.clone(),
        }
    }
}

/// Everything the client needs. Field docs are the user docs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Base URL: scheme + host (+ optional path prefix). Token, `/v1/...` and `/fhir/r4/...` are joined to it.
    /// Default: the preview sandbox.
    #[serde(default = "default_base_url")]
    pub base_url: Url,
    /// OAuth client id (not secret; used as part of the rate-limit key).
    pub client_id: String,
    /// OAuth client secret. Never printed.
    pub client_secret: SecretString,
    /// Scopes requested with the client-credentials grant (space-joined).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Timeout of one HTTP attempt, from send to the end of the body.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Timeout of establishing the TCP/TLS connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retry policy for Retriable and RateLimited failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Client-side rate limiting, shared by every client with the same base URL and client id.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Refresh the access token this long before it expires.
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub token_refresh_margin: Duration,
    /// Allow a plain-`http` base URL on a host other than loopback, and the simulator's
    /// well-known credentials there: only for a simulator on a container network (docker
    /// compose). Never for athena; validation refuses both otherwise.
    #[serde(default)]
    pub allow_insecure: bool,
}

/// The simulator's well-known client secret: refused for any non-loopback athena unless
/// `allow_insecure` is set, so a missing `ATHENA_CLIENT_SECRET` cannot send it to athena.
pub const SIMULATOR_SECRET: &str = "sim-secret";

/// Whether `url` points at this machine (127.0.0.0/8, `::1` or `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Exponential backoff with full jitter: attempt n waits `random(0, min(cap, base * 2^(n-1)))`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts including the first (1 = no retries).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff base.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub base: Duration,
    /// Backoff cap.
    #[serde(default = "default_backoff_cap", with = "humantime_serde")]
    pub cap: Duration,
}

/// Token-bucket settings. athena's quota is per app (API key), so one limiter serves all practices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained API requests per second (preview ~15, production ~150; be conservative).
    #[serde(default = "default_qps")]
    pub qps: f64,
    /// Bucket size: requests allowed back to back.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Upper bound on how long one `Retry-After` may pause callers.
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Token-endpoint budget per minute (preview 5, production 50).
    #[serde(default = "default_token_rpm")]
    pub token_requests_per_minute: u32,
    /// When the daily quota is exhausted (`X-RateLimit-Remaining: 0`) callers pause until 00:00 GMT,
    /// but never longer than this in one go (they then probe again).
    #[serde(default = "default_quota_pause_cap", with = "humantime_serde")]
    pub quota_pause_cap: Duration,
}

fn default_base_url() -> Url {
    Environment::Preview.base_url()
}
fn default_scopes() -> Vec<String> {
    vec![DEFAULT_SCOPE.to_owned()]
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_cap() -> Duration {
    Duration::from_secs(30)
}
fn default_qps() -> f64 {
    5.0
}
fn default_burst() -> u32 {
    5
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(60)
}
fn default_token_rpm() -> u32 {
    5
}
fn default_quota_pause_cap() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            base: default_backoff_base(),
            cap: default_backoff_cap(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            qps: default_qps(),
            burst: default_burst(),
            max_retry_after: default_max_retry_after(),
            token_requests_per_minute: default_token_rpm(),
            quota_pause_cap: default_quota_pause_cap(),
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("scopes", &self.scopes)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .finish()
    }
}

impl ClientConfig {
    /// A config with defaults for everything but the environment and the credentials.
    pub fn new(
        environment: Environment,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        ClientConfig {
            base_url: environment.base_url(),
            client_id: client_id.into(),
            client_secret,
            scopes: default_scopes(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
            retry: RetryConfig::default(),
            rate_limit: RateLimitConfig::default(),
            token_refresh_margin: default_refresh_margin(),
            allow_insecure: false,
        }
    }

    /// Check the config without I/O. The error names the dotted key.
    pub fn validate(&self) -> Result<(), Error> {
        use secrecy::ExposeSecret;
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(Error::config("base_url", "must be an http or https URL"));
        }
        if self.base_url.host_str().is_none() || self.base_url.cannot_be_a_base() {
            return Err(Error::config("base_url", "must have a host"));
        }
        if self.base_url.query().is_some() || self.base_url.fragment().is_some() {
            return Err(Error::config(
                "base_url",
                "must not have a query or fragment",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(Error::config("client_id", "must not be empty"));
        }
        if self.client_secret.expose_secret().is_empty() {
            return Err(Error::config("client_secret", "must not be empty"));
        }
        if !self.allow_insecure && !is_loopback(&self.base_url) {
            if self.base_url.scheme() != "https" {
                return Err(Error::config(
                    "base_url",
                    "must be https for any host but loopback (allow_insecure = true only for a \
                     simulator on a container network)",
                ));
            }
            if self.client_secret.expose_secret() == SIMULATOR_SECRET {
                return Err(Error::config(
                    "client_secret",
                    "is the simulator's secret but base_url is not the local simulator; set the \
                     real secret (e.g. ATHENA_CLIENT_SECRET)",
                ));
            }
        }
        if self.scopes.is_empty()
            || self
                .scopes
                .iter()
                .any(|s| s.trim().is_empty() || s.contains(' '))
        {
            return Err(Error::config(
                "scopes",
                "must list at least one scope, each without spaces",
            ));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(Error::config("request_timeout", "must be at least 100ms"));
        }
        if self.connect_timeout < Duration::from_millis(100) {
            return Err(Error::config("connect_timeout", "must be at least 100ms"));
        }
        if self.retry.max_attempts == 0 || self.retry.max_attempts > 20 {
            return Err(Error::config(
                "retry.max_attempts",
                "must be between 1 and 20",
            ));
        }
        if self.retry.base.is_zero() {
            return Err(Error::config("retry.base", "must be greater than 0"));
        }
        if self.retry.cap < self.retry.base {
            return Err(Error::config("retry.cap", "must be at least retry.base"));
        }
        if !(self.rate_limit.qps.is_finite()
            && self.rate_limit.qps > 0.0
            && self.rate_limit.qps <= 10_000.0)
        {
            return Err(Error::config(
                "rate_limit.qps",
                "must be greater than 0 and at most 10000",
            ));
        }
        if self.rate_limit.burst == 0 {
            return Err(Error::config("rate_limit.burst", "must be at least 1"));
        }
        if self.rate_limit.max_retry_after.is_zero() {
            return Err(Error::config(
                "rate_limit.max_retry_after",
                "must be greater than 0",
            ));
        }
        if self.rate_limit.token_requests_per_minute == 0 {
            return Err(Error::config(
                "rate_limit.token_requests_per_minute",
                "must be at least 1",
            ));
        }
        if self.rate_limit.quota_pause_cap.is_zero() {
            return Err(Error::config(
                "rate_limit.quota_pause_cap",
                "must be greater than 0",
            ));
        }
        if self.token_refresh_margin >= Duration::from_secs(3000) {
            return Err(Error::config(
                "token_refresh_margin",
                "must be well below the 3600s token lifetime",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ClientConfig {
        ClientConfig::new(
            Environment::Preview,
            "id",
            SecretString::from("s3cr3t-value"),
        )
    }

    #[test]
    fn environments() {
        assert_eq!(
            Environment::Preview.base_url().as_str(),
            "https://api.preview.platform.athenahealth.com/"
        );
        assert_eq!(
            Environment::Production.base_url().as_str(),
            "https://api.platform.athenahealth.com/"
        );
    }

    #[test]
    fn parses_toml_like_json_with_humantime() {
        let c: ClientConfig = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:8080", "client_id": "a", "client_secret": "b",
            "request_timeout": "5s", "retry": {"max_attempts": 3, "base": "100ms"},
            "rate_limit": {"qps": 15.0}
        }))
        .unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.retry.cap, Duration::from_secs(30));
        assert_eq!(c.scopes, vec![DEFAULT_SCOPE]);
        c.validate().unwrap();
        let bad = serde_json::from_value::<ClientConfig>(
            serde_json::json!({"client_id":"a","client_secret":"b","nope":1}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn non_loopback_athena_needs_https_and_a_real_secret() {
        let custom = |url: &str, secret: &str| {
            ClientConfig::new(
                Environment::Custom(url.parse().unwrap()),
                "id",
                SecretString::from(secret.to_string()),
            )
        };
        custom("http://127.0.0.1:8089", SIMULATOR_SECRET)
            .validate()
            .unwrap();
        custom("http://localhost:8089", SIMULATOR_SECRET)
            .validate()
            .unwrap();
        let e = custom("http://athena.example.invalid", "real").validate();
        assert!(e.unwrap_err().to_string().contains("base_url"));
        let e = custom(PREVIEW_BASE_URL, SIMULATOR_SECRET).validate();
        assert!(e.unwrap_err().to_string().contains("client_secret"));
        let mut c = custom("http://athena-sim:8089", SIMULATOR_SECRET);
        c.allow_insecure = true;
        c.validate().unwrap();
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = base();
        c.retry.max_attempts = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("retry.max_attempts:")
        );
        let mut c = base();
        c.rate_limit.qps = 0.0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("rate_limit.qps:")
        );
        let mut c = base();
        c.client_secret = SecretString::from("");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("client_secret:")
        );
    }

    #[test]
    fn debug_hides_secret() {
        assert!(!format!("{:?}", base()).contains("s3cr3t"));
    }
}

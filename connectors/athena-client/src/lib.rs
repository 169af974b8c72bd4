//! athenahealth (athenaOne) REST + FHIR client for the athena-connect connectors. No Kafka in here.
//!
//! # Layout
//! * [`config`] — [`ClientConfig`] (serde, humantime, pure `validate()`), [`Environment`] presets.
//! * [`error`] — [`Error`], [`ErrorClass`] and [`classify`], the one place HTTP answers are interpreted.
//! * `auth` — client-credentials tokens: cached, refreshed ahead of expiry by a single in-flight refresh,
//!   refreshed once on a 401.
//! * [`transport`] — every call: rate limiter -> token -> `X-Request-Id` -> send -> classify -> retry
//!   (full-jitter backoff; writes are never retried on ambiguity); [`ClientStats`] counters and tracing spans
//!   labelled with route templates. [`transport::rate_limit`] is the per-API-key, practice-fair limiter.
//! * [`scopes`] — scope names and the one "granted covers needed" rule (decision 0022).
//! * [`model`] — lenient decoders (ids as string or number, `"true"`, one-element arrays, `MM/DD/YYYY`) and
//!   typed records that keep their raw JSON ([`model::Raw`]).
//! * [`api`] — endpoints, one file per area: changed feeds, patients, appointments, claims, payments,
//!   documents, insurances, FHIR, bulk export.
//!
//! ```no_run
//! # async fn demo() -> Result<(), athena_client::Error> {
//! use athena_client::{AthenaClient, ClientConfig, Environment, api::changed::{Feed, PollParams}};
//! let config = ClientConfig::new(Environment::Preview, "my-client-id", "my-secret".to_string().into());
//! let client = AthenaClient::new(config)?;
//! let page = client.practice(195900).poll_changed(Feed::Appointments, &PollParams::default()).await?;
//! println!("{} changed appointments", page.items.len());
//! # Ok(()) }
//! ```

pub mod api;
mod auth;
mod client;
pub mod config;
pub mod error;
pub mod model;
pub mod scopes;
pub mod transport;

pub use client::{AthenaClient, PracticeClient, PracticeId};
pub use config::{ClientConfig, Environment, RateLimitConfig, RetryConfig};
pub use error::{Error, ErrorClass, classify};
pub use transport::rate_limit::QuotaSnapshot;
pub use transport::{ClientEvent, ClientStats, RequestKey, RequestObserver};

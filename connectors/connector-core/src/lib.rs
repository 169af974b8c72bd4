//! Shared plumbing for the athena-connect connectors: everything that touches Kafka, the schema
//! registry, configuration and telemetry, and nothing that talks to athenahealth (that is the
//! `athena-client` crate).
//!
//! # Layout
//! - [`error`]: this crate's error enum and the [`ErrorClass`] every connector error maps to.
//! - [`secret`]: [`Secret`], a redacting secret that can come from the config, the environment
//!   or a file.
//! - [`config`]: loading one TOML file with `${VAR}` interpolation and `PREFIX__SECTION__KEY`
//!   environment overrides, deserialised with the failing dotted key named; the pure
//!   [`config::Validate`] step.
//! - [`kafka`]: [`kafka::KafkaConfig`] and the producer / consumer / admin builders with the
//!   delivery settings the connectors rely on (idempotent producer, `acks=all`, manual offset
//!   store), and topic creation.
//! - [`kafka_errors`]: the one classification of a librdkafka error into an [`ErrorClass`].
//! - [`produce`]: produce a batch and await every acknowledgement; the transactional commit
//!   (begin, produce, offsets, commit, abort).
//! - [`retry`]: the [`retry::Backoff`] policy (full jitter, capped, bounded) and the
//!   class-driven [`retry::retry`] loop.
//! - [`avro`]: the schema catalog built from `schemas/*.avsc`, Confluent wire framing, the
//!   [`avro::AvroCodec`] that encodes our structs and decodes anything a registry knows, and
//!   [`avro::RegistryClient`] for registration and compatibility settings.
//! - [`checkpoint`]: state (cursors, progress, ledgers) in a compacted topic.
//! - [`dlq`]: the dead-letter queue with Kafka Connect's `__connect.errors.*` headers and
//!   PHI redaction.
//! - [`http_server`]: the hardened HTTP server every listener uses (timeouts, connection and
//!   TLS-handshake caps, graceful shutdown with a deadline).
//! - [`headers`]: W3C trace context and CloudEvents attributes in Kafka headers.
//! - [`ids`]: deterministic event ids shared by every source path (the Rust mirrors of the
//!   contracts and the mapping to events are in the `athena-contracts` crate).
//! - [`emit`]: telemetry as events: the [`emit::InternalEvent`] trait whose `emit()` logs and
//!   counts one happening in one place.
//! - [`metrics`]: every Prometheus metric name and label set, in one place.
//! - [`runtime`]: the task lifecycle contract (shutdown, pause/resume, status) between the
//!   runner and each connector.
//! - [`telemetry`]: the `tracing` subscriber (pretty or JSON) and the optional OTLP exporter.

pub mod avro;
pub mod checkpoint;
pub mod config;
pub mod dlq;
pub mod emit;
pub mod error;
pub mod headers;
pub mod http_server;
pub mod ids;
pub mod kafka;
pub mod kafka_errors;
pub mod metrics;
pub mod produce;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod telemetry;

pub use error::{CoreError, ErrorClass};
pub use secret::Secret;

//! Errors of the shared plumbing, and the class each one falls into.
//!
//! Every connector crate maps its errors onto the same four classes so that the run loops can
//! decide uniformly: back off and retry, wait for a rate limit, give up on one message (result
//! topic or dead-letter topic), or stop with a clear message.

use std::time::Duration;

/// What a caller should do about an error. Classification lives in [`CoreError::class`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry with exponential backoff and full jitter, bounded.
    Retriable,
    /// The other side asked us to slow down; wait at least `retry_after` when given.
    RateLimited {
        /// How long the other side asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// This message or request can never succeed: route it to the result or dead-letter topic and
    /// move on.
    Permanent,
    /// Configuration, authentication or programming error: stop with a clear message.
    Fatal,
}

impl ErrorClass {
    /// A short, bounded name for metric labels (`errors_total{class=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Retriable => "retriable",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// Errors raised by `connector-core`.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file that was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is malformed or invalid; `key` is the dotted path of the offending key.
    #[error("invalid configuration at `{key}`: {message}")]
    Config {
        /// Dotted key, e.g. `kafka.bootstrap_servers`.
        key: String,
        /// What is wrong and, where useful, the allowed values.
        message: String,
    },
    /// A Kafka client operation failed.
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        /// What we were doing (e.g. `produce`, `create topics`).
        operation: &'static str,
        /// The librdkafka error.
        source: rdkafka::error::KafkaError,
    },
    /// The schema registry could not be reached or answered with a server error.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The schema registry refused a schema (incompatible, invalid) or does not know a subject.
    #[error("schema registry rejected the request: {0}")]
    RegistryRejected(String),
    /// A message is not in the Confluent wire format (no magic byte, too short).
    #[error("not Confluent wire format: {0}")]
    NotWireFormat(String),
    /// A message names a schema id the registry does not know.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// The Avro body does not match the writer schema, or the record is not the type we expected.
    #[error("avro decode failed: {0}")]
    Decode(String),
    /// A value could not be encoded with its schema (a bug: our structs mirror our schemas).
    #[error("avro encode failed: {0}")]
    Encode(String),
    /// A bundled schema file is invalid (a bug caught by the contract tests).
    #[error("invalid bundled schema {name}: {message}")]
    Schema {
        /// Schema name.
        name: String,
        /// Parser message.
        message: String,
    },
    /// Telemetry could not be initialised.
    #[error("telemetry setup failed: {0}")]
    Telemetry(String),
    /// A spawned task (blocking or async) panicked or was cancelled before it finished.
    #[error("{what} task {}", if *.panicked { "panicked" } else { "was cancelled" })]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// A panic (a bug: Fatal) rather than a cancellation (a shutdown or abort: Retriable).
        panicked: bool,
    },
}

impl CoreError {
    /// The one place where core errors are classified.
    pub fn class(&self) -> ErrorClass {
        match self {
            CoreError::ConfigRead { .. } | CoreError::Config { .. } => ErrorClass::Fatal,
            CoreError::Schema { .. } | CoreError::Encode(_) => ErrorClass::Fatal,
            CoreError::Telemetry(_) => ErrorClass::Fatal,
            CoreError::Task { panicked: true, .. } => ErrorClass::Fatal,
            CoreError::Task {
                panicked: false, ..
            } => ErrorClass::Retriable,
            CoreError::Kafka { source, .. } => crate::kafka_errors::classify(source),
            CoreError::RegistryUnavailable(_) => ErrorClass::Retriable,
            // A rejected schema will not become compatible by retrying: stop the feed.
            CoreError::RegistryRejected(_) => ErrorClass::Fatal,
            CoreError::NotWireFormat(_) | CoreError::UnknownSchemaId(_) | CoreError::Decode(_) => {
                ErrorClass::Permanent
            }
        }
    }

    /// The error of a spawned task that did not finish (`JoinHandle` returned a `JoinError`).
    pub fn task(what: &'static str, e: &tokio::task::JoinError) -> Self {
        CoreError::Task {
            what,
            panicked: e.is_panic(),
        }
    }

    /// Shorthand for a [`CoreError::Config`].
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn classes() {
        assert_eq!(CoreError::config("a.b", "bad").class(), ErrorClass::Fatal);
        assert_eq!(CoreError::UnknownSchemaId(7).class(), ErrorClass::Permanent);
        assert_eq!(
            CoreError::RegistryUnavailable("down".into()).class(),
            ErrorClass::Retriable
        );
        let timeout = CoreError::Kafka {
            operation: "produce",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        };
        assert_eq!(timeout.class(), ErrorClass::Retriable);
        let too_big = CoreError::Kafka {
            operation: "produce",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        };
        assert_eq!(too_big.class(), ErrorClass::Permanent);
        let fenced = CoreError::Kafka {
            operation: "produce",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced),
        };
        assert_eq!(fenced.class(), ErrorClass::Fatal);
    }

    #[tokio::test]
    async fn a_panicked_task_is_fatal_a_cancelled_one_retriable() {
        let panicked = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = CoreError::task("mapping", &panicked);
        assert_eq!(e.class(), ErrorClass::Fatal);
        assert_eq!(e.to_string(), "mapping task panicked");
        let h = tokio::spawn(std::future::pending::<()>());
        h.abort();
        let e = CoreError::task("delivery", &h.await.unwrap_err());
        assert_eq!(e.class(), ErrorClass::Retriable);
        assert_eq!(e.to_string(), "delivery task was cancelled");
    }

    #[test]
    fn config_error_names_key() {
        let e = CoreError::config("kafka.bootstrap_servers", "must not be empty");
        assert_eq!(
            e.to_string(),
            "invalid configuration at `kafka.bootstrap_servers`: must not be empty"
        );
    }
}

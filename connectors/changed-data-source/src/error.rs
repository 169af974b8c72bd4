//! This crate's errors and the one function that classes them.

use connector_core::ErrorClass;

/// Errors of the changed-data source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (the dotted key is named). Class: Fatal.
    #[error(transparent)]
    Config(connector_core::CoreError),
    /// Kafka, the registry or the state topic failed. Class: that of the core error.
    #[error(transparent)]
    Core(#[from] connector_core::CoreError),
    /// An event could not be encoded with its own schema (a bug). Class: Fatal.
    #[error("event encoding failed: {0}")]
    Encode(connector_core::CoreError),
    /// athena failed. Class: mapped from the client's class.
    #[error("athena: {0}")]
    Athena(#[from] athena_client::Error),
    /// A stored cursor is not valid JSON of the expected shape. Class: Fatal (never guess a
    /// cursor: an operator must look).
    #[error("cursor {key} is unreadable: {message}")]
    Cursor {
        /// Checkpoint key.
        key: String,
        /// Parser message (no record data in it).
        message: String,
    },
    /// The transactional producer was fenced by a newer instance with the same transactional id.
    /// Class: Fatal (this instance is a zombie and must stop).
    #[error("transactional producer fenced for {0}: another instance took over")]
    Fenced(String),
    /// A Kafka transaction failed. Class: Retriable (the transaction was aborted; the page is
    /// written again).
    #[error("kafka transaction failed during {operation}: {source}")]
    Transaction {
        /// What we were doing.
        operation: &'static str,
        /// The librdkafka error.
        source: rdkafka::error::KafkaError,
    },
}

impl Error {
    /// The one mapping from error to class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) | Error::Encode(_) | Error::Cursor { .. } | Error::Fenced(_) => {
                ErrorClass::Fatal
            }
            Error::Core(e) => e.class(),
            Error::Transaction { .. } => ErrorClass::Retriable,
            Error::Athena(e) => match e.class() {
                athena_client::ErrorClass::Retriable | athena_client::ErrorClass::Ambiguous => {
                    ErrorClass::Retriable
                }
                athena_client::ErrorClass::RateLimited { retry_after } => {
                    ErrorClass::RateLimited { retry_after }
                }
                athena_client::ErrorClass::Permanent => ErrorClass::Permanent,
                athena_client::ErrorClass::Fatal => ErrorClass::Fatal,
            },
        }
    }

    /// A short class name for metric labels.
    pub fn class_label(&self) -> &'static str {
        match self.class() {
            ErrorClass::Retriable => "retriable",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

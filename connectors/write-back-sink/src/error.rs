//! This crate's one error type and its mapping to [`ErrorClass`]. Only conditions the sink
//! cannot handle by itself leave [`crate::run`] as an `Err` (the class tells a supervisor
//! whether a restart may heal them): everything a single command can run into becomes that
//! command's `CommandResult` (or a dead letter) instead.

use connector_core::{CoreError, ErrorClass};

/// Everything that can stop the write-back sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration; `key` is the dotted key. Class: Fatal.
    #[error("{key}: {message}")]
    Config {
        /// Dotted config key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Kafka, registry or schema plumbing failed. Class: that error's class.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The athena client refused to work (bad credentials, configuration). Class: Fatal.
    #[error("athena: {0}")]
    Athena(#[from] athena_client::Error),
    /// A Kafka transaction could not be committed and cannot be retried (fenced by a newer
    /// instance with the same `transactional_id`, or a fatal producer error). Class: Fatal.
    #[error("transaction failed: {0}")]
    Transaction(String),
    /// A result transaction was aborted but the producer is usable (e.g. the consumer group's
    /// generation moved on during a rebalance, so the broker refused its offsets); the batch is
    /// recomputed and committed again. Class: Retriable.
    #[error("transaction aborted: {0}")]
    TransactionAborted(String),
    /// A result transaction failed and could not be aborted either (its commit timed out
    /// while Kafka was unreachable, say): the producer cannot begin another transaction, so the
    /// sink stops and the supervisor restarts it with a new one (uncommitted commands are read
    /// again and reconciled through the ledger). Class: Retriable.
    #[error("transaction stuck (the producer is restarted): {0}")]
    TransactionStuck(String),
    /// An undecodable message could not be written to the dead-letter topic within the bounded
    /// retries. Its offset is not committed (nothing is lost: a restart reads it again), and the
    /// sink stops instead of retrying forever. Class: Retriable (a restart may heal it).
    #[error(
        "could not write the dead letter of {topic}/{partition} offset {offset} after {attempts} attempts (the offset is not committed): {message}"
    )]
    DeadLetter {
        /// Source topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset of the undecodable message.
        offset: i64,
        /// Attempts made.
        attempts: u32,
        /// The last produce error.
        message: String,
    },
}

impl Error {
    /// The one mapping from error to class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config { .. } | Error::Transaction(_) | Error::Athena(_) => ErrorClass::Fatal,
            Error::Core(e) => e.class(),
            Error::TransactionAborted(_)
            | Error::TransactionStuck(_)
            | Error::DeadLetter { .. } => ErrorClass::Retriable,
        }
    }
}

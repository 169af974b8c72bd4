//! The sink's telemetry as events ([`InternalEvent`]): one struct per thing that happens, whose
//! `emit()` writes its log line and updates its metrics in one place. Call sites say what
//! happened; metric names and labels live here only.
//!
//! Fields are ids, names from fixed sets and counts: never a payload (PHI).

use std::time::Duration;

use connector_core::emit::InternalEvent;
use connector_core::metrics::{CommandLabels, ConnectorLabels, ErrorLabels, global};

use crate::error::Error;

/// A command got its final outcome (its result is built; it commits with the next
/// transaction). Counts `sink_commands_total{connector, command, outcome}` and observes
/// `sink_command_latency_seconds{connector}`.
#[derive(Debug)]
pub struct CommandFinished<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// The command's Avro record name.
    pub command: &'a str,
    /// `applied`, `duplicate`, `rejected` or `failed`.
    pub outcome: &'static str,
    /// athena write calls made for it by this run.
    pub attempts: i32,
    /// The result's error code, if any (a fixed set, PHI-free).
    pub error_code: Option<&'a str>,
    /// From receipt to outcome.
    pub duration: Duration,
}

impl InternalEvent for CommandFinished<'_> {
    fn emit(self) {
        let m = global();
        m.sink_commands
            .get_or_create(&CommandLabels {
                connector: self.connector.to_string(),
                command: self.command.to_string(),
                outcome: self.outcome.to_string(),
            })
            .inc();
        m.sink_command_latency_seconds
            .get_or_create(&ConnectorLabels {
                connector: self.connector.to_string(),
            })
            .observe(self.duration.as_secs_f64());
        tracing::info!(
            status = self.outcome,
            attempts = self.attempts,
            error_code = self.error_code.unwrap_or(""),
            "Command finished."
        );
    }
}

/// An athena call of a command failed (retries included: the counter measures how often
/// athena failed us, not how many commands failed). Counts `errors_total{connector, class}`;
/// the executor logs what it does about it.
#[derive(Debug)]
pub struct AthenaCallFailed<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// The error's class label (`retriable`, `rate_limited`, `ambiguous`, ...).
    pub class: &'static str,
}

impl InternalEvent for AthenaCallFailed<'_> {
    fn emit(self) {
        count_error(self.connector, self.class);
    }
}

/// The result transaction failed: aborted (retried at the next tick) or fatal (the sink
/// stops). Counts `errors_total{connector, class}`.
#[derive(Debug)]
pub struct CommitFailed<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// What failed.
    pub error: &'a Error,
}

impl InternalEvent for CommitFailed<'_> {
    fn emit(self) {
        count_error(self.connector, self.error.class().label());
        if matches!(self.error, Error::TransactionAborted(_)) {
            // Aborted; the same (recomputed) batch is tried again at the next tick.
            tracing::warn!(connector = self.connector, error = %self.error, "Result transaction aborted; retrying.");
        } else {
            tracing::error!(connector = self.connector, error = %self.error, "Result transaction failed.");
        }
    }
}

/// Results and offsets were committed in one transaction. Counts
/// `sink_offset_commits_total{connector}`.
#[derive(Debug)]
pub struct OffsetsCommitted<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// Records produced in the transaction.
    pub records: usize,
    /// From the start of the transaction to its commit.
    pub elapsed: std::time::Duration,
}

impl InternalEvent for OffsetsCommitted<'_> {
    fn emit(self) {
        global()
            .sink_offset_commits
            .get_or_create(&ConnectorLabels {
                connector: self.connector.to_string(),
            })
            .inc();
        tracing::debug!(
            records = self.records,
            elapsed_us = self.elapsed.as_micros() as u64,
            "Committed results and offsets."
        );
    }
}

/// A message could not be decoded as a command; it goes to the dead-letter queue (which counts
/// `dlq_produce_requests_total` once Kafka acknowledged it).
#[derive(Debug)]
pub struct DeadLettered<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// Where the message was read.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Why (PHI-redacted here).
    pub error: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(connector = self.connector, topic = self.topic, partition = self.partition,
            offset = self.offset, error = %connector_core::dlq::redact(self.error),
            "Undecodable command; sending it to the dead-letter queue.");
    }
}

/// The read-ahead bound (or an operator's pause) paused consumption.
#[derive(Debug)]
pub struct ReadAheadPaused<'a> {
    /// The sink's name.
    pub connector: &'a str,
    /// Messages read and not committed.
    pub buffered: usize,
    /// Their bytes.
    pub buffered_bytes: usize,
}

impl InternalEvent for ReadAheadPaused<'_> {
    fn emit(self) {
        tracing::info!(
            connector = self.connector,
            buffered = self.buffered,
            buffered_bytes = self.buffered_bytes,
            "Pausing partitions."
        );
    }
}

/// Consumption resumed after a pause.
#[derive(Debug)]
pub struct ReadAheadResumed {
    /// Messages read and not committed.
    pub buffered: usize,
    /// Their bytes.
    pub buffered_bytes: usize,
}

impl InternalEvent for ReadAheadResumed {
    fn emit(self) {
        tracing::info!(
            buffered = self.buffered,
            buffered_bytes = self.buffered_bytes,
            "Resuming partitions."
        );
    }
}

/// `errors_total{connector, class}`.
fn count_error(connector: &str, class: &str) {
    global()
        .errors
        .get_or_create(&ErrorLabels {
            connector: connector.to_string(),
            class: class.to_string(),
        })
        .inc();
}

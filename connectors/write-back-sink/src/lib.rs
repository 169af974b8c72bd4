//! The write-back sink: Avro commands from Kafka topics are performed against athenahealth and
//! answered with exactly one `CommandResult` each, without ever writing to athena twice.
//!
//! # Layout
//! - [`config`]: the `[sinks.write_back.<name>]` section.
//! - [`commands`]: one file per command (precheck, athena write, read-back, idempotency class:
//!   the [`commands::WriteBack`] trait, implemented for the command's Avro mirror in
//!   `athena_contracts::commands`), the one `commands!` table and the decoder that dispatches on
//!   the writer schema's record name.
//! - [`ledger`]: intents and outcomes keyed by `command_id`, over a [`ledger::LedgerStore`]
//!   (the compacted Kafka topic, or memory in tests).
//! - [`apply`]: the executor: precheck, intent, perform, retry by error class, reconciliation
//!   by read-back, outcome.
//! - `sink`: the consume loop, split into `ownership` (rebalance context, epochs, quiet
//!   hand-over), `partitions` (contiguous commit, read-ahead bound in messages and bytes),
//!   `worker` (one command, one dead letter), `commit` (the result transaction) and `run`.
//! - [`error`]: the crate's error enum and its class.
//! - [`telemetry`]: the sink's events (log line and metrics of each, in one place).
//!
//! Guarantees and failure modes: `docs/connectors/write-back-sink.md`.

pub mod apply;
pub mod commands;
pub mod config;
pub mod error;
pub mod ledger;
mod sink;
pub mod telemetry;

pub use config::{CardPaymentsConfig, Config};
pub use error::Error;
pub use sink::run;

/// The connector kind shown by the admin API.
pub const KIND: &str = "write-back-sink";

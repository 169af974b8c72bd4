//! The write-back sink: Avro commands from Kafka topics are performed against athenahealth and
//! answered with exactly one `CommandResult` each, without ever writing to athena twice.
//!
//! # Layout
//! - [`config`]: the `[sinks.write_back.<name>]` section.
//! - [`commands`]: Rust mirrors of the command schemas and the decoder that dispatches on the
//!   writer schema's record name.
//! - [`ledger`]: the compacted ledger topic of intents and outcomes, keyed by `command_id`.
//! - [`apply`]: performing one command, retry by error class, reconciliation by read-back.
//! - `sink`: the consume loop (per-key order, bounded concurrency, pause instead of blocking,
//!   results + ledger + offsets in one Kafka transaction, DLQ).
//! - [`error`]: the crate's error enum and its class.
//!
//! Guarantees and failure modes: `docs/connectors/write-back-sink.md`.

pub mod apply;
pub mod commands;
pub mod config;
pub mod error;
pub mod ledger;
mod sink;

pub use config::{CardPaymentsConfig, Config};
pub use error::Error;
pub use sink::run;

/// The connector kind shown by the admin API.
pub const KIND: &str = "write-back-sink";

//! The `athena-connect` command-line tool. The binary in `main.rs` only parses arguments and
//! maps outcomes to exit codes; the subcommands live here so tests can call them.
//!
//! # Layout
//! - [`config`]: the root TOML file (`[kafka]`, `[schema_registry]`, `[athena]`, `[telemetry]`,
//!   `[admin]`, one table per connector instance, `[backfill]`).
//! - [`connectors`]: the one place that wires each connector crate's `Config` + `run` in.
//! - [`supervisor`]: runs the connectors as tasks, restarts a failed one after a back-off
//!   (unless its error cannot heal); pause, resume, stop, restart, bounded shutdown.
//! - [`admin`]: the admin HTTP API (health, readiness, metrics, Connect-like control, offsets).
//! - [`lag`]: consumer lag per partition of the connectors that consume Kafka (metrics).
//! - [`offsets`]: where each connector's position lives; show and reset (only while stopped).
//! - [`run`]: `athena-connect run [--only NAME,...]` (signals, admin API, live summary), `check`, `offsets`.
//! - [`conformance`]: `athena-connect conformance [--writes]`, does athena still answer the
//!   way this config needs (decision 0022).
//! - [`subscriptions`]: `athena-connect subscriptions status|ensure|delete`, the push
//!   connectors' FHIR Subscriptions by hand.
//! - [`backfill`]: `athena-connect backfill`, the resumable FHIR Bulk `$export` from
//!   `[backfill]`.
//! - [`demo`]: `athena-connect demo-traffic`, synthetic commands for the demo's return path.
//! - [`sim`]: `athena-connect sim`, the simulator from the `athena-sim` crate.
//! - [`schemas`]: `athena-connect schemas register|check|list`, deploy-time registration of the
//!   bundled Avro contracts with `BACKWARD_TRANSITIVE` compatibility.
//! - [`exit`]: the documented exit codes.

pub mod admin;
pub mod backfill;
pub mod config;
pub mod conformance;
pub mod connectors;
pub mod demo;
pub mod exit;
pub mod lag;
pub mod offsets;
pub mod run;
pub mod schemas;
pub mod sim;
pub mod subscriptions;
pub mod supervisor;
pub mod telemetry;

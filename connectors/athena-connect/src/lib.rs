//! The `athena-connect` command-line tool. The binary in `main.rs` only parses arguments and
//! maps outcomes to exit codes; the subcommands live here so tests can call them.
//!
//! # Layout
//! - [`schemas`]: `athena-connect schemas register|check|list`, deploy-time registration of the
//!   bundled Avro contracts with `BACKWARD_TRANSITIVE` compatibility.
//! - [`exit`]: the documented exit codes.

pub mod exit;
pub mod schemas;

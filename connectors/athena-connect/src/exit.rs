//! Exit codes of `athena-connect`, documented in `--help` and the README.

/// Success (for `run`: every connector stopped within `shutdown_timeout`).
pub const OK: i32 = 0;
/// A runtime failure: a server unreachable, a request refused, a connector that did not stop in
/// time on shutdown or had failed for good (not restarted by the supervisor).
pub const FAILURE: i32 = 1;
/// Bad usage or invalid configuration (the message names the dotted key).
pub const USAGE: i32 = 2;
/// A schema is incompatible with what the registry holds.
pub const INCOMPATIBLE: i32 = 3;
/// The operation needs the connector stopped (e.g. `offsets reset` while it runs), or another
/// run of the same backfill holds its lock.
pub const CONFLICT: i32 = 4;

/// `backfill` was interrupted by SIGTERM or Ctrl-C; its progress is checkpointed, run it again
/// to resume.
pub const INTERRUPTED: i32 = 5;

/// Help text appended to `--help`.
pub const HELP: &str = "Exit codes: 0 success, 1 runtime failure (server unreachable, request \
refused, a connector that did not stop within shutdown_timeout or had failed for good), 2 bad usage or invalid \
configuration (the message names the key), 3 schema incompatible with the registry, 4 the \
connector must be stopped first, or the reset would re-read commands older than a sink's \
ledger_retention (offsets reset), or another run of the same backfill is running, 5 backfill interrupted (progress kept; rerun \
to resume).

Start here: `athena-connect check --config FILE` validates the file and reaches athena, Kafka and \
the registry; `athena-connect run --config FILE [--only NAME]` runs every connector it lists (or \
only those named). \
See deploy/athena-connect.example.toml and docs/operations.md.";

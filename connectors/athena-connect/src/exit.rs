//! Exit codes of `athena-connect`, documented in `--help` and the README.

/// Success.
pub const OK: i32 = 0;
/// A runtime failure: a server unreachable, a request refused.
pub const FAILURE: i32 = 1;
/// Bad usage or invalid configuration (the message names the key).
pub const USAGE: i32 = 2;
/// A schema is incompatible with what the registry holds.
pub const INCOMPATIBLE: i32 = 3;

/// Help text appended to `--help`.
pub const HELP: &str = "Exit codes: 0 success, 1 runtime failure (server unreachable, request \
refused), 2 bad usage or invalid configuration, 3 schema incompatible with the registry.";

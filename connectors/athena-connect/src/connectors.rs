//! Wiring: turns each connector table of the root config into a [`ConnectorDef`] with that
//! connector crate's typed `Config`, its `run` function and the location of its offsets.
//!
//! This is the only file that names the connector crates. A connector kind whose crate is not
//! part of this build is refused with the dotted key of its section, never silently skipped.

use athena_client::AthenaClient;
use connector_core::CoreError;
use connector_core::runtime::RunEnv;

use crate::config::{Instance, Kind, RootConfig};
use crate::supervisor::ConnectorDef;

/// Types and validates every connector section without I/O (used by `check` and `run`).
pub fn validate_all(config: &RootConfig) -> Result<(), CoreError> {
    for i in config.instances() {
        validate_one(&i)?;
    }
    Ok(())
}

fn key(i: &Instance<'_>) -> String {
    format!("{}.{}", i.kind.section(), i.name)
}

fn not_built(i: &Instance<'_>) -> CoreError {
    CoreError::config(
        key(i),
        format!(
            "this build of athena-connect does not include the {} connector",
            i.kind.name()
        ),
    )
}

fn validate_one(i: &Instance<'_>) -> Result<(), CoreError> {
    match i.kind {
        Kind::ChangedData | Kind::FhirPush | Kind::WriteBack => Err(not_built(i)),
    }
}

/// Builds the definitions of every configured connector (no I/O).
pub fn build(
    config: &RootConfig,
    env: &RunEnv,
    athena: &AthenaClient,
) -> Result<Vec<ConnectorDef>, CoreError> {
    config
        .instances()
        .iter()
        .map(|i| build_one(i, env, athena))
        .collect()
}

fn build_one(
    i: &Instance<'_>,
    env: &RunEnv,
    athena: &AthenaClient,
) -> Result<ConnectorDef, CoreError> {
    let _ = (env, athena);
    validate_one(i)?;
    Err(not_built(i))
}

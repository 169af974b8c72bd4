//! The push connector as its own process (`fhir-push --config file.toml`): the root config's
//! `[kafka]`, `[schema_registry]`, `[athena]`, optional `[telemetry]` and the
//! `[sources.fhir_push.<name>]` tables, so the same file also works with `athena-connect run`.

use std::collections::BTreeMap;
use std::path::Path;

use athena_client::ClientConfig;
use connector_core::CoreError;
use connector_core::avro::RegistryConfig;
use connector_core::config::Validate;
use connector_core::kafka::KafkaConfig;
use connector_core::telemetry::TelemetryConfig;
use serde::Deserialize;

use crate::Config;

/// A config file for the standalone push connector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneConfig {
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// How to reach the schema registry.
    pub schema_registry: RegistryConfig,
    /// athenahealth credentials and limits.
    pub athena: ClientConfig,
    /// Logging and tracing.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// Connector instances.
    pub sources: Sources,
}

/// `[sources]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// `[sources.fhir_push.<name>]` tables.
    pub fhir_push: BTreeMap<String, Config>,
}

impl StandaloneConfig {
    /// Loads (with `${VAR}` and `ATHENA_CONNECT__...` overrides) and validates `path`.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let c: StandaloneConfig = connector_core::config::load_file(path, "ATHENA_CONNECT")?;
        c.kafka.validate()?;
        c.schema_registry.validate()?;
        for (name, s) in &c.sources.fhir_push {
            s.validate_named(name)?;
        }
        Ok(c)
    }
}

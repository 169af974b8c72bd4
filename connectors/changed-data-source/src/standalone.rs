//! The root config the standalone `changed-data-source` binary reads: `[kafka]`,
//! `[schema_registry]`, `[athena]`, optional `[telemetry]` and `[sources.changed_data.<name>]`.
//! Other root sections (`[admin]`, `[sinks.*]`, ...) belong to the `athena-connect` binary and
//! are ignored here, so the same file serves both; inside the connector tables unknown keys are
//! errors.

use std::collections::BTreeMap;
use std::path::Path;

use athena_client::ClientConfig;
use connector_core::CoreError;
use connector_core::avro::RegistryConfig;
use connector_core::config::Validate;
use connector_core::kafka::KafkaConfig;
use connector_core::telemetry::TelemetryConfig;
use serde::Deserialize;

use crate::config::Config;

/// The sections the standalone binary reads.
#[derive(Debug, Deserialize)]
pub struct StandaloneConfig {
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// How to reach the schema registry.
    pub schema_registry: RegistryConfig,
    /// athena API client settings.
    pub athena: ClientConfig,
    /// Logging and tracing.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Connector instances.
    pub sources: Sources,
}

/// `[sources]`.
#[derive(Debug, Deserialize)]
pub struct Sources {
    /// `[sources.changed_data.<name>]`, by connector name.
    #[serde(default)]
    pub changed_data: BTreeMap<String, Config>,
}

impl StandaloneConfig {
    /// Loads `path` (with `${VAR}` interpolation and `ATHENA_CONNECT__...` overrides) and
    /// validates every section; errors name the dotted key.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let c: StandaloneConfig =
            connector_core::config::load_file(path, connector_core::config::ENV_PREFIX)?;
        c.validate()?;
        Ok(c)
    }
}

impl Validate for StandaloneConfig {
    fn validate(&self) -> Result<(), CoreError> {
        self.kafka.validate()?;
        self.schema_registry.validate()?;
        self.athena
            .validate()
            .map_err(|e| CoreError::config("athena", e.to_string()))?;
        if self.sources.changed_data.is_empty() {
            return Err(CoreError::config(
                "sources.changed_data",
                "configure at least one connector",
            ));
        }
        for (name, c) in &self.sources.changed_data {
            c.validate().map_err(|e| match e {
                CoreError::Config { key, message } => CoreError::Config {
                    key: format!("sources.changed_data.{name}.{key}"),
                    message,
                },
                other => other,
            })?;
        }
        Ok(())
    }
}

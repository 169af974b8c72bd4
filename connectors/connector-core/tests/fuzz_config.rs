//! Fuzzing the config loader ([`connector_core::config::load_str`]: TOML parsing, `${VAR}`
//! interpolation, `ATHENA_CONNECT__*` overrides, typed deserialisation naming the failing key)
//! and the pure [`Validate`] of connector-core's own sections (`[kafka]`, `[schema_registry]`,
//! `[telemetry]`), with arbitrary text and with near-valid documents (a valid file with values
//! of other types, removed and unknown keys, broken interpolation, garbled bytes) under random
//! environments. Property: the result is `Ok` or `CoreError::Config` naming a key; nothing
//! panics. Bounded by `PROPTEST_CASES` (docs/testing.md).

mod common;

use std::collections::BTreeMap;

use common::cases::{config, sample};
use common::toml_fuzz::{document, env, names_a_key};
use connector_core::CoreError;
use connector_core::avro::RegistryConfig;
use connector_core::config::{ENV_PREFIX, Validate, load_str};
use connector_core::kafka::KafkaConfig;
use connector_core::telemetry::TelemetryConfig;
use proptest::prelude::*;
use serde::Deserialize;

/// A file of connector-core's sections, as a connector binary's config embeds them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Core {
    kafka: KafkaConfig,
    schema_registry: RegistryConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
}

const BASE: &str = r#"
[kafka]
bootstrap_servers = "${KAFKA:-127.0.0.1:9092}"
client_id = "athena-connect"
replication_factor = 1
[kafka.security]
protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "svc"
sasl_password = "${SECRET:-pw}"
[kafka.producer]
"linger.ms" = "5"
[schema_registry]
url = "http://127.0.0.1:8081/apis/ccompat/v7"
timeout = "10s"
subject_strategy = "topic_name"
[telemetry]
log_format = "json"
log_level = "info"
[telemetry.otlp]
endpoint = "http://127.0.0.1:4317"
"#;

const SECTIONS: &[&str] = &[
    "kafka",
    "schema_registry",
    "telemetry",
    "security",
    "producer",
    "url",
    "timeout",
    "bootstrap_servers",
    "replication_factor",
    "otlp",
    "log_level",
];

fn base() -> toml::Table {
    toml::from_str(BASE).expect("the base document is valid TOML")
}

/// Loads and validates connector-core's sections.
fn load(text: &str, env: &BTreeMap<String, String>) -> Result<(), CoreError> {
    let c = load_str::<Core>(text, env, ENV_PREFIX)?;
    c.kafka.validate()?;
    c.schema_registry.validate()?;
    c.telemetry.validate()
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text as a config file.
    #[test]
    fn any_text_loads_or_names_a_key(text in ".{0,200}", env in env(ENV_PREFIX, SECTIONS)) {
        names_a_key(load(&text, &env))?;
    }

    /// A valid file with random edits, under a random environment.
    #[test]
    fn near_valid_files_load_or_name_a_key(
        text in document(base()),
        env in env(ENV_PREFIX, SECTIONS),
    ) {
        names_a_key(load(&text, &env))?;
    }
}

/// The unedited base document loads and validates (so the edits start from a valid file).
#[test]
fn base_document_is_valid() {
    let c: Core = load_str(BASE, &BTreeMap::new(), ENV_PREFIX).expect("loads");
    c.kafka.validate().expect("kafka");
    c.schema_registry.validate().expect("registry");
    c.telemetry.validate().expect("telemetry");
}

/// The near-valid generator reaches past the TOML syntax check: of a fixed sample, some files
/// load and validate, and some fail in typing or validation (a key other than `<file>`).
#[test]
fn near_valid_files_reach_typing_and_validation() {
    let docs = sample(&(document(base()), env(ENV_PREFIX, SECTIONS)), 300);
    let (mut ok, mut deep, mut syntax) = (0, 0, 0);
    for (text, env) in &docs {
        match load(text, env) {
            Ok(()) => ok += 1,
            Err(CoreError::Config { key, .. }) if key == "<file>" => syntax += 1,
            Err(_) => deep += 1,
        }
    }
    eprintln!("near-valid sample: {ok} ok, {deep} typed/validation errors, {syntax} syntax errors");
    assert!(
        ok >= 10 && deep >= 30,
        "{ok} ok, {deep} deep, {syntax} syntax"
    );
}

//! Fuzzing the root config of `athena-connect run|check` ([`RootConfig::load_str`], its
//! `validate` and [`connectors::validate_all`], which types every connector table with its
//! crate's `Config`) with arbitrary text and with near-valid files: the shipped example
//! (`deploy/athena-connect.example.toml`) with values replaced by other types, keys removed,
//! unknown keys added, `${VAR}` forms broken and bytes garbled, under random environments and
//! `ATHENA_CONNECT__*` overrides. Property: `Ok`, or `CoreError::Config` naming a key; nothing
//! panics. The generators are connector-core's (`tests/common/toml_fuzz.rs`, included by
//! path). Bounded by `PROPTEST_CASES` (docs/testing.md).

#[path = "../../connector-core/tests/common/cases.rs"]
mod cases;
#[path = "../../connector-core/tests/common/toml_fuzz.rs"]
mod toml_fuzz;

use std::collections::BTreeMap;

use athena_connect::config::RootConfig;
use athena_connect::connectors;
use connector_core::CoreError;
use connector_core::config::{ENV_PREFIX, Validate};
use proptest::prelude::*;

use cases::{config, sample};
use toml_fuzz::{document, env, names_a_key};

const EXAMPLE: &str = include_str!("../../../deploy/athena-connect.example.toml");

/// Section and key names the overrides aim at (upper-cased into `ATHENA_CONNECT__A__B`).
const SECTIONS: &[&str] = &[
    "kafka",
    "schema_registry",
    "athena",
    "telemetry",
    "admin",
    "sources",
    "sinks",
    "backfill",
    "changed_data",
    "fhir_push",
    "write_back",
    "changes",
    "commands",
    "push",
    "feeds",
    "token",
    "listen",
    "shutdown_timeout",
    "practices",
    "secret",
    "rate_limit",
    "qps",
];

fn example() -> toml::Table {
    toml::from_str(EXAMPLE).expect("the example is valid TOML")
}

/// The variables the example needs without a default, plus the random ones.
fn with_required(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (k, v) in [
        ("ATHENA_CONNECT_ADMIN_TOKEN", "0123456789abcdef-admin-token"),
        ("FHIR_PUSH_SECRET", "0123456789abcdef-push-secret"),
    ] {
        env.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    env
}

fn load(text: &str, env: &BTreeMap<String, String>) -> Result<(), CoreError> {
    let c = RootConfig::load_str(text, env)?;
    c.validate()?;
    connectors::validate_all(&c)
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text as the config file.
    #[test]
    fn any_text_loads_or_names_a_key(text in ".{0,200}", env in env(ENV_PREFIX, SECTIONS)) {
        names_a_key(load(&text, &with_required(env)))?;
    }

    /// The example with random edits, under a random environment.
    #[test]
    fn near_valid_files_load_or_name_a_key(
        text in document(example()),
        env in env(ENV_PREFIX, SECTIONS),
    ) {
        names_a_key(load(&text, &with_required(env)))?;
    }
}

/// The generator reaches the connectors' own typing and validation: of a fixed sample, some
/// edited files are valid and some fail below the root (`sources.`, `sinks.`, `backfill`).
#[test]
fn near_valid_files_reach_connector_validation() {
    assert!(load(EXAMPLE, &with_required(BTreeMap::new())).is_ok());
    let docs = sample(&(document(example()), env(ENV_PREFIX, SECTIONS)), 300);
    let (mut ok, mut connector, mut other) = (0, 0, 0);
    for (text, env) in docs {
        match load(&text, &with_required(env)) {
            Ok(()) => ok += 1,
            Err(CoreError::Config { key, .. })
                if ["sources.", "sinks.", "backfill"]
                    .iter()
                    .any(|p| key.starts_with(p)) =>
            {
                connector += 1
            }
            Err(_) => other += 1,
        }
    }
    eprintln!("near-valid sample: {ok} ok, {connector} connector-section errors, {other} other");
    assert!(
        ok >= 10 && connector >= 10,
        "{ok} ok, {connector} connector, {other} other"
    );
}

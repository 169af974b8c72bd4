//! `athena-connect schemas`: register the bundled Avro contracts at deploy time, check them
//! without registering, or list them.
//!
//! Connectors never register schemas silently at runtime (unless `auto_register` is set): an
//! incompatible change is caught here, before a connector starts producing with it.

use std::io::Write;

use connector_core::CoreError;
use connector_core::avro::{
    COMPATIBILITY_LEVELS, Catalog, RegistryClient, RegistryConfig, SubjectStrategy,
    default_bindings, incompatible_bindings, register_bindings,
};

use crate::exit;

/// Options shared by the `schemas` subcommands.
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    /// The registry and how to authenticate to it and verify it (the `[schema_registry]`
    /// settings; its subject strategy and `auto_register` are not used here).
    pub registry: RegistryConfig,
    /// Prepended to every default topic name.
    pub topic_prefix: String,
    /// Subject naming strategy.
    pub strategy: SubjectStrategy,
    /// Compatibility level to set on each subject.
    pub compatibility: String,
}

impl SchemaOptions {
    fn validate(&self) -> Result<(), CoreError> {
        if !COMPATIBILITY_LEVELS.contains(&self.compatibility.as_str()) {
            return Err(CoreError::config(
                "--compatibility",
                format!("must be one of {}", COMPATIBILITY_LEVELS.join(", ")),
            ));
        }
        connector_core::config::Validate::validate(&self.registry)
    }
}

/// `schemas register`: sets compatibility and registers every bundled top-level schema.
/// Returns the exit code.
pub async fn register(opts: &SchemaOptions, out: &mut impl Write) -> i32 {
    run(opts, out, true).await
}

/// `schemas check`: reports the subjects whose registered versions our schemas are not
/// compatible with, without registering anything. Returns the exit code.
pub async fn check(opts: &SchemaOptions, out: &mut impl Write) -> i32 {
    run(opts, out, false).await
}

async fn run(opts: &SchemaOptions, out: &mut impl Write, register: bool) -> i32 {
    if let Err(e) = opts.validate() {
        let _ = writeln!(out, "error: {e}");
        return exit::USAGE;
    }
    let client = match RegistryClient::new(opts.registry.clone()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            // An unreadable CA or key file is a usage error like any other bad option.
            return match e {
                CoreError::Config { .. } => exit::USAGE,
                _ => exit::FAILURE,
            };
        }
    };
    let bindings = default_bindings(opts.strategy, &opts.topic_prefix);
    match incompatible_bindings(&client, &bindings).await {
        Ok(bad) if !bad.is_empty() => {
            for b in &bad {
                let _ = writeln!(
                    out,
                    "INCOMPATIBLE  {}  ({} is not {}-compatible with the registered versions)",
                    b.subject, b.schema, opts.compatibility
                );
            }
            return exit::INCOMPATIBLE;
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return exit::FAILURE;
        }
    }
    if !register {
        for b in &bindings {
            let _ = writeln!(out, "compatible  {}  {}", b.subject, b.schema);
        }
        return exit::OK;
    }
    match register_bindings(&client, &bindings, &opts.compatibility).await {
        Ok(done) => {
            for r in done {
                let _ = writeln!(
                    out,
                    "registered  {}  id={}  {}  ({})",
                    r.binding.subject, r.id, r.binding.schema, opts.compatibility
                );
            }
            exit::OK
        }
        Err(e @ CoreError::RegistryRejected(_)) => {
            let _ = writeln!(out, "error: {e}");
            exit::INCOMPATIBLE
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            exit::FAILURE
        }
    }
}

/// `schemas list`: the bundled schemas and the subjects they would be registered under.
pub fn list(strategy: SubjectStrategy, topic_prefix: &str, out: &mut impl Write) -> i32 {
    let bindings = default_bindings(strategy, topic_prefix);
    for s in Catalog::global().iter() {
        let subject = bindings
            .iter()
            .find(|b| b.schema == s.name)
            .map(|b| b.subject.as_str())
            .unwrap_or("(shared type, inlined)");
        let _ = writeln!(out, "{:<50} {:<40} schemas/{}", s.name, subject, s.file);
    }
    exit::OK
}

//! `athena-connect`: streams athenahealth data into Kafka and carries commands back.
//! This file only parses arguments; the work is in the library.

use std::path::PathBuf;
use std::time::Duration;

use athena_connect::{
    backfill, conformance, demo, exit, offsets, run, schemas, sim, subscriptions,
};
use clap::{Parser, Subcommand, ValueEnum};
use connector_core::avro::{RegistryConfig, SubjectStrategy};
use connector_core::secret::Secret;

#[derive(Debug, Parser)]
#[command(
    name = "athena-connect",
    version,
    about = "Stream athenahealth (athenaOne) data into Apache Kafka and write commands back.",
    after_help = exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every connector the config lists (sources, sinks, push receiver) in this process,
    /// with the admin API; stops cleanly on SIGTERM or Ctrl-C within `shutdown_timeout`.
    Run {
        /// The TOML config (see deploy/athena-connect.example.toml).
        #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
        config: PathBuf,
        /// Print a live summary line (events per feed, commands by outcome, DLQ) this often,
        /// e.g. `2s`.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        summary: Option<Duration>,
        /// Run only these connectors (the table keys; repeat the flag or give a comma list),
        /// e.g. one connector per pod. The whole file is still validated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Validate the config and reach athena, Kafka and the schema registry, printing each result
    /// (exit 0 all fine, 1 something unreachable, 2 invalid config).
    Check {
        /// The TOML config.
        #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
        config: PathBuf,
    },
    /// Check that the athena this config points at (simulator, preview, production) answers the
    /// way the connectors need: token and scopes, feeds (never destructive), FHIR searches,
    /// `$export`, push subscriptions; `--writes` adds a pass on synthetic data. Prints a table
    /// (exit 0 all passed, 1 a check failed, 2 invalid config).
    Conformance {
        /// The TOML config.
        #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
        config: PathBuf,
        /// Also create a synthetic patient and book and cancel an appointment (only with a
        /// write-back sink configured).
        #[arg(long)]
        writes: bool,
    },
    /// Show or reset a connector's offsets (cursor checkpoints or consumer-group offsets).
    /// Reset only while the connector is stopped.
    Offsets {
        #[command(subcommand)]
        action: OffsetsAction,
    },
    /// Show, create or delete the FHIR Subscriptions of the `[sources.fhir_push.<name>]`
    /// connectors (`status` reads only; `ensure` creates missing and deletes stale ones;
    /// `delete` removes ours).
    Subscriptions {
        /// The TOML config.
        #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
        config: PathBuf,
        /// `status`, `ensure` or `delete`.
        #[arg(value_parser = ["status", "ensure", "delete"])]
        action: String,
        /// Only these push connectors (default: every one).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Run the resumable FHIR Bulk $export backfill from the config's [backfill] section
    /// (exit 5 when interrupted; run again to resume).
    Backfill {
        /// The TOML config.
        #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
        config: PathBuf,
        /// Backfill name (part of its checkpoint key; one per practice or purpose).
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Demo only: produce a synthetic CreatePatient command every few seconds, so the
    /// write-back sink has work and the new patients flow back through the source.
    DemoTraffic(demo::TrafficOptions),
    /// Run the athenahealth simulator (for the demo and local testing).
    Sim(sim::SimOptions),
    /// Register, check or list the Avro contracts (run at deploy time, before the connectors).
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
}

#[derive(Debug, Subcommand)]
enum OffsetsAction {
    /// Print the connector's offsets as JSON (Kafka Connect's shape).
    Show(OffsetArgs),
    /// Delete the connector's offsets so it starts from its configured beginning, or with
    /// `--to-time` set a consumer group to that time (refused with exit 4 while the connector
    /// runs, or when a sink would read commands older than its ledger_retention again).
    Reset {
        #[command(flatten)]
        args: OffsetArgs,
        /// Reset a consumer group to the first record at or after this RFC 3339 time.
        #[arg(long)]
        to_time: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// Reset even when a sink would read (and execute) commands older than its
        /// ledger_retention again.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
struct OffsetArgs {
    /// The TOML config.
    #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
    config: PathBuf,
    /// Connector name (the table key, e.g. `main` for `[sinks.write_back.main]`).
    #[arg(long)]
    connector: String,
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// Set each subject's compatibility and register every bundled schema; fails (exit 3) on an
    /// incompatible change.
    Register(SchemaArgs),
    /// Check that every bundled schema is compatible with its subject, registering nothing.
    Check(SchemaArgs),
    /// List the bundled schemas and their subjects.
    List {
        /// Prepended to every default topic name.
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// Subject naming strategy.
        #[arg(long, value_enum, default_value_t = Strategy::TopicName)]
        subject_strategy: Strategy,
    },
}

#[derive(Debug, clap::Args)]
struct SchemaArgs {
    /// Base URL of the Confluent-compatible registry API.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    registry_url: String,
    /// Basic-auth user of the registry (Confluent Cloud: the API key).
    #[arg(long, env = "SCHEMA_REGISTRY_USERNAME")]
    registry_username: Option<String>,
    /// Basic-auth password. Prefer the environment variable: arguments show in `ps`.
    #[arg(long, env = "SCHEMA_REGISTRY_PASSWORD", hide_env_values = true, value_parser = secret)]
    registry_password: Option<Secret>,
    /// Bearer token (instead of basic auth). Prefer the environment variable.
    #[arg(long, env = "SCHEMA_REGISTRY_TOKEN", hide_env_values = true, value_parser = secret)]
    registry_token: Option<Secret>,
    /// PEM CA bundle that verifies an https:// registry.
    #[arg(long, env = "SCHEMA_REGISTRY_CA_FILE")]
    registry_ca_file: Option<String>,
    /// PEM client certificate for mutual TLS.
    #[arg(long, env = "SCHEMA_REGISTRY_CLIENT_CERT_FILE")]
    registry_client_cert_file: Option<String>,
    /// PEM private key of the client certificate.
    #[arg(long, env = "SCHEMA_REGISTRY_CLIENT_KEY_FILE")]
    registry_client_key_file: Option<String>,
    /// Prepended to every default topic name (e.g. `staging.`).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Subject naming strategy.
    #[arg(long, value_enum, default_value_t = Strategy::TopicName)]
    subject_strategy: Strategy,
    /// Compatibility level set on each subject.
    #[arg(long, default_value = "BACKWARD_TRANSITIVE")]
    compatibility: String,
}

// The names mirror Confluent's TopicNameStrategy / RecordNameStrategy / TopicRecordNameStrategy.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Strategy {
    /// `<topic>-value`.
    TopicName,
    /// `<record full name>`.
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

impl From<Strategy> for SubjectStrategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::TopicName => SubjectStrategy::TopicName,
            Strategy::RecordName => SubjectStrategy::RecordName,
            Strategy::TopicRecordName => SubjectStrategy::TopicRecordName,
        }
    }
}

/// Reads a secret option straight into the redacting type, so no `Debug` can print it.
fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}

impl From<SchemaArgs> for schemas::SchemaOptions {
    fn from(a: SchemaArgs) -> Self {
        // An empty variable (a Kubernetes Secret key left blank) means "not set".
        let set = |v: Option<String>| v.filter(|s| !s.is_empty());
        schemas::SchemaOptions {
            registry: RegistryConfig {
                username: set(a.registry_username),
                password: a.registry_password.filter(|s| !s.expose().is_empty()),
                token: a.registry_token.filter(|s| !s.expose().is_empty()),
                ca_file: set(a.registry_ca_file),
                client_cert_file: set(a.registry_client_cert_file),
                client_key_file: set(a.registry_client_key_file),
                ..RegistryConfig::new(a.registry_url)
            },
            topic_prefix: a.topic_prefix,
            strategy: a.subject_strategy.into(),
            compatibility: a.compatibility,
        }
    }
}

fn main() {
    connector_core::runtime::install_tls_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    let mut out = std::io::stdout();
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                summary,
                only,
            } => {
                run::run(&run::RunOptions {
                    config,
                    summary,
                    only,
                })
                .await
            }
            Command::Subscriptions {
                config,
                action,
                only,
            } => subscriptions::run(&config, &action, &only).await,
            Command::Check { config } => run::check(&config, &mut out).await,
            Command::Conformance { config, writes } => {
                conformance::conformance(&config, writes, &mut out).await
            }
            Command::Offsets { action } => match action {
                OffsetsAction::Show(a) => {
                    run::offsets(&a.config, &a.connector, None, &mut out).await
                }
                OffsetsAction::Reset {
                    args,
                    to_time,
                    force,
                } => {
                    let req = offsets::ResetRequest {
                        to_time: to_time.map(|t| t.with_timezone(&chrono::Utc)),
                        force,
                    };
                    run::offsets(&args.config, &args.connector, Some(req), &mut out).await
                }
            },
            Command::Backfill { config, name } => backfill::backfill(&config, &name).await,
            Command::DemoTraffic(o) => demo::traffic(&o).await,
            Command::Sim(o) => sim::run(&o).await,
            Command::Schemas { action } => match action {
                SchemasAction::Register(a) => schemas::register(&a.into(), &mut out).await,
                SchemasAction::Check(a) => schemas::check(&a.into(), &mut out).await,
                SchemasAction::List {
                    topic_prefix,
                    subject_strategy,
                } => schemas::list(subject_strategy.into(), &topic_prefix, &mut out),
            },
        }
    });
    std::process::exit(code);
}

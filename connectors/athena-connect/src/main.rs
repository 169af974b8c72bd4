//! `athena-connect`: streams athenahealth data into Kafka and carries commands back.
//! This file only parses arguments; the work is in the library.

use athena_connect::{exit, schemas};
use clap::{Parser, Subcommand, ValueEnum};
use connector_core::avro::SubjectStrategy;

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
    /// Register, check or list the Avro contracts (run at deploy time, before the connectors).
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
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

impl From<SchemaArgs> for schemas::SchemaOptions {
    fn from(a: SchemaArgs) -> Self {
        schemas::SchemaOptions {
            registry_url: a.registry_url,
            topic_prefix: a.topic_prefix,
            strategy: a.subject_strategy.into(),
            compatibility: a.compatibility,
        }
    }
}

fn main() {
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

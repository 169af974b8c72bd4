//! `write-back-sink --config FILE [--name NAME]`: runs one write-back sink instance from a TOML
//! file with `[kafka]`, `[schema_registry]`, `[athena]` and `[sinks.write_back.<name>]`.
//! SIGINT/SIGTERM stop it gracefully; exit code 0 on a clean stop, 1 on a fatal error, 2 on a
//! bad config.

use std::path::PathBuf;

use clap::Parser;
use connector_core::config::Validate;
use connector_core::runtime::{RunEnv, task};
use write_back_sink::{KIND, RootConfig};

#[derive(Parser)]
#[command(about = "athena-connect write-back sink (stand-alone)")]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// Instance under [sinks.write_back]; default: the only one.
    #[arg(long)]
    name: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _telemetry = connector_core::telemetry::init(&Default::default());
    let args = Args::parse();
    let root: RootConfig = match connector_core::config::load_file(&args.config, "ATHENA_CONNECT")
        .and_then(|r: RootConfig| r.validate().map(|()| r))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("config error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let name = match args.name.or_else(|| {
        (root.sinks.write_back.len() == 1)
            .then(|| root.sinks.write_back.keys().next().cloned())
            .flatten()
    }) {
        Some(n) => n,
        None => {
            eprintln!("config error: several [sinks.write_back.*] instances; pick one with --name");
            return std::process::ExitCode::from(2);
        }
    };
    let Some(config) = root.sinks.write_back.get(&name).cloned() else {
        eprintln!("config error: sinks.write_back.{name}: no such instance");
        return std::process::ExitCode::from(2);
    };
    let athena = match athena_client::AthenaClient::new(root.athena.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("config error: athena: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let env = RunEnv {
        kafka: root.kafka.clone(),
        registry: root.schema_registry.clone(),
    };
    let (control, handle) = task(name.clone(), KIND);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested.");
        handle.shutdown();
    });
    match write_back_sink::run(&name, &config, &env, &athena, control).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Write-back sink stopped with a fatal error.");
            eprintln!("fatal: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

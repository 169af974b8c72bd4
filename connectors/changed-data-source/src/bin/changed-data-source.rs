//! `changed-data-source --config FILE [--connector NAME]`: runs changed-data source connectors
//! from a TOML file with the root sections `[kafka]`, `[schema_registry]`, `[athena]` and
//! `[sources.changed_data.<name>]` (other sections are ignored here; the `athena-connect`
//! binary runs the same [`changed_data_source::run`] alongside the other connectors).
//! SIGTERM/SIGINT stop it gracefully.

use std::path::PathBuf;

use anyhow::Context;
use athena_client::AthenaClient;
use changed_data_source::standalone::StandaloneConfig;
use clap::Parser;
use connector_core::runtime::{RunEnv, task};

#[derive(Parser, Debug)]
#[command(about = "Stream athenahealth changed-data feeds into Kafka")]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// Run only this connector (default: every `[sources.changed_data.*]`).
    #[arg(long)]
    connector: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = StandaloneConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    let _telemetry = connector_core::telemetry::init(&root.telemetry)?;
    let mut connectors = root.sources.changed_data;
    if let Some(only) = &args.connector {
        connectors.retain(|n, _| n == only);
    }
    anyhow::ensure!(
        !connectors.is_empty(),
        "no [sources.changed_data.*] connector to run"
    );
    let env = RunEnv {
        kafka: root.kafka,
        registry: root.schema_registry,
    };
    let athena = AthenaClient::new(root.athena)?;
    let mut handles = Vec::new();
    let mut runners = Vec::new();
    for (name, c) in connectors {
        let (control, handle) = task(name.clone(), changed_data_source::KIND);
        handles.push(handle);
        let (env, athena) = (env.clone(), athena.clone());
        runners.push(tokio::spawn(async move {
            let r = changed_data_source::run(&name, &c, &env, &athena, control).await;
            (name, r)
        }));
    }
    let stopper = handles.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("Shutdown requested.");
        for h in &stopper {
            h.shutdown();
        }
    });
    let mut failed = false;
    for r in runners {
        let (name, result) = r.await?;
        if let Err(e) = result {
            tracing::error!(connector = %name, error = %e, "Connector failed.");
            failed = true;
        }
    }
    anyhow::ensure!(!failed, "a connector failed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! `fhir-push --config file.toml`: every `[sources.fhir_push.<name>]` connector of the file
//! (receiver, subscription management, gap detection, inflation) until SIGTERM / Ctrl-C.
//! `athena-connect run` runs the same `fhir_push::run`.
//!
//! Exit codes: 0 stopped on request, 1 a connector failed, 2 bad configuration.

use std::path::PathBuf;

use athena_client::AthenaClient;
use clap::Parser;
use connector_core::runtime::RunEnv;
use fhir_push::standalone::StandaloneConfig;

#[derive(Debug, Parser)]
#[command(about = "FHIR push subscriptions into Kafka")]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// Without a command: run every connector.
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Manage the Subscriptions of every `[sources.fhir_push.<name>]` and print their status.
    Subscriptions {
        /// `status` (read only), `ensure` (create missing, delete stale), `delete` (remove ours).
        #[arg(value_parser = ["status", "ensure", "delete"])]
        action: String,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cfg = match StandaloneConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let _telemetry =
            connector_core::telemetry::init(&cfg.telemetry.clone().unwrap_or_default());
        let athena = match AthenaClient::new(cfg.athena.clone()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        if let Some(Cmd::Subscriptions { action }) = &args.command {
            return subscriptions(&cfg, &athena, action).await;
        }
        let env = RunEnv {
            kafka: cfg.kafka.clone(),
            registry: cfg.schema_registry.clone(),
        };
        let mut tasks = Vec::new();
        let mut handles = Vec::new();
        for (name, c) in cfg.sources.fhir_push.clone() {
            let (control, handle) = connector_core::runtime::task(name.clone(), "fhir-push-source");
            handles.push(handle);
            let (env, athena) = (env.clone(), athena.clone());
            tasks.push(tokio::spawn(async move {
                let r = fhir_push::run(&name, &c, &env, &athena, control).await;
                if let Err(e) = &r {
                    tracing::error!(connector = %name, error = %e, "Push connector failed.");
                }
                r.is_ok()
            }));
        }
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            for h in handles {
                h.shutdown();
            }
        });
        let mut ok = true;
        for t in tasks {
            ok &= t.await.unwrap_or(false);
        }
        if ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::from(1)
        }
    })
}

async fn subscriptions(
    cfg: &StandaloneConfig,
    athena: &AthenaClient,
    action: &str,
) -> std::process::ExitCode {
    let mut code = std::process::ExitCode::SUCCESS;
    for (name, c) in &cfg.sources.fhir_push {
        let adapter = fhir_push::build_adapter(c);
        let specs = fhir_push::subscription_specs(c);
        let result = match action {
            "ensure" => {
                let secret = adapter.hub_secret();
                fhir_push::manage::reconcile(
                    athena,
                    adapter.as_ref(),
                    secret.as_ref(),
                    &specs,
                    true,
                )
                .await
            }
            "delete" => fhir_push::manage::delete_all(athena, adapter.as_ref(), &specs)
                .await
                .map(|n| {
                    println!("{name}: deleted {n} subscription(s)");
                    Vec::new()
                }),
            _ => fhir_push::manage::status(athena, adapter.as_ref(), &specs).await,
        };
        match result {
            Ok(statuses) => {
                for s in statuses {
                    println!(
                        "{name}\t{}\t{}\t{}{}",
                        s.topic,
                        s.status,
                        s.id.as_deref().unwrap_or("-"),
                        if s.created { "\tcreated" } else { "" }
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                code = std::process::ExitCode::from(1);
            }
        }
    }
    code
}

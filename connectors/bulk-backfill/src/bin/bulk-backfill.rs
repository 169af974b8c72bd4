//! `bulk-backfill --config backfill.toml [--name NAME]`: one resumable FHIR Bulk `$export`
//! backfill. The file has the root config's `[kafka]`, `[schema_registry]`, `[athena]`,
//! optional `[telemetry]` and `[backfill]` sections (`${VAR}` interpolation and
//! `ATHENA_CONNECT__SECTION__KEY` overrides apply). `athena-connect backfill` wraps the same
//! `run_backfill`.
//!
//! Exit codes: 0 complete, 1 error (rerun to resume), 2 bad configuration, 3 interrupted by
//! SIGTERM/Ctrl-C (progress checkpointed; rerun to resume).

use std::path::PathBuf;

use athena_client::AthenaClient;
use bulk_backfill::standalone::StandaloneConfig;
use clap::Parser;
use connector_core::runtime::RunEnv;

#[derive(Debug, Parser)]
#[command(about = "Resumable FHIR Bulk $export backfill into Avro snapshot events")]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// Backfill name (part of the checkpoint key).
    #[arg(long, default_value = "default")]
    name: String,
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
        let _telemetry = connector_core::telemetry::init(&cfg.telemetry.clone().unwrap_or_default());
        let athena = match AthenaClient::new(cfg.athena.clone()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let env = RunEnv {
            kafka: cfg.kafka.clone(),
            registry: cfg.schema_registry.clone(),
        };
        let (control, handle) = connector_core::runtime::task(args.name.clone(), "bulk-backfill");
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            handle.shutdown();
        });
        match bulk_backfill::run_backfill(&args.name, &cfg.backfill, &env, &athena, control).await {
            Ok(s) if s.interrupted => {
                eprintln!("interrupted: {} events this run; rerun to resume", s.events);
                std::process::ExitCode::from(3)
            }
            Ok(s) => {
                println!(
                    "backfill complete: {} files ({} already done), {} events, {} skipped, {} patients gone (FHIR fallback), next _since {}",
                    s.files,
                    s.files_resumed_done,
                    s.events,
                    s.skipped,
                    s.patients_fallback,
                    s.transaction_time.as_deref().unwrap_or("-")
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(1)
            }
        }
    })
}

//! `athena-connect backfill`: one resumable FHIR Bulk `$export` run from the `[backfill]`
//! section (the `bulk-backfill` crate), with the same `[kafka]`, `[schema_registry]` and
//! `[athena]` as `run`. SIGTERM or Ctrl-C stops it after checkpointing; running it again
//! resumes where it stopped.

use std::path::Path;

use athena_client::AthenaClient;
use connector_core::config::Validate;
use connector_core::runtime::{self, RunEnv};

use crate::config::typed;
use crate::{exit, run};

/// Runs the backfill called `name` (part of its checkpoint key). Returns the exit code.
pub async fn backfill(path: &Path, name: &str) -> i32 {
    let mut err = std::io::stderr();
    // The backfill serves no admin API, so its config needs no admin token.
    let config = match run::load_without_admin(path, &mut err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(table) = &config.backfill else {
        eprintln!("error: invalid configuration at `backfill`: the section is missing");
        return exit::USAGE;
    };
    let bf: bulk_backfill::Config = match typed("backfill", table) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if let Err(e) = bf.validate() {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let _telemetry = match connector_core::telemetry::init(&config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let athena = match AthenaClient::new(config.athena.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: athena client: {e}");
            return exit::USAGE;
        }
    };
    let env = RunEnv {
        kafka: config.kafka.clone(),
        registry: config.schema_registry.clone(),
    };
    let (control, handle) = runtime::task(name, "bulk-backfill");
    tokio::spawn(async move {
        run::termination_signal().await;
        tracing::info!("Stop requested; checkpointing the backfill.");
        handle.shutdown();
    });
    match bulk_backfill::run_backfill(name, &bf, &env, &athena, control).await {
        Ok(s) if s.interrupted => {
            eprintln!(
                "interrupted: {} events this run; progress is checkpointed, run again to resume",
                s.events
            );
            exit::INTERRUPTED
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
            exit::OK
        }
        // Refused before it touched anything: not a failure to resume from.
        Err(e @ bulk_backfill::Error::AlreadyRunning { .. }) => {
            eprintln!("error: {e}");
            exit::CONFLICT
        }
        Err(e) => {
            eprintln!("error: {e}; run again to resume");
            exit::FAILURE
        }
    }
}

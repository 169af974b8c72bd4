//! `athena-connect run`, `check` and `offsets show|reset`.
//!
//! `run` starts every connector the config lists, the admin API and the metrics bridge, then
//! waits for SIGTERM or Ctrl-C. On either it asks every connector to stop at once (they stop
//! polling and consuming, finish or hand back in-flight work, commit) and waits at most
//! `shutdown_timeout`; it exits 0 when all stopped in time and 1 otherwise (naming the late
//! ones), so an orchestrator can tell a clean stop from an aborted one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use athena_client::AthenaClient;
use connector_core::avro::RegistryClient;
use connector_core::config::Validate;
use connector_core::runtime::RunEnv;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Readiness};
use crate::config::RootConfig;
use crate::supervisor::Supervisor;
use crate::{connectors, exit, offsets};

/// Options of `athena-connect run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file.
    pub config: PathBuf,
    /// Print a one-line summary (events per feed, commands by outcome, DLQ) every `interval`.
    pub summary: Option<Duration>,
    /// Run only these connectors (`--only`); empty: every connector the file lists.
    pub only: Vec<String>,
}

/// Loads and validates the file, writing the error (which names the key) to `out`.
pub fn load(path: &Path, out: &mut impl Write) -> Result<RootConfig, i32> {
    let config = RootConfig::load(path)
        .and_then(|c| c.validate().map(|()| c))
        .and_then(|c| connectors::validate_all(&c).map(|()| c));
    config.map_err(|e| {
        let _ = writeln!(out, "error: {e}");
        exit::USAGE
    })
}

/// Like [`load`], without validating `[admin]`: for commands that never serve the admin API.
pub fn load_without_admin(path: &Path, out: &mut impl Write) -> Result<RootConfig, i32> {
    let config = RootConfig::load(path)
        .and_then(|c| c.validate_without_admin().map(|()| c))
        .and_then(|c| connectors::validate_all(&c).map(|()| c));
    config.map_err(|e| {
        let _ = writeln!(out, "error: {e}");
        exit::USAGE
    })
}

fn env_of(config: &RootConfig) -> RunEnv {
    RunEnv {
        kafka: config.kafka.clone(),
        registry: config.schema_registry.clone(),
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `athena-connect run`: returns the exit code.
pub async fn run(opts: &RunOptions) -> i32 {
    let mut err = std::io::stderr();
    let mut config = match load(&opts.config, &mut err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.retain_only(&opts.only) {
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
    run_until(config, opts.summary, termination_signal()).await
}

/// Runs until `stop` resolves (the signal in production, anything in tests). Telemetry must
/// already be installed.
pub async fn run_until(
    config: RootConfig,
    summary: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> i32 {
    let athena = match AthenaClient::new(config.athena.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: athena client: {e}");
            return exit::USAGE;
        }
    };
    let registry = match RegistryClient::new(config.schema_registry.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let env = env_of(&config);
    let defs = match connectors::build(&config, &env, &athena) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let count = defs.len();
    let background = CancellationToken::new();
    connector_core::metrics::global().set_build_info(
        env!("CARGO_PKG_VERSION"),
        env!("ATHENA_CONNECT_GIT_COMMIT"),
        env!("ATHENA_CONNECT_RUSTC_VERSION"),
    );

    let admin_listener = if config.admin.enabled {
        match admin::bind(config.admin.listen).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "error: cannot listen on admin.listen = {}: {e}",
                    config.admin.listen
                );
                return exit::FAILURE;
            }
        }
    } else {
        None
    };

    crate::lag::spawn(
        config.kafka.clone(),
        crate::lag::targets(&defs),
        crate::lag::LAG_INTERVAL,
        background.clone(),
    );
    let supervisor = Supervisor::start(defs, config.shutdown_timeout);
    tracing::info!(connectors = count, "athena-connect running.");

    if let (Some(listener), Some(token)) = (admin_listener, config.admin.token.clone()) {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let state = AdminState {
            supervisor: supervisor.clone(),
            token: Arc::new(token),
            kafka: config.kafka.clone(),
            readiness: Arc::new(Readiness::new(
                config.kafka.clone(),
                registry,
                Some(athena.clone()),
                config.admin.readiness_cache,
            )),
            worker_id: addr.clone(),
            offsets_lock: Arc::new(tokio::sync::Mutex::new(())),
            public_metrics: config.admin.public_metrics,
        };
        // A stable line on stderr: scripts and tests read the bound address from it.
        eprintln!("athena-connect: admin API listening on http://{addr}");
        tracing::info!(%addr, "Admin API listening.");
        let token = background.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, state, token.cancelled_owned()).await {
                tracing::error!(error = %e, "Admin API stopped.");
            }
        });
    }

    // The one path of athena request metrics: the client tells this observer every attempt,
    // throttle and quota header (it knows no Prometheus); see docs/architecture.md, Telemetry.
    athena.set_observer(Arc::new(crate::telemetry::MetricsObserver));
    if let Some(every) = summary {
        tokio::spawn(print_summary(every, supervisor.clone(), background.clone()));
    }

    stop.await;
    tracing::info!(
        timeout_secs = config.shutdown_timeout.as_secs(),
        "Shutdown requested; stopping every connector."
    );
    // A second SIGTERM / Ctrl-C while stopping means "now": exit without waiting (at-least-once
    // redoes whatever was not committed).
    let late = tokio::select! {
        late = supervisor.shutdown_all(config.shutdown_timeout) => late,
        _ = termination_signal() => {
            tracing::warn!("Second stop signal; exiting without waiting for the connectors.");
            eprintln!("athena-connect: second stop signal, exiting now");
            return exit::FAILURE;
        }
    };
    background.cancel();
    let given_up = supervisor.given_up();
    if !given_up.is_empty() {
        tracing::error!(failed = ?given_up, "Connectors had failed for good before shutdown.");
        eprintln!(
            "athena-connect: {} had failed and was not restarted (see its last error)",
            given_up.join(", ")
        );
        return exit::FAILURE;
    }
    if late.is_empty() {
        tracing::info!("Every connector stopped; exiting.");
        eprintln!("athena-connect: stopped cleanly");
        exit::OK
    } else {
        tracing::error!(late = ?late, "Connectors did not stop within shutdown_timeout and were aborted.");
        eprintln!(
            "athena-connect: {} did not stop within {:?}",
            late.join(", "),
            config.shutdown_timeout
        );
        exit::FAILURE
    }
}

/// Sums of the metrics the live summary shows, read from the Prometheus text so it shows
/// exactly what `/metrics` shows.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// Records produced per feed.
    pub events_by_feed: BTreeMap<String, u64>,
    /// Commands by outcome.
    pub commands_by_outcome: BTreeMap<String, u64>,
    /// Dead-letter records.
    pub dlq: u64,
    /// Push notifications received.
    pub push_accepted: u64,
}

impl Summary {
    /// Parses the text exposition.
    pub fn from_metrics(text: &str) -> Summary {
        let mut s = Summary::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let v = v as u64;
            let (name, labels) = head.split_once('{').unwrap_or((head, ""));
            let label = |k: &str| -> String {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|x| x.trim_end_matches('}').trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            match name {
                "athena_connect_source_records_produced_total" => {
                    *s.events_by_feed.entry(label("feed")).or_default() += v
                }
                "athena_connect_sink_commands_total" => {
                    *s.commands_by_outcome.entry(label("outcome")).or_default() += v
                }
                "athena_connect_dlq_produce_requests_total" => s.dlq += v,
                "athena_connect_push_notifications_total" if label("result") == "accepted" => {
                    s.push_accepted += v
                }
                _ => {}
            }
        }
        s
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none yet".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        format!(
            "events: {} | commands: {} | push: {} | DLQ: {}",
            join(&self.events_by_feed),
            join(&self.commands_by_outcome),
            self.push_accepted,
            self.dlq
        )
    }
}

async fn print_summary(every: Duration, sup: Arc<Supervisor>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = Summary::from_metrics(&connector_core::metrics::global().render());
        let states: Vec<String> = sup
            .names()
            .iter()
            .filter_map(|n| sup.status(n).ok())
            .map(|st| {
                format!(
                    "{}={}",
                    st.connector,
                    serde_json::to_value(st.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )
            })
            .collect();
        println!("[summary] {} | {}", s.line(), states.join(" "));
    }
}

/// `athena-connect check`: validates the file, then reaches Kafka, the registry and athena,
/// printing one line per check. Returns the exit code.
pub async fn check(path: &Path, out: &mut impl Write) -> i32 {
    let config = match load(path, out) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let names: Vec<String> = config
        .instances()
        .iter()
        .map(|i| format!("{} ({})", i.name, i.kind.name()))
        .collect();
    let _ = writeln!(
        out,
        "ok    config            {} connector(s): {}",
        names.len(),
        names.join(", ")
    );
    let mut failed = false;
    match config
        .kafka
        .check_connectivity(Duration::from_secs(10))
        .await
    {
        Ok(n) => {
            let _ = writeln!(out, "ok    kafka             {n} broker(s) answered");
        }
        Err(e) => {
            failed = true;
            let _ = writeln!(out, "FAIL  kafka             {e}");
        }
    }
    let registry = RegistryClient::new(config.schema_registry.clone());
    match registry {
        Ok(r) => match r.subjects().await {
            Ok(s) => {
                let _ = writeln!(out, "ok    schema_registry   {} subject(s)", s.len());
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(out, "FAIL  schema_registry   {e}");
            }
        },
        Err(e) => {
            failed = true;
            let _ = writeln!(out, "FAIL  schema_registry   {e}");
        }
    }
    let host = config.athena.base_url.host_str().unwrap_or("?").to_string();
    match AthenaClient::new(config.athena.clone()) {
        Ok(c) => match c.check_credentials().await {
            Ok(()) => {
                let _ = writeln!(out, "ok    athena            token granted by {host}");
                // What the enabled paths need against what athena granted (decision 0022).
                let needed = connectors::athena_use(&config)
                    .map(|u| u.scopes())
                    .unwrap_or_default();
                match c.granted_scopes().await {
                    Ok(granted) => {
                        let missing = athena_client::scopes::missing(&needed, &granted);
                        if missing.is_empty() {
                            let _ = writeln!(
                                out,
                                "ok    athena scopes     {} needed, all granted",
                                needed.len()
                            );
                        } else {
                            failed = true;
                            let _ = writeln!(
                                out,
                                "FAIL  athena scopes     missing from the token: {}",
                                missing.join(" ")
                            );
                        }
                    }
                    Err(e) => {
                        failed = true;
                        let _ = writeln!(out, "FAIL  athena scopes     {e}");
                    }
                }
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(out, "FAIL  athena            {host}: {e}");
            }
        },
        Err(e) => {
            failed = true;
            let _ = writeln!(out, "FAIL  athena            {e}");
        }
    }
    if failed { exit::FAILURE } else { exit::OK }
}

/// `athena-connect offsets show|reset --connector NAME`. A reset refuses (exit 4) while a
/// running process still runs that connector (asked through its admin API), while its
/// consumer group has members, or when it would make a sink read commands older than its
/// `ledger_retention` again (unless `reset` names a time within it or forces).
pub async fn offsets(
    path: &Path,
    connector: &str,
    reset: Option<offsets::ResetRequest>,
    out: &mut impl Write,
) -> i32 {
    let config = match load(path, out) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let athena = match AthenaClient::new(config.athena.clone()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "error: athena client: {e}");
            return exit::USAGE;
        }
    };
    let defs = match connectors::build(&config, &env_of(&config), &athena) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return exit::USAGE;
        }
    };
    let Some(def) = defs.into_iter().find(|d| d.name == connector) else {
        let _ = writeln!(
            out,
            "error: no connector named {connector} in {}",
            path.display()
        );
        return exit::USAGE;
    };
    if let Some(req) = reset {
        match running_elsewhere(&config, connector).await {
            Ok(Some(state)) => {
                let _ = writeln!(
                    out,
                    "error: {connector} is {state} in a running athena-connect; stop it first \
                     (PUT /connectors/{connector}/stop) or stop the process"
                );
                return exit::CONFLICT;
            }
            Ok(None) => {}
            Err(msg) => {
                let _ = writeln!(out, "error: {msg}");
                return exit::FAILURE;
            }
        }
        match offsets::active_members(&config.kafka, &def.offsets).await {
            Ok(0) => {}
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "error: the consumer group of {connector} still has {n} member(s); stop them first"
                );
                return exit::CONFLICT;
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return exit::FAILURE;
            }
        }
        match offsets::check_reset(&config.kafka, &def.offsets, &req).await {
            Ok(()) => {}
            Err(e @ offsets::ResetRefused::Retention(_)) => {
                let _ = writeln!(out, "error: {e}");
                return exit::CONFLICT;
            }
            Err(e @ offsets::ResetRefused::BadRequest(_)) => {
                let _ = writeln!(out, "error: {e}");
                return exit::USAGE;
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return exit::FAILURE;
            }
        }
        match offsets::reset(&config.kafka, &def.offsets, &req).await {
            Ok(n) => {
                let _ = writeln!(out, "reset  {connector}  ({n} removed)");
                exit::OK
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                exit::FAILURE
            }
        }
    } else {
        match offsets::show(&config.kafka, &def.offsets).await {
            Ok(v) => {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
                exit::OK
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                exit::FAILURE
            }
        }
    }
}

/// Asks the admin API at `admin.listen` whether it runs `connector` and in which state.
/// `Ok(None)`: nobody serves there, or the connector is stopped.
async fn running_elsewhere(config: &RootConfig, connector: &str) -> Result<Option<String>, String> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let mut addr = config.admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let token = config
        .admin
        .token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = match client
        .get(format!("http://{addr}/connectors/{connector}/status"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => r,
        // Nobody listens: no process of this config is running.
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(format!("cannot ask the admin API at {addr}: {e}")),
    };
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!(
            "the admin API at {addr} answered {}; cannot tell whether {connector} runs",
            resp.status()
        ));
    }
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    let state = body["connector"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string();
    Ok(if state == "STOPPED" {
        None
    } else {
        Some(state)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_the_exposition() {
        let text = "# HELP x\n\
            athena_connect_source_records_produced_total{connector=\"a\",feed=\"patients\"} 3\n\
            athena_connect_source_records_produced_total{connector=\"b\",feed=\"patients\"} 2\n\
            athena_connect_sink_commands_total{connector=\"s\",command=\"BookAppointment\",outcome=\"applied\"} 4\n\
            athena_connect_dlq_produce_requests_total{connector=\"s\"} 1\n";
        let s = Summary::from_metrics(text);
        assert_eq!(s.events_by_feed["patients"], 5);
        assert_eq!(s.commands_by_outcome["applied"], 4);
        assert_eq!(s.dlq, 1);
        assert!(s.line().contains("patients=5"), "{}", s.line());
    }
}

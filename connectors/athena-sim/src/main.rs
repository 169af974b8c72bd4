//! `athena-sim`: runs the athenahealth simulator standalone (demo stack, manual testing).
//! Flags override values from an optional TOML file (`--config`).

use std::net::SocketAddr;
use std::time::Duration;

use athena_sim::{GeneratorConfig, SimConfig, SimState};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(name = "athena-sim", about = "athenahealth API simulator")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089", env = "ATHENA_SIM_LISTEN")]
    listen: SocketAddr,
    /// TOML file with a `SimConfig` (flags below override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Seed for synthetic data and the change generator.
    #[arg(long)]
    seed: Option<u64>,
    /// Practice ids, comma separated.
    #[arg(long, value_delimiter = ',')]
    practices: Option<Vec<u64>>,
    /// Requests per second allowed on API routes.
    #[arg(long)]
    qps: Option<u32>,
    /// Status used for throttling (403 or 429).
    #[arg(long)]
    throttle_status: Option<u16>,
    /// Background change generator rate (steps per second).
    #[arg(long)]
    generate_rate: Option<f64>,
    /// OAuth client id.
    #[arg(long, env = "ATHENA_SIM_CLIENT_ID")]
    client_id: Option<String>,
    /// OAuth client secret.
    #[arg(long, env = "ATHENA_SIM_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Token lifetime, e.g. `1h` or `30s`.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    token_ttl: Option<Duration>,
    /// Subscription delay, e.g. `10s`.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    subscription_delay: Option<Duration>,
    /// Token grants per minute.
    #[arg(long)]
    token_rate_limit: Option<u32>,
}

fn build_config(a: Args) -> Result<(SocketAddr, SimConfig), String> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    if let Some(v) = a.practices {
        cfg.practices = v;
    }
    if a.qps.is_some() {
        cfg.qps_limit = a.qps;
    }
    if let Some(v) = a.throttle_status {
        if v != 403 && v != 429 {
            return Err("--throttle-status must be 403 or 429".into());
        }
        cfg.throttle_status = v;
    }
    if let Some(r) = a.generate_rate {
        let mut g = cfg.generator.take().unwrap_or_default();
        g.rate_per_sec = r;
        cfg.generator = Some(GeneratorConfig { ..g });
    }
    if let Some(v) = a.client_id {
        cfg.client_id = v;
    }
    if let Some(v) = a.client_secret {
        cfg.client_secret = v;
    }
    if let Some(v) = a.token_ttl {
        cfg.token_ttl = v;
    }
    if let Some(v) = a.subscription_delay {
        cfg.subscription_delay = v;
    }
    if let Some(v) = a.token_rate_limit {
        cfg.token_rate_limit_per_minute = v;
    }
    Ok((a.listen, cfg))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,athena_sim=info".into()),
        )
        .init();
    let (listen, cfg) = match build_config(Args::parse()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("athena-sim: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("athena-sim: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    // Never log the client secret.
    tracing::info!(%listen, practices = ?cfg.practices, qps = ?cfg.qps_limit, seed = cfg.seed, "Simulator listening.");
    let state = SimState::new(cfg);
    // Containers stop with SIGTERM, terminals with Ctrl-C: honour both.
    let shutdown = async {
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
        tracing::info!("Shutting down.");
    };
    if let Err(e) = athena_sim::serve(listener, state, shutdown).await {
        eprintln!("athena-sim: server error: {e}");
        std::process::exit(1);
    }
}

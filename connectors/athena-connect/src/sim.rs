//! `athena-connect sim`: the athenahealth simulator from the `athena-sim` crate, so the demo and
//! the tests need only this one binary. Flags mirror the `athena-sim` binary's main ones.

use std::net::SocketAddr;
use std::path::PathBuf;

use athena_sim::{GeneratorConfig, SimConfig, SimState};

use crate::exit;

/// Options of `athena-connect sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimOptions {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089", env = "ATHENA_SIM_LISTEN")]
    pub listen: SocketAddr,
    /// TOML file with a simulator config (`athena-sim`'s `SimConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed for synthetic data and the change generator.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Practice ids, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub practices: Option<Vec<u64>>,
    /// Background change generator rate (changes per second; 0 = off).
    #[arg(long)]
    pub generate_rate: Option<f64>,
    /// OAuth client id the simulator accepts.
    #[arg(long, env = "ATHENA_SIM_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OAuth client secret the simulator accepts.
    #[arg(long, env = "ATHENA_SIM_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Requests per second allowed on API routes (throttles beyond).
    #[arg(long)]
    pub qps: Option<u32>,
    /// How long a changed-data subscription takes to become active, e.g. `20s` (athena: up to
    /// 5 minutes in production, 10-15 in preview; default 0, as in tests).
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub subscription_delay: Option<std::time::Duration>,
}

/// Builds the simulator config from the options.
pub fn sim_config(o: &SimOptions) -> Result<SimConfig, String> {
    let mut cfg = match &o.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(v) = o.seed {
        cfg.seed = v;
    }
    if let Some(v) = &o.practices {
        cfg.practices = v.clone();
    }
    if let Some(r) = o.generate_rate {
        if !(r.is_finite() && r >= 0.0) {
            return Err("--generate-rate must be a number >= 0".into());
        }
        let g = cfg.generator.take().unwrap_or_default();
        cfg.generator = Some(GeneratorConfig {
            rate_per_sec: r,
            ..g
        });
    }
    if let Some(v) = &o.client_id {
        cfg.client_id = v.clone();
    }
    if let Some(v) = &o.client_secret {
        cfg.client_secret = v.clone();
    }
    if o.qps.is_some() {
        cfg.qps_limit = o.qps;
    }
    if let Some(d) = o.subscription_delay {
        cfg.subscription_delay = d;
    }
    Ok(cfg)
}

/// Runs the simulator until SIGTERM or Ctrl-C. Returns the exit code.
pub async fn run(o: &SimOptions) -> i32 {
    let cfg = match sim_config(o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(o.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", o.listen);
            return exit::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // The secret is never printed.
    eprintln!(
        "athena-connect sim: listening on http://{addr} (practices {:?}, generator {} changes/s)",
        cfg.practices,
        cfg.generator
            .as_ref()
            .map(|g| g.rate_per_sec)
            .unwrap_or(0.0)
    );
    let state = SimState::new(cfg);
    match athena_sim::serve(listener, state, crate::run::termination_signal()).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: simulator: {e}");
            exit::FAILURE
        }
    }
}

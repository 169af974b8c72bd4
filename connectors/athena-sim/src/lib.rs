//! athena-sim: an in-process / standalone imitation of athenahealth's athenaOne API, faithful to
//! `shared/docs/athenahealth-api.md` §1-6, for the local demo stack and for tests of the client
//! and the connectors. Where athena's behaviour is unknown the code says `// Guess:` and why;
//! `docs/simulator.md` lists every guess.
//!
//! # Layout
//! - [`config`]: `SimConfig` / `GeneratorConfig` (serde, test-friendly defaults).
//! - [`state`]: `SimState`, the shared state and the test-facing methods (faults, tokens,
//!   counters, ledger, seeding helpers).
//! - [`model`]: the plain data model (practices, patients, appointments, claims, …).
//! - [`clinical`]: US Core clinical FHIR resources (vitals, labs, notes, immunizations, …)
//! - [`clinical_changes`]: the generator's clinical changes (resources, feed rows, push).
//!   seeded per patient and linked to an Encounter.
//! - [`feeds`]: Changed Data Subscriptions — feed table, delayed subscriptions, change rows.
//! - [`guard`]: the gateway — bearer check, QPS bucket, daily quota, practice id, request ids.
//! - [`scopes`]: the per-route scope rule the gateway enforces (decision 0022).
//! - [`faults`]: scripted `FaultRule`s (status, latency, dropped connection, …).
//! - [`generator`]: the deterministic change generator.
//! - [`api`]: one file per API area (oauth, changed, patients, appointments, claims, documents,
//!   reference, fhir, export, admin) and the router.
//! - [`push`]: the FHIR push platform (§7): change outbox, signed id-only notifications,
//!   delivery retries and dead letters (management endpoints in `api/subscriptions.rs`).
//! - [`util`]: the `Params` extractor, athena-style errors, date formats.

pub mod api;
pub mod clinical;
pub mod clinical_changes;
pub mod config;
pub mod faults;
pub mod feeds;
pub mod generator;
pub mod guard;
pub mod model;
pub mod push;
pub mod scopes;
pub mod state;
pub mod util;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use config::{ChangeKind, GeneratorConfig, SimConfig};
pub use faults::{Fault, FaultRule};
pub use model::{LedgerEntry, NewPatient};
pub use state::SimState;

/// The simulator's axum app (no socket): tests can drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: SimState) -> axum::Router {
    api::build_router(state)
}

/// Serves the simulator on `listener` until `shutdown` resolves. Starts the background change
/// generator when `config.generator.rate_per_sec > 0` and stops it on return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: SimState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let generator = spawn_generator(&state);
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(g) = generator {
        g.abort();
    }
    result
}

fn spawn_generator(state: &SimState) -> Option<tokio::task::JoinHandle<()>> {
    let rate = state
        .config()
        .generator
        .as_ref()
        .map(|g| g.rate_per_sec)
        .unwrap_or(0.0);
    if rate.is_nan() || rate <= 0.0 {
        return None;
    }
    let state = state.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            state.generate(1);
        }
    }))
}

/// A simulator running on `127.0.0.1:<random port>` inside the current tokio runtime.
#[derive(Debug)]
pub struct RunningSim {
    /// Bound address.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    /// The state, for injecting faults and reading the ledger.
    pub state: SimState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningSim {
    /// Binds `127.0.0.1:0` and serves a fresh simulator built from `config`.
    pub async fn start(config: SimConfig) -> std::io::Result<RunningSim> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = SimState::new(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Ok(RunningSim {
            addr,
            base_url: format!("http://{addr}"),
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Stops serving; waits up to 5 s for in-flight requests, then aborts.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        // A test that forgets `shutdown` must not leave a server running in its runtime.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

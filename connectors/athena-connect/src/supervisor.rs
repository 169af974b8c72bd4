//! Runs every configured connector as a tokio task, restarts a failed one by itself, and carries
//! out what the admin API and the signal handler ask: pause, resume, stop, restart, shut
//! everything down within a bound.
//!
//! Each connector has a supervising loop. It starts a run with a fresh
//! [`TaskControl`]/[`TaskHandle`] pair; when the run fails with an error whose class is not
//! [`ErrorClass::Fatal`] (Kafka, the registry or athena unreachable, an aborted transaction, a
//! panic, a run that ended without being asked to), it waits a capped exponential back-off with
//! jitter ([`RestartConfig`]) and starts the next run. A fatal error (invalid configuration,
//! refused credentials, fenced by a newer instance) or an elapsed `restart.timeout` leaves the
//! connector FAILED until an operator restarts it. While a connector waits for its restart its
//! state is FAILED, so `/readyz` answers 503.
//!
//! Stop, restart, pause and resume of one connector hold that connector's async lock for their
//! whole duration, so concurrent calls queue and can never leave two instances running. Stop
//! and restart go through [`TaskHandle::shutdown`], so a connector hands back or finishes its
//! in-flight work and commits exactly as it does on SIGTERM. A task that does not return within
//! the bound is aborted: the connectors are at-least-once, so an abort can cause duplicates
//! (never loss), and the process reports it (log line, exit code 1).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connector_core::ErrorClass;
use connector_core::emit::{ConnectorStateChanged, InternalEvent};
use connector_core::runtime::{self, TaskControl, TaskHandle, TaskState, TaskStatus};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Kind, RestartConfig};
use crate::offsets::OffsetsLocation;
use crate::telemetry::ConnectorRestarted;

/// Why one run of a connector ended: a PHI-free message for the status API and the class of the
/// error, which decides whether a restart can heal it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// The connector's own message (never a payload).
    pub message: String,
    /// The error's class, from the connector crate's one `class()`.
    pub class: ErrorClass,
}

/// What one run of a connector returns.
pub type TaskFuture = BoxFuture<'static, Result<(), TaskError>>;

/// Starts one run of a connector with the given control.
pub type Factory = Arc<dyn Fn(TaskControl) -> TaskFuture + Send + Sync>;

/// A connector instance the supervisor can (re)start.
#[derive(Clone)]
pub struct ConnectorDef {
    /// Instance name from the config.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Starts a run.
    pub factory: Factory,
    /// Where its offsets live, for the offsets endpoints and `offsets show|reset`.
    pub offsets: OffsetsLocation,
    /// The Kafka topics it reads or writes, as configured (`GET /connectors/{name}/topics`).
    pub topics: Vec<String>,
    /// How it is restarted after a failure.
    pub restart: RestartConfig,
}

impl std::fmt::Debug for ConnectorDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("offsets", &self.offsets)
            .field("topics", &self.topics)
            .field("restart", &self.restart)
            .finish()
    }
}

/// What the supervisor knows about a connector beyond its current run.
#[derive(Debug, Clone, Default)]
struct Life {
    /// The current run's handle (none before the first start).
    handle: Option<TaskHandle>,
    /// Stopped by an operator (`PUT /connectors/x/stop`) or by shutdown.
    stopped: bool,
    /// Paused by an operator; a run started by an automatic restart starts paused too.
    paused: bool,
    /// Automatic restarts since the process started.
    restarts: u64,
    /// The error that ended the last failed run.
    last_error: Option<String>,
    /// Waiting for an automatic restart until then.
    restart_at: Option<Instant>,
    /// Why there is no automatic restart (fatal error, `restart.timeout` elapsed).
    gave_up: Option<String>,
    /// An operator restart was accepted and has not started the new run yet (RESTARTING).
    restarting: bool,
}

struct Slot {
    def: ConnectorDef,
    /// Held by stop, restart, pause and resume for their whole duration.
    ops: tokio::sync::Mutex<()>,
    life: Mutex<Life>,
    /// The supervising loop of the current start and its stop signal.
    runner: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

/// Why an operation on a connector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// No connector with that name.
    #[error("unknown connector {0}")]
    Unknown(String),
    /// The operation needs another state (e.g. offsets reset while running).
    #[error("connector {name} is {state}; {hint}")]
    Conflict {
        /// Connector name.
        name: String,
        /// Its current state.
        state: String,
        /// What to do instead.
        hint: &'static str,
    },
}

/// A connector's status as the admin API shows it: the current run's state and error, plus the
/// supervisor's restart bookkeeping.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    /// The state and last error.
    #[serde(flatten)]
    pub task: TaskStatus,
    /// Automatic restarts since the process started.
    pub restarts: u64,
    /// Milliseconds until the next automatic restart, while one is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_restart_in_ms: Option<u64>,
    /// Whether the supervisor will restart it by itself after a failure (false after a fatal
    /// error or an elapsed `restart.timeout`: restart it through the admin API once fixed).
    pub auto_restart: bool,
}

/// The set of running connectors.
pub struct Supervisor {
    slots: BTreeMap<String, Arc<Slot>>,
    stop_timeout: Duration,
    /// Set by [`Supervisor::shutdown_all`]: no run starts after it.
    closing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("connectors", &self.names())
            .finish()
    }
}

/// Runs one connector until its token is cancelled: starts a run, and after a failure that can
/// heal waits the back-off and starts the next one.
async fn supervise(slot: Arc<Slot>, stop: CancellationToken, closing: Arc<AtomicBool>) {
    let def = &slot.def;
    let name = def.name.clone();
    // Failures in a row, and when the series began (for `restart.timeout`).
    let mut attempt = 0u32;
    let mut series_start: Option<Instant> = None;
    loop {
        if stop.is_cancelled() || closing.load(Ordering::SeqCst) {
            return;
        }
        let (ctl, handle) = runtime::task(name.clone(), def.kind.name());
        {
            let mut life = slot.life.lock();
            if life.paused {
                handle.pause();
            }
            life.handle = Some(handle.clone());
            life.restart_at = None;
            life.gave_up = None;
        }
        // A stop that raced with this start must still reach the new run.
        let watcher = {
            let (stop, handle) = (stop.clone(), handle.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                handle.shutdown();
            })
        };
        let started = Instant::now();
        let outcome = AssertUnwindSafe((def.factory)(ctl.clone()))
            .catch_unwind()
            .await;
        watcher.abort();
        let asked = ctl.is_shutdown();
        let error = match outcome {
            Ok(Ok(())) if asked => {
                tracing::info!(connector = %name, "Connector stopped.");
                ctl.set_state(TaskState::Stopped);
                return;
            }
            Ok(Ok(())) => TaskError {
                message: handle.status().last_error.unwrap_or_else(|| {
                    "the connector ended without being asked to stop".to_string()
                }),
                class: ErrorClass::Retriable,
            },
            Ok(Err(e)) => e,
            Err(_) => TaskError {
                message: "connector task panicked (a bug); see the logs".to_string(),
                class: ErrorClass::Retriable,
            },
        };
        ctl.report_error(error.message.clone());
        ctl.set_state(TaskState::Failed);
        if asked {
            // Failed while stopping (e.g. a commit refused during shutdown): nothing to restart.
            tracing::warn!(connector = %name, error = %error.message, "Connector failed while stopping.");
            slot.life.lock().last_error = Some(error.message);
            return;
        }
        // A run that stayed up at least `backoff_max` ends the series of failures.
        if started.elapsed() >= def.restart.backoff_max {
            attempt = 0;
            series_start = None;
        }
        let first = *series_start.get_or_insert(started);
        attempt = attempt.saturating_add(1);
        let give_up = if error.class == ErrorClass::Fatal {
            Some(format!(
                "not restarted: the error cannot heal by itself ({}); fix the cause, then POST /connectors/{name}/restart",
                error.class.label()
            ))
        } else if def.restart.timeout.is_some_and(|t| first.elapsed() >= t) {
            Some(format!(
                "not restarted: still failing after restart.timeout; fix the cause, then POST /connectors/{name}/restart"
            ))
        } else {
            None
        };
        if let Some(why) = give_up {
            tracing::error!(connector = %name, error = %error.message, class = error.class.label(), "Connector failed; {why}.");
            let mut life = slot.life.lock();
            life.last_error = Some(error.message);
            life.gave_up = Some(why);
            return;
        }
        let wait = connector_core::retry::Backoff::new(
            def.restart.backoff_initial,
            def.restart.backoff_max,
        )
        .delay(attempt);
        tracing::warn!(connector = %name, error = %error.message, class = error.class.label(), attempt, wait_ms = wait.as_millis() as u64, "Connector failed; restarting it after a back-off.");
        {
            let mut life = slot.life.lock();
            life.last_error = Some(error.message);
            life.restart_at = Some(Instant::now() + wait);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        if stop.is_cancelled() || closing.load(Ordering::SeqCst) {
            return;
        }
        slot.life.lock().restarts += 1;
        ConnectorRestarted {
            connector: &name,
            attempt,
        }
        .emit();
    }
}

impl Slot {
    fn status(&self) -> ConnectorStatus {
        let life = self.life.lock();
        let mut task = match &life.handle {
            Some(h) => h.status(),
            None => TaskStatus {
                connector: self.def.name.clone(),
                kind: self.def.kind.name().to_string(),
                state: TaskState::Unassigned,
                last_error: None,
            },
        };
        if life.restart_at.is_some() || life.gave_up.is_some() {
            task.state = TaskState::Failed;
        }
        if life.stopped {
            task.state = TaskState::Stopped;
        }
        // Set before the old run is stopped: while the restart stops it, it is RESTARTING
        // (Kafka Connect's KIP-745 state), not STOPPED.
        if life.restarting {
            task.state = TaskState::Restarting;
        }
        if task.last_error.is_none() {
            task.last_error = life.last_error.clone();
        }
        if let Some(why) = &life.gave_up
            && let Some(e) = &mut task.last_error
        {
            *e = format!("{e} ({why})");
        }
        ConnectorStatus {
            task,
            restarts: life.restarts,
            next_restart_in_ms: life
                .restart_at
                .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64),
            auto_restart: life.gave_up.is_none(),
        }
    }
}

impl Supervisor {
    /// Starts every connector in `defs`. `stop_timeout` bounds stop and restart.
    pub fn start(defs: Vec<ConnectorDef>, stop_timeout: Duration) -> Arc<Supervisor> {
        let sup = Supervisor {
            slots: defs
                .into_iter()
                .map(|def| {
                    let slot = Slot {
                        def,
                        ops: tokio::sync::Mutex::new(()),
                        life: Mutex::new(Life::default()),
                        runner: Mutex::new(None),
                    };
                    (slot.def.name.clone(), Arc::new(slot))
                })
                .collect(),
            stop_timeout,
            closing: Arc::new(AtomicBool::new(false)),
        };
        for slot in sup.slots.values() {
            tracing::info!(connector = %slot.def.name, kind = slot.def.kind.name(), "Starting connector.");
            sup.spawn(slot);
        }
        sup.refresh_metrics();
        Arc::new(sup)
    }

    /// Starts the supervising loop of `slot` (its previous one has ended).
    fn spawn(&self, slot: &Arc<Slot>) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        let token = CancellationToken::new();
        {
            let mut life = slot.life.lock();
            life.stopped = false;
            life.restarting = false;
        }
        let join = tokio::spawn(supervise(slot.clone(), token.clone(), self.closing.clone()));
        *slot.runner.lock() = Some((token, join));
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, SupervisorError> {
        self.slots
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))
    }

    /// Connector names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// The definition of `name`.
    pub fn def(&self, name: &str) -> Result<ConnectorDef, SupervisorError> {
        self.slot(name).map(|s| s.def.clone())
    }

    /// The status of `name`.
    pub fn status(&self, name: &str) -> Result<TaskStatus, SupervisorError> {
        self.slot(name).map(|s| s.status().task)
    }

    /// The status of `name` with the supervisor's restart bookkeeping.
    pub fn full_status(&self, name: &str) -> Result<ConnectorStatus, SupervisorError> {
        self.slot(name).map(|s| s.status())
    }

    /// The connectors that are FAILED right now (waiting for a restart or given up).
    pub fn failed(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.status().task.state == TaskState::Failed)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Sets `athena_connect_connector_state` to the current state of every connector (called
    /// at every scrape of `/metrics`, so the gauge is never stale).
    pub fn refresh_metrics(&self) {
        for (name, slot) in &self.slots {
            ConnectorStateChanged {
                connector: name,
                state: slot.status().task.state,
            }
            .emit();
        }
    }

    /// Pauses `name` (a source stops polling, a sink stops consuming; state is kept).
    pub async fn pause(&self, name: &str) -> Result<(), SupervisorError> {
        let slot = self.slot(name)?;
        let _op = slot.ops.lock().await;
        let mut life = slot.life.lock();
        if life.stopped {
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: "STOPPED".into(),
                hint: "resume or restart it first",
            });
        }
        tracing::info!(connector = %name, "Pausing connector.");
        life.paused = true;
        if let Some(h) = &life.handle {
            h.pause();
        }
        Ok(())
    }

    /// Resumes `name`; a stopped connector is started again (as Kafka Connect does).
    pub async fn resume(&self, name: &str) -> Result<(), SupervisorError> {
        let slot = self.slot(name)?;
        let _op = slot.ops.lock().await;
        let stopped = {
            let mut life = slot.life.lock();
            life.paused = false;
            if !life.stopped {
                tracing::info!(connector = %name, "Resuming connector.");
                if let Some(h) = &life.handle {
                    h.resume();
                }
            }
            life.stopped
        };
        if stopped {
            self.restart_locked(slot).await;
        }
        Ok(())
    }

    /// Stops `name` and waits (bounded) for it to finish; returns whether it finished in time
    /// (otherwise it was aborted).
    pub async fn stop(&self, name: &str) -> Result<bool, SupervisorError> {
        let slot = self.slot(name)?;
        let _op = slot.ops.lock().await;
        Ok(self.stop_locked(slot).await)
    }

    /// Stops `slot` (its ops lock held by the caller).
    async fn stop_locked(&self, slot: &Arc<Slot>) -> bool {
        let runner = {
            let mut life = slot.life.lock();
            life.stopped = true;
            life.restart_at = None;
            // An operator stop settles a failure: it no longer makes the process exit 1.
            life.gave_up = None;
            if let Some(h) = &life.handle {
                h.shutdown();
            }
            slot.runner.lock().take()
        };
        tracing::info!(connector = %slot.def.name, "Stopping connector.");
        let done = match runner {
            Some((token, join)) => {
                token.cancel();
                join_within(&slot.def.name, join, self.stop_timeout).await
            }
            None => true,
        };
        self.refresh_metrics();
        done
    }

    /// Stops (bounded) and starts `name` again with a fresh control; a connector that gave up
    /// restarting gets a new series of automatic restarts.
    pub async fn restart(&self, name: &str) -> Result<(), SupervisorError> {
        let slot = self.slot(name)?;
        let _op = slot.ops.lock().await;
        self.restart_locked(slot).await;
        Ok(())
    }

    /// Marks `name` RESTARTING at once, for an asynchronous restart (`POST
    /// /connectors/{name}/restart?includeTasks=true` answers 202 with that state, then calls
    /// [`Supervisor::restart`]). A restart that cannot start (shutdown) clears the mark.
    pub fn mark_restarting(&self, name: &str) -> Result<(), SupervisorError> {
        let slot = self.slot(name)?;
        slot.life.lock().restarting = true;
        Ok(())
    }

    async fn restart_locked(&self, slot: &Arc<Slot>) {
        slot.life.lock().restarting = true;
        self.stop_locked(slot).await;
        tracing::info!(connector = %slot.def.name, "Restarting connector.");
        {
            let mut life = slot.life.lock();
            life.gave_up = None;
            life.handle = None;
        }
        self.spawn(slot);
        // No new run during shutdown: it is STOPPED, not RESTARTING forever.
        slot.life.lock().restarting = false;
        self.refresh_metrics();
    }

    /// Asks every connector to stop at once and waits for all of them until `deadline` elapses;
    /// returns the names of those that did not finish in time (they are aborted).
    pub async fn shutdown_all(&self, timeout: Duration) -> Vec<String> {
        self.closing.store(true, Ordering::SeqCst);
        let joins: Vec<(String, JoinHandle<()>)> = self
            .slots
            .iter()
            .filter_map(|(name, slot)| {
                let mut life = slot.life.lock();
                life.stopped = true;
                life.restart_at = None;
                if let Some(h) = &life.handle {
                    h.shutdown();
                }
                slot.runner.lock().take().map(|(token, join)| {
                    token.cancel();
                    (name.clone(), join)
                })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut late = Vec::new();
        for (name, j) in joins {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !join_within(&name, j, left).await {
                late.push(name);
            }
        }
        self.refresh_metrics();
        late
    }

    /// The connectors that failed and will not be restarted by themselves (for the exit code).
    pub fn given_up(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.life.lock().gave_up.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

async fn join_within(name: &str, join: JoinHandle<()>, timeout: Duration) -> bool {
    let abort = join.abort_handle();
    match tokio::time::timeout(timeout, join).await {
        Ok(_) => true,
        Err(_) => {
            tracing::error!(connector = %name, timeout_secs = timeout.as_secs(), "Connector did not stop in time; aborting it (its uncommitted work will be redone after restart).");
            abort.abort();
            false
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Restart settings for tests: fast back-off.
    pub(crate) fn fast_restart() -> RestartConfig {
        RestartConfig {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            timeout: None,
        }
    }

    /// A connector that counts loop iterations while not paused, for tests; `live` counts the
    /// runs alive right now.
    pub(crate) fn counting(
        name: &str,
        runs: Arc<AtomicUsize>,
        ticks: Arc<AtomicUsize>,
    ) -> ConnectorDef {
        counting_live(name, runs, ticks, Arc::new(AtomicUsize::new(0)))
    }

    pub(crate) fn counting_live(
        name: &str,
        runs: Arc<AtomicUsize>,
        ticks: Arc<AtomicUsize>,
        live: Arc<AtomicUsize>,
    ) -> ConnectorDef {
        ConnectorDef {
            name: name.to_string(),
            kind: Kind::WriteBack,
            offsets: OffsetsLocation::None,
            topics: Vec::new(),
            restart: fast_restart(),
            factory: Arc::new(move |mut ctl: TaskControl| {
                let ticks = ticks.clone();
                let live = live.clone();
                runs.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    live.fetch_add(1, Ordering::SeqCst);
                    ctl.set_state(TaskState::Running);
                    let r = loop {
                        ctl.wait_resumed().await;
                        if ctl.is_shutdown() {
                            break Ok(());
                        }
                        ticks.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            _ = ctl.shutdown_requested() => break Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        }
                    };
                    // Some work on the way out, so overlapping runs would show.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    live.fetch_sub(1, Ordering::SeqCst);
                    r
                })
            }),
        }
    }

    /// A connector whose first `fail` runs fail with `class`, then runs like `counting`.
    fn flaky(name: &str, fail: usize, class: ErrorClass, runs: Arc<AtomicUsize>) -> ConnectorDef {
        ConnectorDef {
            name: name.to_string(),
            kind: Kind::ChangedData,
            offsets: OffsetsLocation::None,
            topics: Vec::new(),
            restart: fast_restart(),
            factory: Arc::new(move |ctl: TaskControl| {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n < fail {
                        return Err(TaskError {
                            message: format!("schema registry unavailable (run {n})"),
                            class,
                        });
                    }
                    ctl.set_state(TaskState::Running);
                    ctl.shutdown_requested().await;
                    Ok(())
                })
            }),
        }
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn lifecycle() {
        let runs = Arc::new(AtomicUsize::new(0));
        let ticks = Arc::new(AtomicUsize::new(0));
        let stuck = ConnectorDef {
            name: "stuck".into(),
            kind: Kind::ChangedData,
            offsets: OffsetsLocation::None,
            topics: Vec::new(),
            restart: fast_restart(),
            factory: Arc::new(|_ctl| Box::pin(futures::future::pending())),
        };
        let failing = ConnectorDef {
            name: "failing".into(),
            kind: Kind::ChangedData,
            offsets: OffsetsLocation::None,
            topics: Vec::new(),
            restart: fast_restart(),
            factory: Arc::new(|_ctl| {
                Box::pin(async {
                    Err(TaskError {
                        message: "athena credentials refused (fatal)".to_string(),
                        class: ErrorClass::Fatal,
                    })
                })
            }),
        };
        let sup = Supervisor::start(
            vec![counting("a", runs.clone(), ticks.clone()), stuck, failing],
            Duration::from_millis(200),
        );
        assert_eq!(sup.names(), vec!["a", "failing", "stuck"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sup.status("a").unwrap().state, TaskState::Running);
        let f = sup.full_status("failing").unwrap();
        assert_eq!(f.task.state, TaskState::Failed);
        assert!(f.task.last_error.unwrap().contains("fatal"));
        assert!(!f.auto_restart, "a fatal error is not restarted");
        assert_eq!(f.restarts, 0);
        assert_eq!(sup.failed(), vec!["failing".to_string()]);

        sup.pause("a").await.unwrap();
        assert_eq!(sup.status("a").unwrap().state, TaskState::Paused);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let frozen = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(ticks.load(Ordering::SeqCst) <= frozen + 1);
        sup.resume("a").await.unwrap();
        let moved = async {
            while ticks.load(Ordering::SeqCst) <= frozen + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), moved)
            .await
            .expect("resumed task makes progress");

        assert!(sup.stop("a").await.unwrap());
        assert_eq!(sup.status("a").unwrap().state, TaskState::Stopped);
        assert!(sup.pause("a").await.is_err());
        sup.resume("a").await.unwrap();
        wait_for("a second run", || runs.load(Ordering::SeqCst) == 2).await;
        wait_for("running again", || {
            sup.status("a").unwrap().state == TaskState::Running
        })
        .await;
        sup.restart("a").await.unwrap();
        wait_for("a third run", || runs.load(Ordering::SeqCst) == 3).await;
        assert_eq!(
            sup.status("nope").unwrap_err(),
            SupervisorError::Unknown("nope".into())
        );

        let late = sup.shutdown_all(Duration::from_millis(300)).await;
        assert_eq!(late, vec!["stuck".to_string()]);
        assert_eq!(sup.status("a").unwrap().state, TaskState::Stopped);
    }

    #[tokio::test]
    async fn a_failure_that_can_heal_is_restarted_with_back_off() {
        let runs = Arc::new(AtomicUsize::new(0));
        let sup = Supervisor::start(
            vec![flaky("heals", 3, ErrorClass::Retriable, runs.clone())],
            Duration::from_secs(1),
        );
        wait_for("running after three failed starts", || {
            sup.status("heals").unwrap().state == TaskState::Running
        })
        .await;
        let st = sup.full_status("heals").unwrap();
        assert_eq!(st.restarts, 3, "{st:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert!(st.auto_restart);
        assert!(sup.failed().is_empty());
        sup.refresh_metrics();
        let text = connector_core::metrics::global().render();
        assert!(
            text.contains(
                "athena_connect_connector_state{connector=\"heals\",state=\"RUNNING\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("athena_connect_connector_state{connector=\"heals\",state=\"FAILED\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("athena_connect_connector_restarts_total{connector=\"heals\"} 3"),
            "{text}"
        );
        sup.shutdown_all(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn failed_while_waiting_for_restart_and_stop_ends_the_wait() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut def = flaky("slow", usize::MAX, ErrorClass::Retriable, runs.clone());
        def.restart.backoff_initial = Duration::from_secs(30);
        def.restart.backoff_max = Duration::from_secs(60);
        let sup = Supervisor::start(vec![def], Duration::from_secs(1));
        wait_for("failed once", || {
            sup.full_status("slow")
                .unwrap()
                .next_restart_in_ms
                .is_some()
        })
        .await;
        let st = sup.full_status("slow").unwrap();
        assert_eq!(st.task.state, TaskState::Failed);
        assert!(
            st.task.last_error.as_deref().unwrap().contains("registry"),
            "{st:?}"
        );
        assert_eq!(sup.failed(), vec!["slow".to_string()]);
        // Stop does not wait for the back-off.
        let stopped = tokio::time::timeout(Duration::from_secs(2), sup.stop("slow"))
            .await
            .expect("stop ends the back-off wait")
            .unwrap();
        assert!(stopped);
        assert_eq!(sup.status("slow").unwrap().state, TaskState::Stopped);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn restart_timeout_gives_up() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut def = flaky("gone", usize::MAX, ErrorClass::Retriable, runs.clone());
        def.restart.timeout = Some(Duration::from_millis(100));
        let sup = Supervisor::start(vec![def], Duration::from_secs(1));
        wait_for("gave up", || !sup.full_status("gone").unwrap().auto_restart).await;
        let st = sup.full_status("gone").unwrap();
        assert_eq!(st.task.state, TaskState::Failed);
        assert!(
            st.task
                .last_error
                .as_deref()
                .unwrap()
                .contains("restart.timeout"),
            "{st:?}"
        );
        assert_eq!(sup.given_up(), vec!["gone".to_string()]);
        let n = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runs.load(Ordering::SeqCst), n, "no restart after giving up");
    }

    #[tokio::test]
    async fn a_panic_is_restarted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let def = ConnectorDef {
            name: "bug".into(),
            kind: Kind::FhirPush,
            offsets: OffsetsLocation::None,
            topics: Vec::new(),
            restart: fast_restart(),
            factory: Arc::new(move |ctl: TaskControl| {
                let n = r.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n == 0 {
                        panic!("boom");
                    }
                    ctl.set_state(TaskState::Running);
                    ctl.shutdown_requested().await;
                    Ok(())
                })
            }),
        };
        let sup = Supervisor::start(vec![def], Duration::from_secs(1));
        wait_for("running after the panic", || {
            sup.status("bug").unwrap().state == TaskState::Running
        })
        .await;
        assert_eq!(sup.full_status("bug").unwrap().restarts, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_control_calls_leave_one_instance() {
        let runs = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(AtomicUsize::new(0));
        let sup = Supervisor::start(
            vec![counting_live(
                "x",
                runs.clone(),
                Arc::new(AtomicUsize::new(0)),
                live.clone(),
            )],
            Duration::from_secs(2),
        );
        let max_live = Arc::new(AtomicUsize::new(0));
        let probe = {
            let (live, max_live) = (live.clone(), max_live.clone());
            tokio::spawn(async move {
                loop {
                    max_live.fetch_max(live.load(Ordering::SeqCst), Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let sup = sup.clone();
                tokio::spawn(async move {
                    match i % 4 {
                        0 | 1 => sup.restart("x").await,
                        2 => sup.resume("x").await,
                        _ => sup.pause("x").await.and(sup.resume("x").await),
                    }
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        wait_for("running", || {
            sup.status("x").unwrap().state == TaskState::Running
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        probe.abort();
        assert_eq!(live.load(Ordering::SeqCst), 1, "exactly one run alive");
        assert_eq!(max_live.load(Ordering::SeqCst), 1, "never two at once");
        // A restart queued behind another may stop a run before it started: at most one run per
        // restart call.
        assert!(runs.load(Ordering::SeqCst) <= 1 + 8);
    }
}

//! The lifecycle contract between the process that runs connectors (`athena-connect run`, its
//! admin API) and each connector task.
//!
//! A task receives a [`TaskControl`] and must:
//! - return promptly (finishing or handing back in-flight work, committing what is done) once
//!   [`TaskControl::shutdown_requested`] resolves: SIGTERM and `stop`/`restart` go through it;
//! - stop polling or consuming while [`TaskControl::is_paused`] (a sink pauses its partitions, a
//!   source stops polling), keeping its state, and continue on resume;
//! - report its state and last error (PHI-free) through [`TaskControl::set_state`] and
//!   [`TaskControl::report_error`], which the admin API's status endpoint shows.
//!
//! The runner keeps the matching [`TaskHandle`].
//!
//! A start-up step that needs a server (Kafka, the registry, athena) either retries in place
//! with [`retry_startup`] (where the task must keep serving meanwhile, e.g. a webhook receiver)
//! or returns its error: the supervisor of `athena-connect run` restarts a task that failed
//! with a non-fatal error, with a capped exponential back-off ([`crate::retry::Backoff`]).

use std::sync::Arc;
use std::time::Duration;

use crate::ErrorClass;
use crate::retry::Backoff;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The shared settings every connector task gets from the root config (`[kafka]`,
/// `[schema_registry]`). The athena client is passed beside it, since this crate does not
/// depend on `athena-client`.
#[derive(Debug, Clone)]
pub struct RunEnv {
    /// How to reach Kafka.
    pub kafka: crate::kafka::KafkaConfig,
    /// How to reach the schema registry.
    pub registry: crate::avro::RegistryConfig,
}

/// A task's state, in Kafka Connect's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Starting up (loading state, checking subscriptions).
    Unassigned,
    /// Working.
    Running,
    /// Paused by an operator.
    Paused,
    /// Stopped with an error; see `last_error`.
    Failed,
    /// Stopped on request.
    Stopped,
    /// Being stopped and started again on an operator's request (Kafka Connect's KIP-745
    /// state); only the supervisor sets it.
    Restarting,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Unassigned,
        TaskState::Running,
        TaskState::Paused,
        TaskState::Failed,
        TaskState::Stopped,
        TaskState::Restarting,
    ];

    /// The status API's name (`RUNNING`, ...), also the `state` label of
    /// `athena_connect_connector_state`.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Unassigned => "UNASSIGNED",
            TaskState::Running => "RUNNING",
            TaskState::Paused => "PAUSED",
            TaskState::Failed => "FAILED",
            TaskState::Stopped => "STOPPED",
            TaskState::Restarting => "RESTARTING",
        }
    }
}

/// The back-off of start-up steps retried in place: 500 ms doubling to 30 s, full jitter.
pub const STARTUP_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// Retries the start-up step `op` with [`STARTUP_BACKOFF`] (through the one retry helper,
/// [`crate::retry::retry`]) while its error is not fatal, reporting each failure through
/// `control`; returns the last error when `is_fatal` says so or shutdown is requested.
pub async fn retry_startup<T, E, F, Fut>(
    control: &TaskControl,
    what: &str,
    is_fatal: impl Fn(&E) -> bool,
    op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    crate::retry::retry(
        &STARTUP_BACKOFF,
        &control.shutdown_token(),
        |e: &E| {
            if is_fatal(e) {
                ErrorClass::Fatal
            } else {
                ErrorClass::Retriable
            }
        },
        |e, a| {
            tracing::warn!(error = %e, attempt = a.number, step = what, "Start-up step failed; retrying.");
            control.report_error(format!("{what}: {e}"));
        },
        op,
    )
    .await
}

/// What the admin API shows about a task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// Connector name from the config.
    pub connector: String,
    /// Connector kind (`changed-data-source`, `write-back-sink`, ...).
    pub kind: String,
    /// Current state.
    pub state: TaskState,
    /// Last error, PHI-free (class and our own message; never a payload).
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    shutdown: CancellationToken,
    paused_tx: watch::Sender<bool>,
    status: Mutex<TaskStatus>,
}

/// The task's side: observe shutdown and pause, report state.
#[derive(Debug, Clone)]
pub struct TaskControl {
    shared: Arc<Shared>,
    paused_rx: watch::Receiver<bool>,
}

/// The runner's side: request shutdown, pause, resume; read status.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    shared: Arc<Shared>,
}

/// A connected control/handle pair for one task.
pub fn task(connector: impl Into<String>, kind: impl Into<String>) -> (TaskControl, TaskHandle) {
    let (paused_tx, paused_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        shutdown: CancellationToken::new(),
        paused_tx,
        status: Mutex::new(TaskStatus {
            connector: connector.into(),
            kind: kind.into(),
            state: TaskState::Unassigned,
            last_error: None,
        }),
    });
    (
        TaskControl {
            shared: shared.clone(),
            paused_rx,
        },
        TaskHandle { shared },
    )
}

impl TaskControl {
    /// Resolves when the task must stop.
    pub async fn shutdown_requested(&self) {
        self.shared.shutdown.cancelled().await
    }
    /// Whether the task must stop.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }
    /// The cancellation token (to hand to sub-tasks).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }
    /// Whether an operator paused the task.
    pub fn is_paused(&self) -> bool {
        *self.paused_rx.borrow()
    }
    /// Waits until the task is not paused (or shutdown is requested).
    pub async fn wait_resumed(&mut self) {
        while *self.paused_rx.borrow() && !self.is_shutdown() {
            tokio::select! {
                r = self.paused_rx.changed() => if r.is_err() { return },
                _ = self.shared.shutdown.cancelled() => return,
            }
        }
    }
    /// Resolves when an operator pauses or resumes the task (or shutdown is requested), so a
    /// loop can `select!` on it and act on a pause at once instead of at its next turn.
    pub async fn pause_changed(&mut self) {
        tokio::select! {
            r = self.paused_rx.changed() => if r.is_err() { std::future::pending::<()>().await },
            _ = self.shared.shutdown.cancelled() => {}
        }
    }
    /// Sets the task's state. `Running` while an operator has the task paused is recorded as
    /// `Paused` (a pause can arrive before the task reports that it started).
    pub fn set_state(&self, state: TaskState) {
        let state = if state == TaskState::Running && *self.paused_rx.borrow() {
            TaskState::Paused
        } else {
            state
        };
        self.shared.status.lock().state = state;
    }
    /// Records the last error (must be PHI-free); does not change the state.
    pub fn report_error(&self, message: impl Into<String>) {
        self.shared.status.lock().last_error = Some(message.into());
    }
    /// Clears the last error after recovery.
    pub fn clear_error(&self) {
        self.shared.status.lock().last_error = None;
    }
}

impl TaskHandle {
    /// Asks the task to stop.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
    /// Pauses the task.
    pub fn pause(&self) {
        self.shared.paused_tx.send_replace(true);
        let mut s = self.shared.status.lock();
        if s.state == TaskState::Running {
            s.state = TaskState::Paused;
        }
    }
    /// Resumes the task.
    pub fn resume(&self) {
        self.shared.paused_tx.send_replace(false);
        let mut s = self.shared.status.lock();
        if s.state == TaskState::Paused {
            s.state = TaskState::Running;
        }
    }
    /// Whether the task is paused.
    pub fn is_paused(&self) -> bool {
        *self.shared.paused_tx.borrow()
    }
    /// A snapshot of the task's status.
    pub fn status(&self) -> TaskStatus {
        self.shared.status.lock().clone()
    }
}

/// Installs aws-lc-rs as rustls' process-wide crypto provider. The dependency tree compiles in
/// both of rustls' providers (reqwest/tonic bring ring, the OTLP exporter aws-lc-rs), and with
/// two available rustls refuses to pick one: any TLS config built from the process default
/// (tonic, a reqwest client without an explicit provider) would panic. Call it first thing in
/// `main`; a second call (or a provider installed earlier) is harmless.
pub fn install_tls_provider() {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retry_startup_retries_until_ok_and_stops_on_fatal() {
        let (ctl, handle) = task("src", "changed-data-source");
        let mut calls = 0;
        let r: Result<u32, String> = retry_startup(
            &ctl,
            "open",
            |e: &String| e == "fatal",
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 2 {
                        Err("down".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(2));
        assert_eq!(handle.status().last_error.as_deref(), Some("open: down"));
        let r: Result<u32, String> = retry_startup(
            &ctl,
            "open",
            |e: &String| e == "fatal",
            || async { Err("fatal".to_string()) },
        )
        .await;
        assert_eq!(r, Err("fatal".to_string()));
    }

    #[tokio::test]
    async fn pause_resume_shutdown() {
        let (mut ctl, handle) = task("src", "changed-data-source");
        ctl.set_state(TaskState::Running);
        handle.pause();
        assert!(ctl.is_paused());
        assert_eq!(handle.status().state, TaskState::Paused);
        let waiter = tokio::spawn(async move {
            ctl.wait_resumed().await;
            ctl
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        handle.resume();
        let ctl = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(handle.status().state, TaskState::Running);
        ctl.report_error("athena unavailable (retriable)");
        assert!(handle.status().last_error.is_some());
        handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), ctl.shutdown_requested())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn pause_changed_wakes_on_pause() {
        let (mut ctl, handle) = task("sink", "write-back-sink");
        let waiter = tokio::spawn(async move {
            ctl.pause_changed().await;
            ctl.is_paused()
        });
        tokio::task::yield_now().await;
        handle.pause();
        let paused = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(paused);
    }
}

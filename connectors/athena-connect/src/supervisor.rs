//! Runs every configured connector as a tokio task and carries out what the admin API and the
//! signal handler ask: pause, resume, stop, restart, shut everything down within a bound.
//!
//! Each run of a connector gets a fresh [`TaskControl`]/[`TaskHandle`] pair; stop and restart
//! go through [`TaskHandle::shutdown`], so a connector hands back or finishes its in-flight work
//! and commits exactly as it does on SIGTERM. A task that does not return within the bound is
//! aborted: the connectors are at-least-once, so an abort can cause duplicates (never loss), and
//! the process reports it (log line, exit code 1).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use connector_core::runtime::{self, TaskControl, TaskHandle, TaskState, TaskStatus};
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::config::Kind;
use crate::offsets::OffsetsLocation;

/// What one run of a connector returns: `Err` carries a PHI-free message for the status API.
pub type TaskFuture = BoxFuture<'static, Result<(), String>>;

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
}

impl std::fmt::Debug for ConnectorDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("offsets", &self.offsets)
            .finish()
    }
}

struct Slot {
    def: ConnectorDef,
    handle: TaskHandle,
    join: Option<JoinHandle<()>>,
    /// Stopped by an operator (`PUT /connectors/x/stop`) or by shutdown.
    stopped: bool,
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

/// The set of running connectors.
pub struct Supervisor {
    slots: Mutex<BTreeMap<String, Slot>>,
    stop_timeout: Duration,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("connectors", &self.names())
            .finish()
    }
}

fn spawn(def: &ConnectorDef) -> (TaskHandle, JoinHandle<()>) {
    let (ctl, handle) = runtime::task(def.name.clone(), def.kind.name());
    let fut = (def.factory)(ctl.clone());
    let name = def.name.clone();
    let join = tokio::spawn(async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Ok(())) => {
                tracing::info!(connector = %name, "Connector stopped.");
                ctl.set_state(TaskState::Stopped);
            }
            Ok(Err(message)) => {
                tracing::error!(connector = %name, error = %message, "Connector failed; restart it through the admin API once the cause is fixed.");
                ctl.report_error(message);
                ctl.set_state(TaskState::Failed);
            }
            Err(_) => {
                tracing::error!(connector = %name, "Connector task panicked.");
                ctl.report_error("connector task panicked (a bug); see the logs");
                ctl.set_state(TaskState::Failed);
            }
        }
    });
    (handle, join)
}

impl Supervisor {
    /// Starts every connector in `defs`. `stop_timeout` bounds stop and restart.
    pub fn start(defs: Vec<ConnectorDef>, stop_timeout: Duration) -> Arc<Supervisor> {
        let mut slots = BTreeMap::new();
        for def in defs {
            tracing::info!(connector = %def.name, kind = def.kind.name(), "Starting connector.");
            let (handle, join) = spawn(&def);
            slots.insert(
                def.name.clone(),
                Slot {
                    def,
                    handle,
                    join: Some(join),
                    stopped: false,
                },
            );
        }
        Arc::new(Supervisor {
            slots: Mutex::new(slots),
            stop_timeout,
        })
    }

    /// Connector names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.slots.lock().keys().cloned().collect()
    }

    /// The definition of `name`.
    pub fn def(&self, name: &str) -> Result<ConnectorDef, SupervisorError> {
        self.slots
            .lock()
            .get(name)
            .map(|s| s.def.clone())
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))
    }

    /// The status of `name`.
    pub fn status(&self, name: &str) -> Result<TaskStatus, SupervisorError> {
        let slots = self.slots.lock();
        let slot = slots
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
        let mut st = slot.handle.status();
        if slot.stopped && st.state != TaskState::Failed {
            st.state = TaskState::Stopped;
        }
        Ok(st)
    }

    /// Pauses `name` (a source stops polling, a sink stops consuming; state is kept).
    pub fn pause(&self, name: &str) -> Result<(), SupervisorError> {
        let slots = self.slots.lock();
        let slot = slots
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
        if slot.stopped {
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: "STOPPED".into(),
                hint: "resume or restart it first",
            });
        }
        tracing::info!(connector = %name, "Pausing connector.");
        slot.handle.pause();
        Ok(())
    }

    /// Resumes `name`; a stopped connector is started again (as Kafka Connect does).
    pub async fn resume(&self, name: &str) -> Result<(), SupervisorError> {
        let stopped = {
            let slots = self.slots.lock();
            let slot = slots
                .get(name)
                .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
            if !slot.stopped {
                tracing::info!(connector = %name, "Resuming connector.");
                slot.handle.resume();
            }
            slot.stopped
        };
        if stopped {
            self.restart(name).await?;
        }
        Ok(())
    }

    /// Stops `name` and waits (bounded) for it to finish; returns whether it finished in time
    /// (otherwise it was aborted).
    pub async fn stop(&self, name: &str) -> Result<bool, SupervisorError> {
        let (handle, join) = {
            let mut slots = self.slots.lock();
            let slot = slots
                .get_mut(name)
                .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
            slot.stopped = true;
            (slot.handle.clone(), slot.join.take())
        };
        tracing::info!(connector = %name, "Stopping connector.");
        handle.shutdown();
        Ok(match join {
            Some(j) => join_within(name, j, self.stop_timeout).await,
            None => true,
        })
    }

    /// Stops (bounded) and starts `name` again with a fresh control.
    pub async fn restart(&self, name: &str) -> Result<(), SupervisorError> {
        self.stop(name).await?;
        let mut slots = self.slots.lock();
        let slot = slots
            .get_mut(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?;
        tracing::info!(connector = %name, "Restarting connector.");
        let (handle, join) = spawn(&slot.def);
        slot.handle = handle;
        slot.join = Some(join);
        slot.stopped = false;
        Ok(())
    }

    /// Asks every connector to stop at once and waits for all of them until `deadline` elapses;
    /// returns the names of those that did not finish in time (they are aborted).
    pub async fn shutdown_all(&self, timeout: Duration) -> Vec<String> {
        let joins: Vec<(String, JoinHandle<()>)> = {
            let mut slots = self.slots.lock();
            slots
                .iter_mut()
                .filter_map(|(name, s)| {
                    s.stopped = true;
                    s.handle.shutdown();
                    s.join.take().map(|j| (name.clone(), j))
                })
                .collect()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut late = Vec::new();
        for (name, j) in joins {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !join_within(&name, j, left).await {
                late.push(name);
            }
        }
        late
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

    /// A connector that counts loop iterations while not paused, for tests.
    pub(crate) fn counting(
        name: &str,
        runs: Arc<AtomicUsize>,
        ticks: Arc<AtomicUsize>,
    ) -> ConnectorDef {
        ConnectorDef {
            name: name.to_string(),
            kind: Kind::WriteBack,
            offsets: OffsetsLocation::None,
            factory: Arc::new(move |mut ctl: TaskControl| {
                let ticks = ticks.clone();
                runs.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    ctl.set_state(TaskState::Running);
                    loop {
                        ctl.wait_resumed().await;
                        if ctl.is_shutdown() {
                            return Ok(());
                        }
                        ticks.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            _ = ctl.shutdown_requested() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        }
                    }
                })
            }),
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
            factory: Arc::new(|_ctl| Box::pin(futures::future::pending())),
        };
        let failing = ConnectorDef {
            name: "failing".into(),
            kind: Kind::ChangedData,
            offsets: OffsetsLocation::None,
            factory: Arc::new(|_ctl| {
                Box::pin(async { Err("athena credentials refused (fatal)".to_string()) })
            }),
        };
        let sup = Supervisor::start(
            vec![counting("a", runs.clone(), ticks.clone()), stuck, failing],
            Duration::from_millis(200),
        );
        assert_eq!(sup.names(), vec!["a", "failing", "stuck"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sup.status("a").unwrap().state, TaskState::Running);
        let f = sup.status("failing").unwrap();
        assert_eq!(f.state, TaskState::Failed);
        assert!(f.last_error.unwrap().contains("fatal"));

        sup.pause("a").unwrap();
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
        assert!(sup.pause("a").is_err());
        sup.resume("a").await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        sup.restart("a").await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(
            sup.status("nope").unwrap_err(),
            SupervisorError::Unknown("nope".into())
        );

        let late = sup.shutdown_all(Duration::from_millis(300)).await;
        assert_eq!(late, vec!["stuck".to_string()]);
        assert_eq!(sup.status("a").unwrap().state, TaskState::Stopped);
    }
}

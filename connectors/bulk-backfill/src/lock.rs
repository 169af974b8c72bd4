//! One run per export at a time, with Kafka as the lock (decision 0026). Two runs of the same
//! backfill (same name and practice) would kick off two `$export`s and both write one
//! checkpoint key, so the second overwrites the first's progress; there is no coordinator to
//! ask, so the lock is a consumer group:
//!
//! - the group `<checkpoint_topic>.lock.<name>.<practice>` (one per checkpoint key, the state
//!   two runs would fight over) subscribes to a one-partition, never-written topic
//!   (`<checkpoint_topic>.lock`); **the lock is that partition**;
//! - before joining, the group must be empty (described through the group list); members that
//!   are still there after [`RELEASE_WAIT`] (longer than the session timeout, so a run that was
//!   SIGKILLed has been expired by then and its restart goes ahead) belong to a live run, and
//!   the second run is refused with their client ids and hosts in the message;
//! - two runs that start within the same instant both find it empty and both join; the
//!   cooperative-sticky assignor gives the one partition to exactly one of them, and the other,
//!   left without it for [`ACQUIRE_TIMEOUT`], is refused (never the run that holds it: sticky
//!   assignment does not move a partition to a newcomer);
//! - the running job stays a member: a thread polls the group consumer until the lock is
//!   dropped, and dropping it leaves the group, so the next run may start at once;
//! - a run that crashed without leaving holds the lock for the group's session timeout
//!   ([`SESSION_TIMEOUT`], the broker's minimum by default); a run that lost the partition (it stalled past the session timeout
//!   and another run took over) sees [`ExportLock::lost`] and stops before its next checkpoint
//!   write, so it never overwrites the new holder's progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use connector_core::CoreError;
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::Error;

/// How long a run that joined the lock group waits for its partition before it is refused.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(20);

/// The lock group's session timeout: how long a crashed run keeps holding the lock (the
/// broker's default `group.min.session.timeout.ms`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// How long a starting run waits for the group to empty before it is refused: past the session
/// timeout, so only a live run's members are left.
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);

const JOINING: u8 = 0;
const HELD: u8 = 1;
const LOST: u8 = 2;

/// The consumer group that is the lock of backfill `name` for `practice` checkpointed on
/// `checkpoint_topic` (one lock per checkpoint key).
pub fn lock_group(checkpoint_topic: &str, name: &str, practice: u64) -> String {
    format!("{checkpoint_topic}.lock.{name}.{practice}")
}

/// The one-partition topic the lock group subscribes to (nothing is ever written to it).
pub fn lock_topic(checkpoint_topic: &str) -> String {
    format!("{checkpoint_topic}.lock")
}

/// A held lock; dropping it leaves the group (releases the lock).
#[derive(Debug)]
pub struct ExportLock {
    state: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportLock {
    /// The partition was taken away (this run stalled past the session timeout and another
    /// run may hold the lock now): stop before writing the checkpoint again.
    pub fn lost(&self) -> bool {
        self.state.load(Ordering::Acquire) == LOST
    }
}

impl Drop for ExportLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes the lock of backfill `name` for `practice`, or refuses with
/// [`Error::AlreadyRunning`] when another run holds it.
pub async fn acquire(
    kafka: &KafkaConfig,
    checkpoint_topic: &str,
    name: &str,
    practice: u64,
) -> Result<ExportLock, Error> {
    let group = lock_group(checkpoint_topic, name, practice);
    let topic = lock_topic(checkpoint_topic);
    let admin = kafka.build_admin()?;
    ensure_topics(
        &admin,
        kafka.replication_factor,
        &[TopicSpec::new(&topic, 1)],
    )
    .await?;

    let mut cfg = kafka.consumer_config(&group);
    cfg.set(
        "session.timeout.ms",
        SESSION_TIMEOUT.as_millis().to_string(),
    );
    cfg.set("heartbeat.interval.ms", "2000");
    // Named in a refused run's message, so an operator can tell which run holds the lock.
    cfg.set(
        "client.id",
        format!(
            "{}-backfill-{name}-pid{}",
            kafka.client_id,
            std::process::id()
        ),
    );
    let consumer: BaseConsumer = cfg.create().map_err(|source| CoreError::Kafka {
        operation: "create backfill lock consumer",
        source,
    })?;
    let consumer = tokio::task::spawn_blocking({
        let group = group.clone();
        move || -> Result<BaseConsumer, Error> {
            let deadline = std::time::Instant::now() + RELEASE_WAIT;
            loop {
                let holders = members(&consumer, &group)?;
                if holders.is_empty() {
                    return Ok(consumer);
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Error::AlreadyRunning {
                        group,
                        holders: holders.join(", "),
                    });
                }
                tracing::info!(group = %group, "The backfill lock group has members; waiting for a crashed run's session to expire.");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    })
    .await
    .map_err(|e| Error::Lock(e.to_string()))??;
    consumer
        .subscribe(&[topic.as_str()])
        .map_err(|source| CoreError::Kafka {
            operation: "join the backfill lock group",
            source,
        })?;

    let state = Arc::new(AtomicU8::new(JOINING));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (state, stop, topic) = (state.clone(), stop.clone(), topic.clone());
        std::thread::Builder::new()
            .name("backfill-lock".into())
            .spawn(move || hold(consumer, &topic, &state, &stop))
            .map_err(|e| Error::Lock(e.to_string()))?
    };
    let lock = ExportLock {
        state,
        stop,
        thread: Some(thread),
    };
    let deadline = tokio::time::Instant::now() + ACQUIRE_TIMEOUT;
    while lock.state.load(Ordering::Acquire) != HELD {
        if tokio::time::Instant::now() >= deadline {
            // Dropping `lock` leaves the group, so the holder is not disturbed.
            return Err(Error::AlreadyRunning {
                group,
                holders: "another run that joined at the same time".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(group = %group, "Backfill lock taken.");
    Ok(lock)
}

/// Polls the lock group until `stop`, keeping this run a member, and tracks whether it holds
/// the partition. Dropping the consumer at the end leaves the group.
fn hold(consumer: BaseConsumer, topic: &str, state: &AtomicU8, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        // Nothing is ever written to the topic; polling serves the group protocol.
        let _ = consumer.poll(Duration::from_millis(200));
        let holds = consumer.assignment().is_ok_and(|a| {
            a.elements_for_topic(topic)
                .iter()
                .any(|e| e.partition() == 0)
        });
        let now = state.load(Ordering::Acquire);
        if holds && now == JOINING {
            state.store(HELD, Ordering::Release);
        } else if !holds && now == HELD {
            tracing::error!(topic = %topic, "Backfill lock lost (this run stalled past the session timeout?); stopping before the next checkpoint write.");
            state.store(LOST, Ordering::Release);
        }
    }
    consumer.unsubscribe();
}

/// The members of `group` as `client_id@host` (empty when nobody is in it).
fn members(consumer: &BaseConsumer, group: &str) -> Result<Vec<String>, Error> {
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .map_err(|source| CoreError::Kafka {
            operation: "describe the backfill lock group",
            source,
        })?;
    Ok(list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| format!("{}@{}", m.client_id(), m.client_host()))
        .collect())
}

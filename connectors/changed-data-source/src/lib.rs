//! The changed-data source connector: athenahealth's Changed Data Subscriptions become typed
//! Avro events on Kafka, with a crash-safe cursor and no lost rows.
//!
//! # Layout
//! - [`config`]: the `[sources.changed_data.<name>]` section and its pure validation.
//! - [`events`]: the per-feed encoder ([`events::codec`]) over the typed events and the one
//!   record-to-event mapping of the `athena-contracts` crate (shared with push and backfill).
//! - [`cursor`]: the per-(practice, feed) cursor in the compacted state topic, with the
//!   "poll in progress since" marker and the replay window.
//! - [`writer`]: writing a page and the cursor in at-least-once or exactly-once mode.
//! - [`task`]: the loop of one (practice, feed): replay, drain, back-off, budget.
//! - [`enrich`]: change-driven FHIR reads: a clinical row leads to the patient's typed FHIR
//!   events, produced before the cursor moves (decision 0023).
//! - [`ownership`]: which instance runs which (practice, feed): the tasks topic, the group
//!   membership thread and the status view (decision 0025).
//! - [`subscriptions`]: creating the subscriptions the config asks for and reporting the
//!   feeds that are not subscribed.
//! - [`error`]: this crate's error enum and its one `class()`.
//!
//! [`run`] joins the connector's tasks group, starts one task per (practice, feed) of the
//! partitions this instance is assigned, releases them on revocation, and returns when
//! shutdown is requested;
//! `athena-connect run` runs it from the `[sources.changed_data.<name>]` tables.

pub mod config;
pub mod cursor;
pub mod enrich;
pub mod error;
pub mod events;
pub mod ownership;
pub mod subscriptions;
pub mod task;
pub mod telemetry;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use connector_core::ErrorClass;
use connector_core::avro::AvroCodec;
use connector_core::checkpoint::KafkaCheckpointStore;
use connector_core::config::Validate;
use connector_core::dlq::DeadLetterQueue;
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::runtime::{RunEnv, TaskControl, TaskState, retry_startup};

pub use config::{Config, DeliveryMode, FeedConfig};
pub use cursor::Cursor;
pub use error::Error;

/// The connector kind reported in task status.
pub const KIND: &str = "changed-data-source";

/// Retries a start-up step while its error is not fatal, until it succeeds, fails fatally, or
/// shutdown is requested (then the last error is returned).
async fn with_retry<T, F, Fut>(control: &TaskControl, what: &str, op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    retry_startup(
        control,
        what,
        |e: &Error| e.class() == ErrorClass::Fatal,
        op,
    )
    .await
}

/// Runs one connector until `control.shutdown_requested()`; honours pause/resume; reports status
/// via `control`. Returns `Err` only for fatal errors (invalid config, every feed stopped).
pub async fn run(
    name: &str,
    config: &Config,
    env: &RunEnv,
    athena: &AthenaClient,
    control: TaskControl,
) -> Result<(), Error> {
    control.set_state(TaskState::Unassigned);
    config.validate().map_err(Error::Config)?;
    let config = Arc::new(config.clone());

    // Kafka: topics, the state store and the cursors, retried while Kafka is unreachable.
    let producer = env.kafka.build_producer()?;
    let store = with_retry(&control, "open state topic", || async {
        Ok(KafkaCheckpointStore::open(&env.kafka, &config.state_topic, producer.clone()).await?)
    })
    .await?;
    if config.topic_partitions > 0 {
        let mut event_topics: Vec<String> = config.feeds.keys().map(|f| config.topic(*f)).collect();
        if config.feeds.keys().any(|f| config.enriches(*f)) {
            event_topics.extend(
                athena_contracts::events::FHIR_RESOURCE_TYPES
                    .iter()
                    .map(|t| config.typed_topic(t)),
            );
        }
        let mut topics: Vec<TopicSpec> = event_topics
            .iter()
            .map(|t| TopicSpec::new(t, config.topic_partitions))
            .collect();
        topics.extend(
            config
                .dlq
                .topic_specs(event_topics.iter().map(String::as_str)),
        );
        with_retry(&control, "create topics", || async {
            let admin = env.kafka.build_admin()?;
            Ok(ensure_topics(&admin, env.kafka.replication_factor, &topics).await?)
        })
        .await?;
    }
    if config.manage_subscriptions {
        subscriptions::ensure(name, &config, athena, &control).await;
    }

    let avro = AvroCodec::new(env.registry.clone())?;
    let errors = task::FeedErrors::new(control.clone());
    let dlq = DeadLetterQueue::new(producer.clone(), config.dlq.clone(), name, "0");
    let enricher = if config.feeds.keys().any(|f| config.enriches(*f)) {
        let e = with_retry(&control, "resolve FHIR schemas", || {
            enrich::Enricher::new(
                name,
                &config,
                &avro,
                athena.clone(),
                producer.clone(),
                dlq.clone(),
            )
        })
        .await?;
        Some(Arc::new(e))
    } else {
        None
    };

    // Tasks are shared among the instances of this config through Kafka group membership
    // (decision 0025): this instance runs the tasks of the tasks-topic partitions it is
    // assigned, and only those.
    let worker = ownership::worker_id(&config);
    let mut membership = with_retry(&control, "join the tasks group", || {
        ownership::Membership::join(&env.kafka, &config, name, &worker)
    })
    .await?;
    let all: Vec<(String, Feed)> = config
        .practices
        .iter()
        .flat_map(|p| config.feeds.keys().map(move |f| (p.clone(), *f)))
        .collect();
    let mut view = ownership::OwnershipView {
        worker_id: worker.clone(),
        group_id: config.group_id(name),
        tasks_topic: config.tasks_topic(),
        tasks_total: all.len(),
        ..Default::default()
    };
    // Published (with the rate share it implies) from the first assignment on: an instance
    // between its join and its assignment must not throttle the key to its floor.
    tracing::info!(worker = %worker, group = %view.group_id, tasks = all.len(), partitions = membership.partitions, "Joined the tasks group.");
    control.set_state(TaskState::Running);

    let shared = Shared {
        name: name.to_string(),
        config: config.clone(),
        env: env.clone(),
        athena: athena.clone(),
        avro,
        producer,
        store,
        dlq,
        errors,
        enricher,
        control: control.clone(),
    };
    let mut running: HashMap<(String, Feed), Running> = HashMap::new();
    let mut tasks: tokio::task::JoinSet<TaskEnd> = tokio::task::JoinSet::new();
    let mut last_fatal: Option<Error> = None;
    let mut failed: HashSet<(String, Feed)> = HashSet::new();
    let mut membership_lost = false;
    loop {
        tokio::select! {
            _ = control.shutdown_requested() => break,
            ev = membership.next() => match ev {
                Some(ownership::MemberEvent::Assigned(parts)) => {
                    let parts: HashSet<i32> = parts.into_iter().collect();
                    let mine: Vec<(String, Feed)> = all
                        .iter()
                        .filter(|(p, f)| parts.contains(&ownership::partition_of(p, *f, membership.partitions)))
                        .filter(|t| !running.contains_key(*t))
                        .cloned()
                        .collect();
                    tracing::info!(partitions = parts.len(), tasks = mine.len(), "Tasks assigned.");
                    for (t, r) in shared.start(&mine, &mut tasks).await? {
                        view.owned.insert(task_label(&t));
                        view.fenced.remove(&task_label(&t));
                        failed.remove(&t);
                        running.insert(t, r);
                    }
                    ownership::publish(name, &view, athena);
                }
                Some(ownership::MemberEvent::Revoked(parts, ack)) => {
                    let parts: HashSet<i32> = parts.into_iter().collect();
                    let started = std::time::Instant::now();
                    let revoked: Vec<(String, Feed)> = running
                        .keys()
                        .filter(|(p, f)| parts.contains(&ownership::partition_of(p, *f, membership.partitions)))
                        .cloned()
                        .collect();
                    for t in &revoked {
                        if let Some(r) = running.get(t) {
                            r.release.cancel();
                        }
                    }
                    // Wait for the revoked tasks to end their drain and write their cursors.
                    while revoked.iter().any(|t| running.get(t).is_some_and(|r| !r.ended)) {
                        match tasks.join_next().await {
                            Some(Ok((t, result))) => ended(&t, result, &mut running, &mut view, &mut failed, &mut last_fatal),
                            Some(Err(join)) => tracing::error!(error = %join, "A feed task panicked."),
                            None => break,
                        }
                    }
                    for t in &revoked {
                        running.remove(t);
                        view.owned.remove(&task_label(t));
                        view.fenced.remove(&task_label(t));
                        failed.remove(t);
                    }
                    ownership::publish(name, &view, athena);
                    let _ = ack.send(());
                    tracing::info!(
                        tasks = revoked.len(),
                        waited_ms = started.elapsed().as_millis() as u64,
                        "Tasks revoked; their cursors are written and they are released."
                    );
                }
                None => {
                    tracing::error!("The tasks-group membership ended; stopping this connector's tasks.");
                    membership_lost = true;
                    break;
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                Ok((t, result)) => {
                    ended(&t, result, &mut running, &mut view, &mut failed, &mut last_fatal);
                    ownership::publish(name, &view, athena);
                    // Every task this instance owns stopped for good (none was fenced): the
                    // connector fails with the last error, as before scale-out.
                    if !running.is_empty() && running.keys().all(|t| failed.contains(t))
                        && let Some(e) = last_fatal.take()
                    {
                        drop(membership);
                        ownership::withdraw(name, &worker, athena);
                        control.set_state(TaskState::Failed);
                        return Err(e);
                    }
                }
                Err(join) => tracing::error!(error = %join, "A feed task panicked."),
            },
        }
    }
    // Shutdown: every task stops (a drain under way leaves its marker: the next owner
    // replays), then the group is left.
    if !control.is_shutdown() {
        for r in running.values() {
            r.release.cancel();
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(join) = done {
            tracing::error!(error = %join, "A feed task panicked.");
        }
    }
    drop(membership);
    ownership::withdraw(name, &worker, athena);
    if membership_lost && !control.is_shutdown() {
        // Fatal, so a supervisor does not restart it: the usual cause is a second instance with
        // the same group.instance.id, and a restart would only take the membership back from it.
        control.set_state(TaskState::Failed);
        return Err(Error::Config(connector_core::CoreError::config(
            "scale_out.worker_id",
            "the tasks-group membership failed for good (usually another instance joined with the same \
             worker id, or host name when none is set); tasks released. Give each instance its own \
             scale_out.worker_id",
        )));
    }
    control.set_state(if control.is_shutdown() {
        TaskState::Stopped
    } else {
        TaskState::Failed
    });
    Ok(())
}

/// `<practice>/<feed>`, as status shows a task.
fn task_label((practice, feed): &(String, Feed)) -> String {
    format!("{practice}/{}", task::feed_name(*feed))
}

/// A (practice, feed) task.
type TaskId = (String, Feed);

/// A task that ended, and how.
type TaskEnd = (TaskId, Result<(), Error>);

/// A task of this instance: its release switch, and whether it has ended.
struct Running {
    release: tokio_util::sync::CancellationToken,
    ended: bool,
}

/// Records the end of task `t`.
fn ended(
    t: &(String, Feed),
    result: Result<(), Error>,
    running: &mut HashMap<(String, Feed), Running>,
    view: &mut ownership::OwnershipView,
    failed: &mut HashSet<(String, Feed)>,
    last_fatal: &mut Option<Error>,
) {
    if let Some(r) = running.get_mut(t) {
        r.ended = true;
    }
    match result {
        Ok(()) => {}
        Err(Error::Fenced(id)) => {
            // Another instance took the task over: never poll it again from here.
            tracing::warn!(transactional_id = %id, task = %task_label(t), "Task fenced by another instance; it is no longer polled here.");
            view.owned.remove(&task_label(t));
            view.fenced.insert(task_label(t));
        }
        Err(e) => {
            failed.insert(t.clone());
            *last_fatal = Some(e);
        }
    }
}

/// What every task of this connector shares.
struct Shared {
    name: String,
    config: Arc<Config>,
    env: RunEnv,
    athena: AthenaClient,
    avro: AvroCodec,
    producer: rdkafka::producer::FutureProducer,
    store: KafkaCheckpointStore,
    dlq: DeadLetterQueue,
    errors: task::FeedErrors,
    enricher: Option<Arc<enrich::Enricher>>,
    control: TaskControl,
}

impl Shared {
    /// Starts the tasks `ts` that were just assigned: first every task's transactional producer
    /// (fencing a previous owner and aborting its open transaction, so the read_committed load
    /// below is not held back and sees its last cursor), then the cursors, then the loops.
    async fn start(
        &self,
        ts: &[(String, Feed)],
        set: &mut tokio::task::JoinSet<TaskEnd>,
    ) -> Result<Vec<((String, Feed), Running)>, Error> {
        if ts.is_empty() {
            return Ok(Vec::new());
        }
        let (name, config, control) = (&self.name, &self.config, &self.control);
        let writers = futures::future::join_all(ts.iter().map(|(practice, feed)| {
            let txn_id = config.transactional_id(name, practice, *feed);
            async move {
                with_retry(control, "init transactions", || async {
                    match config.mode {
                        DeliveryMode::ExactlyOnce => {
                            writer::Writer::exactly_once(
                                &self.env.kafka,
                                &config.state_topic,
                                &txn_id,
                            )
                            .await
                        }
                        DeliveryMode::AtLeastOnce => {
                            writer::Writer::at_least_once_fenced(
                                self.producer.clone(),
                                self.store.clone(),
                                &self.env.kafka,
                                &txn_id,
                            )
                            .await
                        }
                    }
                })
                .await
            }
        }))
        .await;
        let stored: HashMap<String, Vec<u8>> = with_retry(control, "load cursors", || async {
            Ok(self.store.load_to_high_watermark().await?)
        })
        .await?;
        let mut out = Vec::new();
        for ((practice, feed), writer) in ts.iter().cloned().zip(writers) {
            let writer = writer?;
            let key = Cursor::key(name, &practice, task::feed_name(feed));
            // Cursors written before feed names followed athena's URL spelling (`labresults`)
            // are keyed by the config name (`lab_results`): read those rather than start over.
            let legacy = serde_json::to_value(feed)
                .ok()
                .and_then(|v| v.as_str().map(|n| Cursor::key(name, &practice, n)));
            let cursor = match stored
                .get(&key)
                .or_else(|| legacy.as_ref().and_then(|l| stored.get(l)))
            {
                Some(b) => Cursor::from_bytes(&key, b)?,
                None => Cursor {
                    v: 1,
                    ..Default::default()
                },
            };
            let release = tokio_util::sync::CancellationToken::new();
            let ctx = TaskSetup {
                enricher: self.enricher.clone().filter(|_| config.enriches(feed)),
                writer,
                dlq: self.dlq.clone(),
                name: name.clone(),
                practice: practice.clone(),
                feed,
                config: config.clone(),
                athena: self.athena.clone(),
                avro: self.avro.clone(),
                cursor,
                control: control.clone(),
                errors: self.errors.clone(),
                release: release.clone(),
            };
            let t = (practice, feed);
            let id = t.clone();
            set.spawn(async move { (id, ctx.start().await) });
            out.push((
                t,
                Running {
                    release,
                    ended: false,
                },
            ));
        }
        Ok(out)
    }
}

/// What one feed task needs before it can start.
struct TaskSetup {
    name: String,
    practice: String,
    feed: athena_client::api::changed::Feed,
    config: Arc<Config>,
    athena: AthenaClient,
    avro: AvroCodec,
    writer: writer::Writer,
    dlq: DeadLetterQueue,
    cursor: Cursor,
    control: TaskControl,
    errors: task::FeedErrors,
    enricher: Option<Arc<enrich::Enricher>>,
    release: tokio_util::sync::CancellationToken,
}

impl TaskSetup {
    async fn start(self) -> Result<(), Error> {
        let feed_label = task::feed_name(self.feed);
        let topic = self.config.topic(self.feed);
        // A registry outage is retried; a schema the registry rejects stops this feed only.
        let codec = match with_retry(&self.control, "resolve schema", || async {
            Ok(events::codec(&self.avro, self.feed, &topic).await?)
        })
        .await
        {
            Ok(c) => Arc::from(c),
            Err(e) => {
                tracing::error!(feed = feed_label, practice = %self.practice, error = %e, "Feed stopped: its schema is not usable.");
                self.errors.set(
                    &format!("{}/{feed_label}", self.practice),
                    format!("feed {feed_label} practice {} stopped: {e}", self.practice),
                );
                return Err(e);
            }
        };
        let task = task::FeedTask {
            connector: self.name.clone(),
            practice: self.practice.clone(),
            feed: self.feed,
            config: self.config.clone(),
            codec,
            topic,
            client: self
                .athena
                .practice(self.practice.parse::<u64>().unwrap_or_default()),
            writer: self.writer,
            dlq: self.dlq,
            cursor: self.cursor,
            control: self.control.clone(),
            errors: self.errors.clone(),
            replay_seen: HashSet::new(),
            enricher: self.enricher,
            release: self.release,
        };
        task.run().await
    }
}

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
//! - [`subscriptions`]: creating the subscriptions the config asks for and reporting the
//!   feeds that are not subscribed.
//! - [`error`]: this crate's error enum and its one `class()`.
//!
//! [`run`] starts one task per (practice, feed) and returns when shutdown is requested;
//! `athena-connect run` runs it from the `[sources.changed_data.<name>]` tables.

pub mod config;
pub mod cursor;
pub mod enrich;
pub mod error;
pub mod events;
pub mod subscriptions;
pub mod task;
pub mod telemetry;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use athena_client::AthenaClient;
use connector_core::ErrorClass;
use connector_core::avro::AvroCodec;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
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
    // Exactly-once: initialise every transactional producer first. That fences the previous
    // instance and aborts its open transactions, so the read_committed load below is not held
    // back at their last stable offset and sees every committed cursor.
    let mut writers: HashMap<(String, athena_client::api::changed::Feed), writer::Writer> =
        HashMap::new();
    if config.mode == DeliveryMode::ExactlyOnce {
        for practice in &config.practices {
            for feed in config.feeds.keys().copied() {
                let txn_id = format!(
                    "{}-{}-{}-{}",
                    config.transactional_id_prefix,
                    name,
                    practice,
                    task::feed_name(feed)
                );
                let w = with_retry(&control, "init transactions", || {
                    writer::Writer::exactly_once(&env.kafka, &config.state_topic, &txn_id)
                })
                .await?;
                writers.insert((practice.clone(), feed), w);
            }
        }
    }
    let stored: HashMap<String, Vec<u8>> = with_retry(&control, "load cursors", || async {
        Ok(store.load().await?)
    })
    .await?;

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
    let mut handles = Vec::new();
    for practice in &config.practices {
        for feed in config.feeds.keys().copied() {
            let key = Cursor::key(name, practice, task::feed_name(feed));
            // Cursors written before feed names followed athena's URL spelling (`labresults`)
            // are keyed by the config name (`lab_results`): read those rather than start over.
            let legacy = serde_json::to_value(feed)
                .ok()
                .and_then(|v| v.as_str().map(|n| Cursor::key(name, practice, n)));
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
            let writer = match writers.remove(&(practice.clone(), feed)) {
                Some(w) => w,
                None => writer::Writer::AtLeastOnce {
                    producer: producer.clone(),
                    store: Box::new(store.clone()),
                },
            };
            let ctx = TaskSetup {
                enricher: enricher.clone().filter(|_| config.enriches(feed)),
                writer,
                dlq: dlq.clone(),
                name: name.to_string(),
                practice: practice.clone(),
                feed,
                config: config.clone(),
                athena: athena.clone(),
                avro: avro.clone(),
                cursor,
                control: control.clone(),
                errors: errors.clone(),
            };
            handles.push(tokio::spawn(ctx.start()));
        }
    }
    control.set_state(TaskState::Running);
    let total = handles.len();
    let mut failed = 0usize;
    let mut last_fatal = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed += 1;
                last_fatal = Some(e);
            }
            Err(join) => {
                failed += 1;
                tracing::error!(error = %join, "A feed task panicked.");
            }
        }
    }
    if failed == total
        && let Some(e) = last_fatal
    {
        control.set_state(TaskState::Failed);
        return Err(e);
    }
    control.set_state(if control.is_shutdown() {
        TaskState::Stopped
    } else {
        TaskState::Failed
    });
    Ok(())
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
        };
        task.run().await
    }
}

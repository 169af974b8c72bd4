//! State kept in a compacted Kafka topic: source cursors, export progress, the sink's command
//! ledger. No extra database: the topic is the store, the key is the state's name, the last value
//! wins, an empty value (tombstone) deletes.
//!
//! Loading reads every partition from the beginning up to its end as a `read_committed` consumer
//! (so values from aborted transactions are never seen) without joining a consumer group.
//! Saving produces one record with the idempotent producer and returns only once Kafka
//! acknowledged it, which is the point after which the caller may act on it (e.g. poll the next
//! page). In exactly-once modes the caller writes the same record inside its own transaction
//! instead, with [`checkpoint_record`].

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::CoreError;
use crate::kafka::{KafkaConfig, TopicSpec, ensure_topics};

/// The loader reads to the end of each partition on purpose; librdkafka reports reaching it as a
/// global "error" that the default context logs at ERROR on every start. Here it is the expected
/// stop signal, so it is logged at trace and everything else as usual.
struct LoaderContext;

impl ClientContext for LoaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(&error, KafkaError::PartitionEOF(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::PartitionEOF)
            );
        if eof {
            tracing::trace!(reason, "Checkpoint loader reached the end of a partition.");
        } else {
            tracing::error!(error = %error, reason, "Kafka client error while loading checkpoints.");
        }
    }
}

impl ConsumerContext for LoaderContext {}

/// A key-value store of named checkpoints.
pub trait CheckpointStore: Send + Sync {
    /// Every live checkpoint, by key.
    fn load(
        &self,
    ) -> impl std::future::Future<Output = Result<HashMap<String, Vec<u8>>, CoreError>> + Send;
    /// Durably stores `value` under `key`; returns once acknowledged.
    fn save(
        &self,
        key: &str,
        value: &[u8],
    ) -> impl std::future::Future<Output = Result<(), CoreError>> + Send;
    /// Durably deletes `key`.
    fn delete(&self, key: &str) -> impl std::future::Future<Output = Result<(), CoreError>> + Send;
}

/// A [`CheckpointStore`] on a compacted Kafka topic.
#[derive(Clone)]
pub struct KafkaCheckpointStore {
    kafka: KafkaConfig,
    topic: String,
    producer: FutureProducer,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCheckpointStore")
            .field("topic", &self.topic)
            .finish()
    }
}

impl KafkaCheckpointStore {
    /// A store on `topic`, created (compacted, one partition) when missing.
    pub async fn open(
        kafka: &KafkaConfig,
        topic: &str,
        producer: FutureProducer,
    ) -> Result<Self, CoreError> {
        Self::open_with_retention(kafka, topic, producer, None).await
    }

    /// Like [`KafkaCheckpointStore::open`], but a topic it creates also deletes keys not
    /// rewritten within `retention` (`cleanup.policy=compact,delete`). An existing topic keeps
    /// its configuration.
    pub async fn open_with_retention(
        kafka: &KafkaConfig,
        topic: &str,
        producer: FutureProducer,
        retention: Option<Duration>,
    ) -> Result<Self, CoreError> {
        let admin = kafka.build_admin()?;
        ensure_topics(
            &admin,
            kafka.replication_factor,
            &[TopicSpec::compacted(topic, 1).with_retention(retention)],
        )
        .await?;
        Ok(KafkaCheckpointStore {
            kafka: kafka.clone(),
            topic: topic.to_string(),
            producer,
            timeout: Duration::from_secs(30),
        })
    }

    /// The topic behind the store.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Loads every checkpoint up to the topic's high watermark as of the call (see
    /// [`load_to_high_watermark`]): for a store that several transactional producers write.
    pub async fn load_to_high_watermark(&self) -> Result<HashMap<String, Vec<u8>>, CoreError> {
        let kafka = self.kafka.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            load_to_high_watermark(&kafka, &topic, "athena-connect-checkpoint-loader")
        })
        .await
        .map_err(|e| CoreError::task("checkpoint loader", &e))?
    }

    fn load_blocking(
        kafka: &KafkaConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<HashMap<String, Vec<u8>>, CoreError> {
        let mut cfg: ClientConfig = kafka.consumer_config("athena-connect-checkpoint-loader");
        cfg.set("enable.partition.eof", "true");
        let consumer: BaseConsumer<LoaderContext> = cfg
            .create_with_context(LoaderContext)
            .map_err(|source| CoreError::Kafka {
                operation: "create checkpoint loader",
                source,
            })?;
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| CoreError::Kafka {
                operation: "checkpoint metadata",
                source,
            })?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(|source| CoreError::Kafka {
                    operation: "checkpoint assign",
                    source,
                })?;
        }
        consumer.assign(&tpl).map_err(|source| CoreError::Kafka {
            operation: "checkpoint assign",
            source,
        })?;
        let mut state = HashMap::new();
        let mut at_end = std::collections::HashSet::new();
        // The timeout bounds a stall, not the whole load: a large state topic keeps loading as
        // long as records keep arriving.
        let mut deadline = std::time::Instant::now() + timeout;
        while at_end.len() < partitions.len() {
            if std::time::Instant::now() > deadline {
                return Err(CoreError::Kafka {
                    operation: "load checkpoints (no record and no end of partition within the timeout)",
                    source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                });
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(source)) => {
                    return Err(CoreError::Kafka {
                        operation: "load checkpoints",
                        source,
                    });
                }
                Some(Ok(m)) => {
                    deadline = std::time::Instant::now() + timeout;
                    apply(&mut state, &m);
                }
            }
        }
        Ok(state)
    }
}

impl CheckpointStore for KafkaCheckpointStore {
    async fn load(&self) -> Result<HashMap<String, Vec<u8>>, CoreError> {
        let kafka = self.kafka.clone();
        let topic = self.topic.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || Self::load_blocking(&kafka, &topic, timeout))
            .await
            .map_err(|e| CoreError::task("checkpoint loader", &e))?
    }

    async fn save(&self, key: &str, value: &[u8]) -> Result<(), CoreError> {
        self.producer
            .send(checkpoint_record(&self.topic, key, value), self.timeout)
            .await
            .map(|_| ())
            .map_err(|(source, _)| CoreError::Kafka {
                operation: "save checkpoint",
                source,
            })
    }

    async fn delete(&self, key: &str) -> Result<(), CoreError> {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key);
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(source, _)| CoreError::Kafka {
                operation: "delete checkpoint",
                source,
            })
    }
}

/// How long a high-watermark load may make no progress.
pub const LOAD_STALL: Duration = Duration::from_secs(150);

fn kafka_err(operation: &'static str) -> impl FnOnce(KafkaError) -> CoreError {
    move |source| CoreError::Kafka { operation, source }
}

/// Reads `topic` (`read_committed`) from the beginning until every partition's position has
/// reached its high watermark as of the start, waiting for transactions open below it to end
/// (not only to the last stable offset, where [`KafkaCheckpointStore::load`] stops). For stores
/// with several transactional writers: any writer's open transaction holds the last stable
/// offset back and would hide every value written after it began. Waiting is bounded by the
/// open transactions' lifetime (`transaction.timeout.ms` for one whose producer died); no
/// progress for [`LOAD_STALL`] is an error. `loader` is the consumer's (unused) group id.
pub fn load_to_high_watermark(
    kafka: &KafkaConfig,
    topic: &str,
    loader: &str,
) -> Result<HashMap<String, Vec<u8>>, CoreError> {
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = kafka
        .consumer_config(loader)
        .create()
        .map_err(kafka_err("create checkpoint loader"))?;
    // The watermark query of a read_committed client answers the last stable offset; the
    // high watermark needs a read_uncommitted one.
    let mut probe_cfg = kafka.consumer_config(loader);
    probe_cfg.set("isolation.level", "read_uncommitted");
    let probe: BaseConsumer = probe_cfg
        .create()
        .map_err(kafka_err("create checkpoint probe"))?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka_err("checkpoint metadata"))?;
    let mut targets: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (_low, high) = probe
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(kafka_err("checkpoint watermarks"))?;
        targets.insert(p.id(), high);
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .map_err(kafka_err("checkpoint assign"))?;
    }
    drop(probe);
    consumer
        .assign(&tpl)
        .map_err(kafka_err("checkpoint assign"))?;
    let reached = |consumer: &BaseConsumer| -> Result<bool, CoreError> {
        let pos = consumer
            .position()
            .map_err(kafka_err("checkpoint position"))?;
        Ok(targets.iter().all(|(p, high)| {
            *high <= 0
                || matches!(
                    pos.find_partition(topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *high
                )
        }))
    };
    let mut state = HashMap::new();
    let mut last_progress = std::time::Instant::now();
    let mut last_pos: Option<Vec<i64>> = None;
    while !reached(&consumer)? {
        if last_progress.elapsed() > LOAD_STALL {
            return Err(CoreError::Kafka {
                operation: "load checkpoints (no progress towards the high watermark)",
                source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Positions also move over control records and aborted data.
                let pos: Vec<i64> = consumer
                    .position()
                    .map_err(kafka_err("checkpoint position"))?
                    .elements()
                    .iter()
                    .map(|e| e.offset().to_raw().unwrap_or(-1))
                    .collect();
                if last_pos.as_ref() != Some(&pos) {
                    last_pos = Some(pos);
                    last_progress = std::time::Instant::now();
                }
            }
            Some(Err(source)) => {
                return Err(CoreError::Kafka {
                    operation: "load checkpoints",
                    source,
                });
            }
            Some(Ok(m)) => {
                last_progress = std::time::Instant::now();
                apply(&mut state, &m);
            }
        }
    }
    Ok(state)
}

/// Applies one record of a state topic to `state`: the last value of a key wins, an empty one
/// (tombstone) deletes it; a record without a UTF-8 key is not ours and is skipped.
fn apply(state: &mut HashMap<String, Vec<u8>>, m: &impl Message) {
    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
        return;
    };
    match m.payload() {
        Some(v) if !v.is_empty() => {
            state.insert(key.to_string(), v.to_vec());
        }
        _ => {
            state.remove(key);
        }
    }
}

/// The record that stores `value` under `key` on `topic` (for use inside a transaction).
pub fn checkpoint_record<'a>(
    topic: &'a str,
    key: &'a str,
    value: &'a [u8],
) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic).key(key).payload(value)
}

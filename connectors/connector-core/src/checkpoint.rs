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
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
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

/// The record that stores `value` under `key` on `topic` (for use inside a transaction).
pub fn checkpoint_record<'a>(
    topic: &'a str,
    key: &'a str,
    value: &'a [u8],
) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic).key(key).payload(value)
}

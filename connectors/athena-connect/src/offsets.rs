//! Where each connector keeps its position, and how to show or reset it (in the spirit of Kafka
//! Connect's KIP-875: only while the connector is stopped).
//!
//! Sources keep cursors in a compacted checkpoint topic under keys with a per-connector prefix;
//! sinks keep committed offsets of their consumer group. Both are shown in Connect's shape,
//! `{"offsets": [{"partition": {...}, "offset": {...}}]}`. Resetting deletes the checkpoints
//! (tombstones) or the consumer group, so the next start begins from the connector's configured
//! starting point.

use std::time::Duration;

use connector_core::CoreError;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
use connector_core::kafka::KafkaConfig;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Where a connector's offsets live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsLocation {
    /// The connector keeps no offsets of its own (e.g. a push receiver).
    None,
    /// Checkpoints in a compacted topic, under keys starting with `key_prefix`.
    Checkpoints {
        /// The checkpoint topic.
        topic: String,
        /// Key prefix owned by this connector.
        key_prefix: String,
    },
    /// Committed offsets of a consumer group on `topics`.
    ConsumerGroup {
        /// The group id.
        group_id: String,
        /// Topics the group consumes.
        topics: Vec<String>,
    },
}

fn kafka_err(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> CoreError {
    move |source| CoreError::Kafka { operation, source }
}

/// The connector's offsets in Connect's shape.
pub async fn show(kafka: &KafkaConfig, loc: &OffsetsLocation) -> Result<Value, CoreError> {
    let offsets: Vec<Value> = match loc {
        OffsetsLocation::None => Vec::new(),
        OffsetsLocation::Checkpoints { topic, key_prefix } => {
            let store = open_store(kafka, topic).await?;
            let mut all: Vec<(String, Vec<u8>)> = store
                .load()
                .await?
                .into_iter()
                .filter(|(k, _)| k.starts_with(key_prefix.as_str()))
                .collect();
            all.sort();
            all.into_iter()
                .map(|(k, v)| {
                    // Cursors are ids and times; show JSON as JSON, anything else as text.
                    let value = serde_json::from_slice::<Value>(&v).unwrap_or_else(|_| {
                        match std::str::from_utf8(&v) {
                            Ok(s) => Value::String(s.to_string()),
                            Err(_) => Value::String(format!("<{} bytes, binary>", v.len())),
                        }
                    });
                    json!({"partition": {"checkpoint_topic": topic, "key": k}, "offset": value})
                })
                .collect()
        }
        OffsetsLocation::ConsumerGroup { group_id, topics } => {
            let kafka = kafka.clone();
            let group_id = group_id.clone();
            let topics = topics.clone();
            tokio::task::spawn_blocking(move || committed(&kafka, &group_id, &topics))
                .await
                .map_err(|e| CoreError::Telemetry(format!("offsets task failed: {e}")))??
        }
    };
    Ok(json!({ "offsets": offsets }))
}

async fn open_store(kafka: &KafkaConfig, topic: &str) -> Result<KafkaCheckpointStore, CoreError> {
    let producer = kafka.build_producer()?;
    KafkaCheckpointStore::open(kafka, topic, producer).await
}

fn committed(kafka: &KafkaConfig, group: &str, topics: &[String]) -> Result<Vec<Value>, CoreError> {
    let consumer: BaseConsumer = kafka
        .consumer_config(group)
        .create()
        .map_err(kafka_err("create offsets reader"))?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), TIMEOUT)
            .map_err(kafka_err("offsets metadata"))?;
        for mt in md.topics() {
            for p in mt.partitions() {
                tpl.add_partition(t, p.id());
            }
        }
    }
    let done = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(kafka_err("fetch committed offsets"))?;
    Ok(done
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(json!({
                "partition": {"kafka_topic": e.topic(), "kafka_partition": e.partition()},
                "offset": {"kafka_offset": o},
            })),
            _ => None,
        })
        .collect())
}

/// How many members the consumer group of `loc` has right now (0 for non-group locations).
/// A non-zero count means some process is still consuming: refuse a reset.
pub async fn active_members(
    kafka: &KafkaConfig,
    loc: &OffsetsLocation,
) -> Result<usize, CoreError> {
    let OffsetsLocation::ConsumerGroup { group_id, .. } = loc else {
        return Ok(0);
    };
    let kafka = kafka.clone();
    let group = group_id.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka
            .consumer_config("athena-connect-offsets-cli")
            .create()
            .map_err(kafka_err("create offsets reader"))?;
        let list = consumer
            .fetch_group_list(Some(&group), TIMEOUT)
            .map_err(kafka_err("describe group"))?;
        Ok(list.groups().iter().map(|g| g.members().len()).sum())
    })
    .await
    .map_err(|e| CoreError::Telemetry(format!("offsets task failed: {e}")))?
}

/// Resets the offsets of `loc`; the caller has made sure the connector is stopped. Returns how
/// many checkpoints or groups were removed.
pub async fn reset(kafka: &KafkaConfig, loc: &OffsetsLocation) -> Result<usize, CoreError> {
    match loc {
        OffsetsLocation::None => Ok(0),
        OffsetsLocation::Checkpoints { topic, key_prefix } => {
            let store = open_store(kafka, topic).await?;
            let keys: Vec<String> = store
                .load()
                .await?
                .into_keys()
                .filter(|k| k.starts_with(key_prefix.as_str()))
                .collect();
            for k in &keys {
                store.delete(k).await?;
            }
            Ok(keys.len())
        }
        OffsetsLocation::ConsumerGroup { group_id, .. } => {
            let admin = kafka.build_admin()?;
            let res = admin
                .delete_groups(&[group_id.as_str()], &AdminOptions::new())
                .await
                .map_err(kafka_err("delete consumer group"))?;
            for r in res {
                match r {
                    Ok(_) => {}
                    Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Ok(0),
                    Err((_, code)) => {
                        return Err(CoreError::Kafka {
                            operation: "delete consumer group",
                            source: rdkafka::error::KafkaError::AdminOp(code),
                        });
                    }
                }
            }
            Ok(1)
        }
    }
}

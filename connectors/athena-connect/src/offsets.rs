//! Where each connector keeps its position, and how to show or reset it (in the spirit of Kafka
//! Connect's KIP-875: only while the connector is stopped).
//!
//! Sources keep cursors in a compacted checkpoint topic under keys with a per-connector prefix;
//! sinks keep committed offsets of their consumer group. Both are shown in Connect's shape,
//! `{"offsets": [{"partition": {...}, "offset": {...}}]}`. Resetting deletes the checkpoints
//! (tombstones) or the consumer group, so the next start begins from the connector's configured
//! starting point; a consumer group can instead be reset to a time ([`ResetRequest::to_time`]).
//!
//! A write-back sink remembers what it executed for `ledger_retention` only. A reset that would
//! make it read commands older than that again is refused ([`check_reset`]) unless the caller
//! names a time within the retention or passes `force`: those commands would be executed again.
//!
//! Altering (KIP-875's `PATCH /connectors/{name}/offsets`) takes the same shape as `show`
//! prints: [`parse_alter`] reads it, [`check_alter`] applies the same retention guard to a
//! rewind, [`alter`] writes cursors (or deletes them, for a `null` offset) or commits the
//! group's offsets.

use std::time::Duration;

use chrono::{DateTime, Utc};

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
        /// How long the connector remembers an executed command (a write-back sink's
        /// `ledger_retention`); a reset must not re-read commands older than that.
        ledger_retention: Option<Duration>,
    },
}

/// What an offsets reset asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetRequest {
    /// Reset a consumer group to the first offset at or after this time instead of deleting it.
    pub to_time: Option<DateTime<Utc>>,
    /// Reset even when commands older than the ledger's retention would be read again.
    pub force: bool,
}

/// Why a reset is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetRefused {
    /// The reset would re-execute commands the ledger no longer remembers (HTTP 409, exit 4).
    #[error("{0}")]
    Retention(String),
    /// The request does not fit the connector (HTTP 400, exit 2).
    #[error("{0}")]
    BadRequest(String),
    /// Kafka could not be asked.
    #[error("cannot check the reset against Kafka: {0}")]
    Kafka(String),
}

/// Checks `req` against `loc` before a reset: refuses a time on checkpoints, and on a sink with
/// a ledger retention a reset that would read commands older than the retention again (to the
/// beginning while older commands are still on the topic, or to a time before the retention),
/// unless `force`.
pub async fn check_reset(
    kafka: &KafkaConfig,
    loc: &OffsetsLocation,
    req: &ResetRequest,
) -> Result<(), ResetRefused> {
    let (topics, retention) = match loc {
        OffsetsLocation::ConsumerGroup {
            topics,
            ledger_retention,
            ..
        } => (topics.clone(), *ledger_retention),
        _ if req.to_time.is_some() => {
            return Err(ResetRefused::BadRequest(
                "a reset to a time applies only to connectors that consume Kafka topics (sinks, \
                 push inflation); a source's cursors can only be deleted"
                    .into(),
            ));
        }
        _ => return Ok(()),
    };
    let Some(retention) = retention else {
        return Ok(());
    };
    if req.force {
        return Ok(());
    }
    let horizon = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| Utc::now().checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let human = humantime_serde::re::humantime::format_duration(retention).to_string();
    if let Some(t) = req.to_time {
        if t < horizon {
            return Err(ResetRefused::Retention(format!(
                "{t} is older than the sink's ledger_retention ({human}): commands from before \
                 {horizon} would be executed again, because the ledger no longer remembers them; \
                 name a later time or pass force to accept that"
            )));
        }
        return Ok(());
    }
    let kafka = kafka.clone();
    let older = tokio::task::spawn_blocking(move || older_than(&kafka, &topics, horizon))
        .await
        .map_err(|e| ResetRefused::Kafka(e.to_string()))?
        .map_err(|e| ResetRefused::Kafka(e.to_string()))?;
    if older > 0 {
        return Err(ResetRefused::Retention(format!(
            "resetting to the beginning would read {older} command(s) older than the sink's \
             ledger_retention ({human}) again, and the ledger no longer remembers whether they \
             were executed; reset to a time after {horizon} (to_time / --to-time) or pass force \
             to accept executing them again"
        )));
    }
    Ok(())
}

/// How many records on `topics` are older than `horizon` (by record timestamp).
fn older_than(
    kafka: &KafkaConfig,
    topics: &[String],
    horizon: DateTime<Utc>,
) -> Result<i64, CoreError> {
    let consumer: BaseConsumer = kafka
        .consumer_config("athena-connect-offsets-check")
        .create()
        .map_err(kafka_err("create offsets reader"))?;
    let at = offsets_at(&consumer, topics, horizon)?;
    let mut older = 0;
    for e in at.elements() {
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
            .map_err(kafka_err("fetch watermarks"))?;
        // The first record at or after the horizon; none means every record is older.
        let first_new = match e.offset() {
            Offset::Offset(o) => o,
            _ => high,
        };
        older += (first_new - low).max(0);
    }
    Ok(older)
}

/// For every partition of `topics`, the first offset whose record time is at or after `t`
/// (`Offset::End` where every record is older).
fn offsets_at(
    consumer: &BaseConsumer,
    topics: &[String],
    t: DateTime<Utc>,
) -> Result<TopicPartitionList, CoreError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, p) in partitions(consumer, topics)? {
        tpl.add_partition_offset(&topic, p, Offset::Offset(t.timestamp_millis()))
            .map_err(kafka_err("offsets for times"))?;
    }
    consumer
        .offsets_for_times(tpl, TIMEOUT)
        .map_err(kafka_err("offsets for times"))
}

/// Every partition of `topics`, from the cluster's metadata.
pub(crate) fn partitions(
    consumer: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<(String, i32)>, CoreError> {
    let mut out = Vec::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), TIMEOUT)
            .map_err(kafka_err("offsets metadata"))?;
        for mt in md.topics() {
            for p in mt.partitions() {
                out.push((t.clone(), p.id()));
            }
        }
    }
    Ok(out)
}

pub(crate) fn kafka_err(
    operation: &'static str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> CoreError {
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
        OffsetsLocation::ConsumerGroup {
            group_id, topics, ..
        } => {
            let kafka = kafka.clone();
            let group_id = group_id.clone();
            let topics = topics.clone();
            tokio::task::spawn_blocking(move || committed(&kafka, &group_id, &topics))
                .await
                .map_err(|e| CoreError::task("offsets", &e))??
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
    for (t, p) in partitions(&consumer, topics)? {
        tpl.add_partition(&t, p);
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
    .map_err(|e| CoreError::task("offsets", &e))?
}

/// Resets the offsets of `loc`; the caller has made sure the connector is stopped and checked
/// the request with [`check_reset`]. Returns how many checkpoints or groups were removed, or
/// with a time, how many partitions were set.
pub async fn reset(
    kafka: &KafkaConfig,
    loc: &OffsetsLocation,
    req: &ResetRequest,
) -> Result<usize, CoreError> {
    if let (
        Some(t),
        OffsetsLocation::ConsumerGroup {
            group_id, topics, ..
        },
    ) = (req.to_time, loc)
    {
        let (kafka, group, topics) = (kafka.clone(), group_id.clone(), topics.clone());
        return tokio::task::spawn_blocking(move || reset_to_time(&kafka, &group, &topics, t))
            .await
            .map_err(|e| CoreError::task("offsets", &e))?;
    }
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
            let deadline = std::time::Instant::now() + GROUP_EMPTY_WAIT;
            loop {
                let res = admin
                    .delete_groups(&[group_id.as_str()], &AdminOptions::new())
                    .await
                    .map_err(kafka_err("delete consumer group"))?;
                let mut code = None;
                for r in res {
                    match r {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Ok(0),
                        Err((_, c)) => code = Some(c),
                    }
                }
                match code {
                    None => return Ok(1),
                    // A stopped sink that is a static member stays in the group until its
                    // session times out (it sends no LeaveGroup): wait for that, bounded.
                    Some(RDKafkaErrorCode::NonEmptyGroup)
                        if std::time::Instant::now() < deadline =>
                    {
                        tracing::info!(group = %group_id, "The group still has a member (a static member leaves after its session timeout); waiting.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Some(c) => {
                        return Err(CoreError::Kafka {
                            operation: "delete consumer group",
                            source: rdkafka::error::KafkaError::AdminOp(c),
                        });
                    }
                }
            }
        }
    }
}

/// Commits, for `group`, the first offset at or after `t` on every partition of `topics` (the
/// end where nothing is that new). The group must have no members.
fn reset_to_time(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    t: DateTime<Utc>,
) -> Result<usize, CoreError> {
    let consumer: BaseConsumer = kafka
        .consumer_config(group)
        .create()
        .map_err(kafka_err("create offsets writer"))?;
    let at = offsets_at(&consumer, topics, t)?;
    let mut commit = TopicPartitionList::new();
    for e in at.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => o,
            _ => {
                consumer
                    .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
                    .map_err(kafka_err("fetch watermarks"))?
                    .1
            }
        };
        commit
            .add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))
            .map_err(kafka_err("commit offsets"))?;
    }
    commit_when_group_empty(&consumer, &commit)?;
    Ok(commit.count())
}

/// How long an offsets change waits for a stopped sink's group to empty. A static member
/// (`static_membership`, the default) does not leave the group when it stops; the broker drops
/// it after its `session_timeout` (default 10 s, at most 30 s is sensible). A group that still
/// has members after this is in use by a replica that was not stopped.
const GROUP_EMPTY_WAIT: Duration = Duration::from_secs(45);

/// Commits `commit` for the consumer's group as a non-member, retrying while the broker refuses
/// because the group is still settling or still has a (static) member, up to
/// [`GROUP_EMPTY_WAIT`]. Blocking: call from `spawn_blocking`.
fn commit_when_group_empty(
    consumer: &BaseConsumer,
    commit: &TopicPartitionList,
) -> Result<(), CoreError> {
    let deadline = std::time::Instant::now() + GROUP_EMPTY_WAIT;
    loop {
        match consumer.commit(commit, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "Offsets commit refused (the group may still have a member); retrying.");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(kafka_err("commit offsets")(e)),
        }
    }
}

/// One position of a `PATCH /connectors/{name}/offsets` body, checked against the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alteration {
    /// A source cursor: the JSON to store under `key`, or `None` to delete it.
    Checkpoint {
        /// Full checkpoint key (starts with the connector's prefix).
        key: String,
        /// Serialised cursor, or `None` for Connect's `"offset": null`.
        value: Option<Vec<u8>>,
    },
    /// The next offset the sink's consumer group reads on one partition.
    Kafka {
        /// Topic (one the connector consumes).
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset to commit.
        offset: i64,
    },
}

/// Reads a Connect-shaped alter body, `{"offsets": [{"partition": {...}, "offset": {...}}]}`,
/// for `loc`: sources name `{"key"}` (and optionally `{"checkpoint_topic"}`) with an object
/// offset or `null`; sinks name `{"kafka_topic", "kafka_partition"}` with `{"kafka_offset"}`.
/// `check_value` validates a cursor before it is stored (a cursor the connector cannot read
/// would fail its next start). Every refusal is a [`ResetRefused::BadRequest`].
pub fn parse_alter(
    loc: &OffsetsLocation,
    body: &Value,
    check_value: impl Fn(&str, &Value) -> Result<(), String>,
) -> Result<Vec<Alteration>, ResetRefused> {
    let bad = |m: String| ResetRefused::BadRequest(m);
    let entries = body
        .get("offsets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            bad("Partitions / offsets need to be provided for an alter offsets request".into())
        })?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let partition = e
            .get("partition")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(format!("offsets[{i}].partition must be an object")))?;
        let offset = e
            .get("offset")
            .ok_or_else(|| bad(format!("offsets[{i}].offset is missing (null deletes it)")))?;
        match loc {
            OffsetsLocation::None => {
                return Err(bad(
                    "this connector keeps no offsets of its own; nothing to alter".into(),
                ));
            }
            OffsetsLocation::Checkpoints { topic, key_prefix } => {
                if let Some(t) = partition.get("checkpoint_topic")
                    && t.as_str() != Some(topic.as_str())
                {
                    return Err(bad(format!(
                        "offsets[{i}].partition.checkpoint_topic must be {topic}"
                    )));
                }
                let key = partition
                    .get("key")
                    .and_then(Value::as_str)
                    .filter(|k| k.starts_with(key_prefix.as_str()) && k.len() > key_prefix.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "offsets[{i}].partition.key must be a checkpoint key of this \
                             connector (starting with {key_prefix})"
                        ))
                    })?;
                let value = match offset {
                    Value::Null => None,
                    Value::Object(_) => {
                        check_value(key, offset)
                            .map_err(|m| bad(format!("offsets[{i}].offset: {m}")))?;
                        Some(serde_json::to_vec(offset).unwrap_or_default())
                    }
                    _ => {
                        return Err(bad(format!(
                            "offsets[{i}].offset must be an object (a cursor) or null"
                        )));
                    }
                };
                out.push(Alteration::Checkpoint {
                    key: key.to_string(),
                    value,
                });
            }
            OffsetsLocation::ConsumerGroup { topics, .. } => {
                let topic = partition
                    .get("kafka_topic")
                    .and_then(Value::as_str)
                    .filter(|t| topics.iter().any(|c| c == t))
                    .ok_or_else(|| {
                        bad(format!(
                            "offsets[{i}].partition.kafka_topic must be one of the topics the \
                             connector consumes: {}",
                            topics.join(", ")
                        ))
                    })?;
                let partition = partition
                    .get("kafka_partition")
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| {
                        bad(format!(
                            "offsets[{i}].partition.kafka_partition must be a partition number"
                        ))
                    })?;
                let offset = match offset {
                    Value::Null => {
                        return Err(bad(format!(
                            "offsets[{i}].offset: removing one partition's committed offset is \
                             not supported; DELETE /connectors/{{name}}/offsets resets the group"
                        )));
                    }
                    o => o
                        .get("kafka_offset")
                        .and_then(Value::as_i64)
                        .filter(|o| *o >= 0)
                        .ok_or_else(|| {
                            bad(format!(
                                "offsets[{i}].offset must be {{\"kafka_offset\": <offset >= 0>}}"
                            ))
                        })?,
                };
                out.push(Alteration::Kafka {
                    topic: topic.to_string(),
                    partition,
                    offset,
                });
            }
        }
    }
    Ok(out)
}

/// The guard of [`check_reset`] for an alteration: on a sink with a ledger retention, moving a
/// partition to an offset before its first record inside the retention would execute commands
/// the ledger has forgotten again; refused unless `force`. Also refuses partitions that do
/// not exist.
pub async fn check_alter(
    kafka: &KafkaConfig,
    loc: &OffsetsLocation,
    alts: &[Alteration],
    force: bool,
) -> Result<(), ResetRefused> {
    let OffsetsLocation::ConsumerGroup {
        topics,
        ledger_retention,
        ..
    } = loc
    else {
        return Ok(());
    };
    let wanted: Vec<(String, i32, i64)> = alts
        .iter()
        .filter_map(|a| match a {
            Alteration::Kafka {
                topic,
                partition,
                offset,
            } => Some((topic.clone(), *partition, *offset)),
            Alteration::Checkpoint { .. } => None,
        })
        .collect();
    let horizon = ledger_retention.filter(|_| !force).map(|r| {
        chrono::Duration::from_std(r)
            .ok()
            .and_then(|r| Utc::now().checked_sub_signed(r))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let (kafka, topics) = (kafka.clone(), topics.clone());
    let older = tokio::task::spawn_blocking(move || -> Result<Result<i64, String>, CoreError> {
        let consumer: BaseConsumer = kafka
            .consumer_config("athena-connect-offsets-check")
            .create()
            .map_err(kafka_err("create offsets reader"))?;
        let known = partitions(&consumer, &topics)?;
        for (t, p, _) in &wanted {
            if !known.iter().any(|(kt, kp)| kt == t && kp == p) {
                return Ok(Err(format!("{t} has no partition {p}")));
            }
        }
        let Some(horizon) = horizon else {
            return Ok(Ok(0));
        };
        let at = offsets_at(&consumer, &topics, horizon)?;
        let mut older = 0;
        for (t, p, o) in &wanted {
            let (low, high) = consumer
                .fetch_watermarks(t, *p, TIMEOUT)
                .map_err(kafka_err("fetch watermarks"))?;
            let first_new = at
                .find_partition(t, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(high);
            older += (first_new - (*o).max(low)).max(0);
        }
        Ok(Ok(older))
    })
    .await
    .map_err(|e| ResetRefused::Kafka(e.to_string()))?
    .map_err(|e| ResetRefused::Kafka(e.to_string()))?
    .map_err(ResetRefused::BadRequest)?;
    if older > 0 {
        let human = ledger_retention
            .map(|r| humantime_serde::re::humantime::format_duration(r).to_string())
            .unwrap_or_default();
        return Err(ResetRefused::Retention(format!(
            "these offsets would read {older} command(s) older than the sink's ledger_retention \
             ({human}) again, and the ledger no longer remembers whether they were executed; \
             choose later offsets or pass force=true to accept executing them again"
        )));
    }
    Ok(())
}

/// Writes `alts` (checked by [`parse_alter`] and [`check_alter`]; the connector is stopped).
/// Returns how many positions were written.
pub async fn alter(
    kafka: &KafkaConfig,
    loc: &OffsetsLocation,
    alts: Vec<Alteration>,
) -> Result<usize, CoreError> {
    match loc {
        OffsetsLocation::None => Ok(0),
        OffsetsLocation::Checkpoints { topic, .. } => {
            let store = open_store(kafka, topic).await?;
            let n = alts.len();
            for a in alts {
                if let Alteration::Checkpoint { key, value } = a {
                    match value {
                        Some(v) => store.save(&key, &v).await?,
                        None => store.delete(&key).await?,
                    }
                }
            }
            Ok(n)
        }
        OffsetsLocation::ConsumerGroup { group_id, .. } => {
            let (kafka, group) = (kafka.clone(), group_id.clone());
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = kafka
                    .consumer_config(&group)
                    .create()
                    .map_err(kafka_err("create offsets writer"))?;
                let mut commit = TopicPartitionList::new();
                for a in &alts {
                    if let Alteration::Kafka {
                        topic,
                        partition,
                        offset,
                    } = a
                    {
                        commit
                            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                            .map_err(kafka_err("commit offsets"))?;
                    }
                }
                // Right after a stop the group may still be settling (a coordinator move, a
                // static member that leaves only when its session times out).
                commit_when_group_empty(&consumer, &commit)?;
                Ok(commit.count())
            })
            .await
            .map_err(|e| CoreError::task("offsets", &e))?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(retention: Option<Duration>) -> OffsetsLocation {
        OffsetsLocation::ConsumerGroup {
            group_id: "g".into(),
            topics: vec!["t".into()],
            ledger_retention: retention,
        }
    }

    /// The checks that need no broker (an unreachable one proves no call is made).
    #[tokio::test]
    async fn reset_requests_are_checked_against_the_retention() {
        let kafka = KafkaConfig::plaintext("127.0.0.1:1");
        let day = Some(Duration::from_secs(24 * 3600));
        let at = |hours: i64| ResetRequest {
            to_time: Some(Utc::now() - chrono::Duration::hours(hours)),
            force: false,
        };
        let r = check_reset(&kafka, &sink(day), &at(48)).await;
        assert!(
            matches!(&r, Err(ResetRefused::Retention(m)) if m.contains("ledger_retention")),
            "{r:?}"
        );
        assert_eq!(check_reset(&kafka, &sink(day), &at(1)).await, Ok(()));
        let force = ResetRequest {
            to_time: None,
            force: true,
        };
        assert_eq!(check_reset(&kafka, &sink(day), &force).await, Ok(()));
        // No retention (push inflation, or a ledger kept forever): nothing to protect.
        assert_eq!(
            check_reset(&kafka, &sink(None), &ResetRequest::default()).await,
            Ok(())
        );
        let cursors = OffsetsLocation::Checkpoints {
            topic: "state".into(),
            key_prefix: "src/".into(),
        };
        assert!(matches!(
            check_reset(&kafka, &cursors, &at(1)).await,
            Err(ResetRefused::BadRequest(_))
        ));
        assert_eq!(
            check_reset(&kafka, &cursors, &ResetRequest::default()).await,
            Ok(())
        );
    }

    #[test]
    fn alter_bodies_are_checked_against_the_connector() {
        let ok = |_: &str, _: &Value| Ok(());
        let cursors = OffsetsLocation::Checkpoints {
            topic: "state".into(),
            key_prefix: "src/".into(),
        };
        let body = json!({"offsets": [
            {"partition": {"checkpoint_topic": "state", "key": "src/1/patients"}, "offset": {"v": 1}},
            {"partition": {"key": "src/1/appointments"}, "offset": null},
        ]});
        assert_eq!(
            parse_alter(&cursors, &body, ok).unwrap(),
            vec![
                Alteration::Checkpoint {
                    key: "src/1/patients".into(),
                    value: Some(b"{\"v\":1}".to_vec())
                },
                Alteration::Checkpoint {
                    key: "src/1/appointments".into(),
                    value: None
                },
            ]
        );
        for bad in [
            json!({}),
            json!({"offsets": []}),
            json!({"offsets": [{"partition": {"key": "other/1/patients"}, "offset": {}}]}),
            json!({"offsets": [{"partition": {"key": "src/1/p", "checkpoint_topic": "x"}, "offset": {}}]}),
            json!({"offsets": [{"partition": {"key": "src/1/patients"}, "offset": 5}]}),
            json!({"offsets": [{"partition": {"key": "src/1/patients"}}]}),
        ] {
            assert!(
                matches!(
                    parse_alter(&cursors, &bad, ok),
                    Err(ResetRefused::BadRequest(_))
                ),
                "{bad}"
            );
        }
        let refuse = |_: &str, _: &Value| Err("not a cursor".to_string());
        let r = parse_alter(&cursors, &body, refuse);
        assert!(
            matches!(&r, Err(ResetRefused::BadRequest(m)) if m.contains("not a cursor")),
            "{r:?}"
        );

        let group = sink(None);
        let body = json!({"offsets": [
            {"partition": {"kafka_topic": "t", "kafka_partition": 2}, "offset": {"kafka_offset": 7}},
        ]});
        assert_eq!(
            parse_alter(&group, &body, ok).unwrap(),
            vec![Alteration::Kafka {
                topic: "t".into(),
                partition: 2,
                offset: 7
            }]
        );
        for bad in [
            json!({"offsets": [{"partition": {"kafka_topic": "other", "kafka_partition": 0}, "offset": {"kafka_offset": 1}}]}),
            json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": -1}, "offset": {"kafka_offset": 1}}]}),
            json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": -1}}]}),
            json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": null}]}),
        ] {
            assert!(
                matches!(
                    parse_alter(&group, &bad, ok),
                    Err(ResetRefused::BadRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_alter(&OffsetsLocation::None, &body, ok),
            Err(ResetRefused::BadRequest(_))
        ));
    }
}

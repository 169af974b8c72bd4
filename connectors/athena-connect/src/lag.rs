//! Consumer lag of the connectors that consume Kafka (write-back sinks, the push inflation
//! stage): every [`LAG_INTERVAL`], per partition of their topics, the high watermark minus the
//! group's committed offset, as `athena_connect_consumer_lag_records{connector,topic,partition}`.
//!
//! Measured from outside the connector, as `kafka-consumer-groups --describe` and Burrow do,
//! so it keeps rising while a connector is paused, stopped or failed, which is when it matters.
//! A partition the group never committed counts from its low watermark (the connectors start a
//! new group at the earliest offset). Transaction markers count as records, so a topic written
//! transactionally shows a small lag even when everything was read.

use std::sync::Arc;
use std::time::Duration;

use connector_core::CoreError;
use connector_core::kafka::KafkaConfig;
use connector_core::metrics::{PartitionLabels, global};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::offsets::{OffsetsLocation, kafka_err, partitions};
use crate::supervisor::ConnectorDef;

/// How often the lag is measured: one offset fetch and one watermark request per partition.
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

const TIMEOUT: Duration = Duration::from_secs(10);

/// A connector whose lag is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagTarget {
    /// Connector name.
    pub connector: String,
    /// Its consumer group.
    pub group_id: String,
    /// The topics it consumes.
    pub topics: Vec<String>,
}

/// The connectors of `defs` that consume Kafka.
pub fn targets(defs: &[ConnectorDef]) -> Vec<LagTarget> {
    defs.iter()
        .filter_map(|d| match &d.offsets {
            OffsetsLocation::ConsumerGroup {
                group_id, topics, ..
            } => Some(LagTarget {
                connector: d.name.clone(),
                group_id: group_id.clone(),
                topics: topics.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Records behind the high watermark for every partition of `topics`, as (topic, partition,
/// lag). `consumer` must have the group's `group.id` and must not subscribe (it reads the
/// group's committed offsets without joining it).
pub fn measure(
    consumer: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<(String, i32, i64)>, CoreError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions(consumer, topics)? {
        tpl.add_partition(&t, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(kafka_err("fetch committed offsets"))?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), TIMEOUT)
            .map_err(kafka_err("fetch watermarks"))?;
        let from = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push((e.topic().to_string(), e.partition(), (high - from).max(0)));
    }
    Ok(out)
}

/// Measures the lag of `targets` every `every` until `stop`.
pub fn spawn(
    kafka: KafkaConfig,
    targets: Vec<LagTarget>,
    every: Duration,
    stop: CancellationToken,
) {
    if targets.is_empty() {
        return;
    }
    tokio::spawn(async move {
        // One reader per group, created once (a client per tick would reconnect every time).
        let mut readers: Vec<(LagTarget, Arc<BaseConsumer>)> = Vec::new();
        for t in targets {
            match kafka.consumer_config(&t.group_id).create::<BaseConsumer>() {
                Ok(c) => readers.push((t, Arc::new(c))),
                Err(e) => tracing::warn!(
                    connector = %t.connector,
                    error = %e,
                    "Cannot create the consumer-lag reader; no lag metric for this connector."
                ),
            }
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (t, reader) in &readers {
                let (reader, topics) = (reader.clone(), t.topics.clone());
                let measured = tokio::task::spawn_blocking(move || measure(&reader, &topics))
                    .await
                    .map_err(|e| CoreError::task("consumer lag", &e))
                    .and_then(|r| r);
                match measured {
                    Ok(lags) => {
                        for (topic, partition, lag) in lags {
                            global()
                                .consumer_lag_records
                                .get_or_create(&PartitionLabels {
                                    connector: t.connector.clone(),
                                    topic,
                                    partition: partition.to_string(),
                                })
                                .set(lag);
                        }
                    }
                    // Kafka unreachable: the last values stay; readiness reports the outage.
                    Err(e) => tracing::debug!(
                        connector = %t.connector,
                        error = %e,
                        "Consumer lag not measured this time."
                    ),
                }
            }
        }
    });
}

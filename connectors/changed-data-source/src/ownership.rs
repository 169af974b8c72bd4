//! Which instance owns which (practice, feed) task, through Kafka group membership
//! (decision 0025).
//!
//! Every task hashes onto one partition of a small compacted tasks topic
//! ([`partition_of`]); the instances of one connector config join one consumer group on that
//! topic with cooperative-sticky assignment, and an instance runs exactly the tasks of the
//! partitions it is assigned. No record needs to be read: the topic only lends its partitions
//! to Kafka's group protocol. A single instance is assigned every partition.
//!
//! The membership consumer runs on its own thread ([`Membership`]), because its revocation
//! callback blocks: a revoked partition is handed over only once its tasks have finished the
//! drain in progress and written their cursors (the coordinator in [`crate::run`] acknowledges
//! the revocation), bounded by `scale_out.release_timeout`. Fencing does not rely on the
//! group: every task writes its cursor through a transactional producer of its own id, so a
//! new owner's `init_transactions` fences whatever instance wrote before it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use athena_client::api::changed::Feed;
use connector_core::CoreError;
use connector_core::kafka::KafkaConfig;
use connector_core::metrics::{ConnectorLabels, global};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::TopicPartitionList;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::Error;

/// The tasks-topic partition of a (practice, feed): FNV-1a (32 bit) of `<practice>/<feed>`
/// modulo `partitions`. A fixed function, not std's randomly keyed hasher: every instance, of
/// every version, must compute the same partition.
pub fn partition_of(practice: &str, feed: Feed, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    let key = format!("{practice}/{}", crate::task::feed_name(feed));
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

/// The host's name (`HOSTNAME`, else `/etc/hostname`, else `localhost`).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// This instance's id in status and logs (`scale_out.worker_id`, else `<hostname>:<pid>`).
pub fn worker_id(config: &Config) -> String {
    config
        .scale_out
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", hostname(), std::process::id()))
}

/// This instance's `group.instance.id` (static membership): `scale_out.worker_id`, else the
/// host name. Stable across restarts, so a restarted instance gets its tasks back at once
/// instead of after the session timeout; two instances on one host need distinct worker ids.
pub fn group_instance_id(config: &Config) -> String {
    config.scale_out.worker_id.clone().unwrap_or_else(hostname)
}

/// A change of this instance's assignment, from the membership thread.
#[derive(Debug)]
pub enum MemberEvent {
    /// These partitions are now ours (incremental with cooperative-sticky).
    Assigned(Vec<i32>),
    /// These partitions are being taken away; the group waits (bounded) for the sender to be
    /// answered, or dropped, before giving them to another instance.
    Revoked(Vec<i32>, std::sync::mpsc::SyncSender<()>),
}

struct MemberContext {
    events: mpsc::UnboundedSender<MemberEvent>,
    release_timeout: Duration,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // The partitions go to their next owner only once this returns: wait until their tasks
        // have ended the drain in progress and written their cursors.
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions(tpl);
            if parts.is_empty() {
                return;
            }
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            if self.events.send(MemberEvent::Revoked(parts, ack)).is_ok()
                && let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    done.recv_timeout(self.release_timeout)
            {
                tracing::warn!(
                    timeout_ms = self.release_timeout.as_millis() as u64,
                    "Revoked tasks did not stop within the release timeout; releasing them anyway (the next owner fences them)."
                );
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions(tpl);
                if !parts.is_empty() {
                    let _ = self.events.send(MemberEvent::Assigned(parts));
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Tasks group rebalance error."),
        }
    }
}

/// This instance's membership in the connector's tasks group: a consumer polled on its own
/// thread. Dropping it leaves the group (the thread closes the consumer).
#[derive(Debug)]
pub struct Membership {
    events: mpsc::UnboundedReceiver<MemberEvent>,
    stop: Arc<AtomicBool>,
    /// Partitions of the tasks topic.
    pub partitions: i32,
}

impl Membership {
    /// Creates the tasks topic when missing, reads its partition count and joins the group.
    pub async fn join(
        kafka: &KafkaConfig,
        config: &Config,
        name: &str,
        worker: &str,
    ) -> Result<Membership, Error> {
        let topic = config.tasks_topic();
        let admin = kafka.build_admin()?;
        connector_core::kafka::ensure_topics(
            &admin,
            kafka.replication_factor,
            &[connector_core::kafka::TopicSpec::compacted(
                &topic,
                config.scale_out.tasks_partitions,
            )],
        )
        .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut cfg = kafka.consumer_config(&config.group_id(name));
        if config.scale_out.static_membership && cfg.get("group.instance.id").is_none() {
            cfg.set("group.instance.id", group_instance_id(config));
        }
        cfg.set(
            "session.timeout.ms",
            config.scale_out.session_timeout.as_millis().to_string(),
        );
        // A revocation may wait for a drain: the poll loop is blocked meanwhile.
        let max_poll = (config.scale_out.release_timeout + Duration::from_secs(60)).as_millis();
        cfg.set("max.poll.interval.ms", max_poll.to_string());
        let consumer: BaseConsumer<MemberContext> = cfg
            .create_with_context(MemberContext {
                events: tx.clone(),
                release_timeout: config.scale_out.release_timeout,
            })
            .map_err(|source| CoreError::Kafka {
                operation: "create tasks-group consumer",
                source,
            })?;
        let topic_for_md = topic.clone();
        let (consumer, count) = tokio::task::spawn_blocking(move || {
            let md = consumer.fetch_metadata(Some(&topic_for_md), Duration::from_secs(10));
            let count = md
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.partitions().len() as i32)
                        .sum::<i32>()
                })
                .map_err(|source| CoreError::Kafka {
                    operation: "tasks topic metadata",
                    source,
                });
            (consumer, count)
        })
        .await
        .map_err(|e| CoreError::task("tasks topic metadata", &e))?;
        let count = count?;
        if count == 0 {
            return Err(Error::Core(CoreError::Kafka {
                operation: "tasks topic metadata (no partitions)",
                source: rdkafka::error::KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                ),
            }));
        }
        if count != config.scale_out.tasks_partitions {
            tracing::info!(
                topic = %topic,
                partitions = count,
                configured = config.scale_out.tasks_partitions,
                "The tasks topic exists with another partition count; using the topic's."
            );
        }
        consumer
            .subscribe(&[&topic])
            .map_err(|source| CoreError::Kafka {
                operation: "join the tasks group",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let worker = worker.to_string();
        std::thread::Builder::new()
            .name("cds-membership".into())
            .spawn(move || {
                // Polling serves the rebalance callbacks; the topic itself holds nothing to read.
                while !stopped.load(Ordering::Relaxed) && !tx.is_closed() {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Err(e @ rdkafka::error::KafkaError::MessageConsumptionFatal(_))) => {
                            // e.g. another instance joined with the same group.instance.id:
                            // this consumer is out of the group for good.
                            tracing::error!(error = %e, worker = %worker, "Tasks-group membership failed; this instance releases its tasks (is another instance running with the same scale_out.worker_id?).");
                            break;
                        }
                        Some(Err(e)) => tracing::debug!(error = %e, "Tasks-group consumer error."),
                        _ => {}
                    }
                }
                // Dropping the consumer closes it and leaves the group.
                drop(consumer);
            })
            .map_err(|_| CoreError::Task {
                what: "membership thread",
                panicked: false,
            })?;
        Ok(Membership {
            events: rx,
            stop,
            partitions: count,
        })
    }

    /// The next assignment change (`None` when the membership thread ended).
    pub async fn next(&mut self) -> Option<MemberEvent> {
        self.events.recv().await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Closed first, so a revocation raised by the consumer's close is not waited for.
        self.events.close();
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the admin API shows of a connector's tasks on this instance.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OwnershipView {
    /// This instance (Kafka Connect's `worker_id`).
    pub worker_id: String,
    /// The consumer group the instances share.
    pub group_id: String,
    /// The tasks topic.
    pub tasks_topic: String,
    /// Every (practice, feed) of the config.
    pub tasks_total: usize,
    /// `<practice>/<feed>` of the tasks this instance runs.
    pub owned: BTreeSet<String>,
    /// Tasks this instance stopped because another instance fenced it (it never polls them
    /// again until it is assigned them anew).
    pub fenced: BTreeSet<String>,
}

/// Views by (connector, worker id): one per instance of a connector in this process (several
/// only in tests).
static VIEWS: LazyLock<Mutex<BTreeMap<(String, String), OwnershipView>>> =
    LazyLock::new(Default::default);

fn views() -> std::sync::MutexGuard<'static, BTreeMap<(String, String), OwnershipView>> {
    VIEWS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The ownership of connector `name` on this instance, while it runs.
pub fn ownership(name: &str) -> Option<OwnershipView> {
    views()
        .iter()
        .find(|((n, _), _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Every instance's ownership in this process (diagnostics).
pub fn all() -> Vec<OwnershipView> {
    views().values().cloned().collect()
}

/// The ownership of connector `name` run by `worker` in this process (tests run several
/// instances in one process).
pub fn ownership_of(name: &str, worker: &str) -> Option<OwnershipView> {
    views()
        .get(&(name.to_string(), worker.to_string()))
        .cloned()
}

/// Publishes `view` for connector `name` (status API, the owned-tasks gauge) and sets the
/// athena rate share of this process (see [`rate_share`]).
pub fn publish(name: &str, view: &OwnershipView, athena: &athena_client::AthenaClient) {
    let mut v = views();
    v.insert((name.to_string(), view.worker_id.clone()), view.clone());
    settle(name, &v, athena);
}

/// Forgets instance `worker` of connector `name` (it stopped): it owns no task any more.
pub fn withdraw(name: &str, worker: &str, athena: &athena_client::AthenaClient) {
    let mut v = views();
    v.remove(&(name.to_string(), worker.to_string()));
    settle(name, &v, athena);
}

fn settle(
    name: &str,
    v: &BTreeMap<(String, String), OwnershipView>,
    athena: &athena_client::AthenaClient,
) {
    let owned: usize = v
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| v.owned.len())
        .sum();
    global()
        .source_owned_tasks
        .get_or_create(&ConnectorLabels::of(name))
        .set(owned as i64);
    if let Some(share) = rate_share(v.values()) {
        athena.set_rate_share(share);
    }
}

/// The share of the API key's `rate_limit` this process takes: the sum, over the changed-data
/// instances it runs, of owned tasks / all tasks of their config, at most 1; `None` when none
/// runs (the limiter keeps its last share). N instances of one config thus split the key's
/// rate by their tasks; the share is recomputed on every rebalance.
pub fn rate_share<'a>(views: impl Iterator<Item = &'a OwnershipView>) -> Option<f64> {
    let mut any = false;
    let mut share = 0.0;
    for v in views {
        any = true;
        share += v.owned.len() as f64 / v.tasks_total.max(1) as f64;
    }
    any.then_some(share.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_of_is_stable_and_spreads() {
        // Fixed values: changing the function would move every task on a rolling upgrade.
        assert_eq!(partition_of("195900", Feed::Patients, 12), {
            let mut h: u32 = 0x811c_9dc5;
            for b in b"195900/patients" {
                h ^= u32::from(*b);
                h = h.wrapping_mul(0x0100_0193);
            }
            (h % 12) as i32
        });
        let feeds = [
            Feed::Patients,
            Feed::Appointments,
            Feed::Problems,
            Feed::Allergies,
        ];
        let mut used = BTreeSet::new();
        for p in ["1", "2", "3"] {
            for f in feeds {
                let part = partition_of(p, f, 12);
                assert!((0..12).contains(&part));
                assert_eq!(part, partition_of(p, f, 12));
                used.insert(part);
            }
        }
        assert!(used.len() >= 5, "12 tasks on only {used:?}");
        assert_eq!(partition_of("1", Feed::Patients, 1), 0);
    }

    #[test]
    fn rate_share_is_the_owned_fraction() {
        let v = |owned: usize, total: usize| OwnershipView {
            tasks_total: total,
            owned: (0..owned).map(|i| i.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(rate_share([].iter()), None);
        assert_eq!(rate_share([v(3, 12)].iter()), Some(0.25));
        assert_eq!(rate_share([v(0, 12)].iter()), Some(0.0));
        // Three instances of one config in one process (tests) take the whole rate together.
        assert_eq!(rate_share([v(4, 12), v(5, 12), v(3, 12)].iter()), Some(1.0));
        assert_eq!(rate_share([v(12, 12), v(2, 2)].iter()), Some(1.0));
    }
}

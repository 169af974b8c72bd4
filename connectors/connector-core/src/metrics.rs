//! Prometheus metrics: every name and label set is defined here, once.
//!
//! Names follow `athena_connect_<name>_<unit>[_total]` and reuse Kafka Connect's vocabulary
//! where one exists (records produced, poll, DLQ produce requests, offset commits). Labels come
//! from fixed sets: connector names and feeds from the config, command types and outcomes from
//! enums, route *templates* (never URLs), error classes. Never a practice's patient data, never
//! an id that grows without bound.
//!
//! Connectors record through [`global()`]; the admin API renders it with [`Metrics::render`].

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-connector, per-feed source metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabels {
    /// Connector name from the config.
    pub connector: String,
    /// Feed name (e.g. `patients`).
    pub feed: String,
}

impl FeedLabels {
    /// The labels of `feed` of `connector`.
    pub fn of(connector: &str, feed: &str) -> Self {
        FeedLabels {
            connector: connector.to_string(),
            feed: feed.to_string(),
        }
    }
}

/// Labels for errors by class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Connector name.
    pub connector: String,
    /// `retriable`, `rate_limited`, `permanent`, `fatal`, `ambiguous`.
    pub class: String,
}

/// Labels of per-connector metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    /// Connector name.
    pub connector: String,
}

/// Labels of push notifications by result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushResultLabels {
    /// Connector name.
    pub connector: String,
    /// `accepted`, `heartbeat`, `replayed`, `stale`, `unauthorized` or `unavailable`.
    pub result: String,
}

impl ConnectorLabels {
    /// The labels of `connector`.
    pub fn of(connector: &str) -> Self {
        ConnectorLabels {
            connector: connector.to_string(),
        }
    }
}

/// Labels of an HTTP listener (`admin` or a connector name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Listener name.
    pub server: String,
}

/// Labels of the connector state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorStateLabels {
    /// Connector name.
    pub connector: String,
    /// `UNASSIGNED`, `RUNNING`, `PAUSED`, `FAILED`, `STOPPED` or `RESTARTING` (the status API's names).
    pub state: String,
}

/// Labels for commands by type and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// Connector name.
    pub connector: String,
    /// Command type (`BookAppointment`, ...).
    pub command: String,
    /// `applied`, `duplicate`, `rejected`, `failed`.
    pub outcome: String,
}

/// Labels for athena calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/v1/{practiceid}/appointments/{appointmentid}`.
    pub route: String,
    /// `2xx`, `4xx`, `5xx`, `error`.
    pub status_class: String,
}

/// Labels of a consumer group's position on one partition (partitions of the configured
/// topics: bounded by the topics' partition counts).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Connector name.
    pub connector: String,
    /// Topic the connector consumes.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// Labels of one librdkafka client of a connector.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// Connector name.
    pub connector: String,
    /// `consumer` or `producer` (one client of each kind per connector records statistics).
    pub client: String,
}

/// Labels of one broker as seen by one librdkafka client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    /// Connector name.
    pub connector: String,
    /// `consumer` or `producer`.
    pub client: String,
    /// Broker `host:port/id` as librdkafka names it (the cluster's brokers: bounded).
    pub broker: String,
}

/// Labels of the `build_info` gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfoLabels {
    /// Crate version.
    pub version: String,
    /// Git commit the binary was built from (`unknown` outside a checkout).
    pub git_commit: String,
    /// rustc version that compiled it.
    pub rustc: String,
}

/// All metrics of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Changed-data polls issued.
    pub source_polls: Family<FeedLabels, Counter>,
    /// Records produced and acknowledged by Kafka (Connect: source-record-write-total).
    pub source_records_produced: Family<FeedLabels, Counter>,
    /// Cursor commits (Connect: offset-commit-completion-total).
    pub source_offset_commits: Family<FeedLabels, Counter>,
    /// Seconds since the feed's cursor last advanced (heartbeats advance idle feeds).
    pub source_feed_lag_seconds: Family<FeedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The poll interval a feed's share of the daily request budget allows (0 = no budget).
    pub source_budget_poll_interval_seconds:
        Family<FeedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// (practice, feed) tasks this instance owns through the tasks group (decision 0025).
    pub source_owned_tasks: Family<ConnectorLabels, Gauge>,
    /// Errors by class.
    pub errors: Family<ErrorLabels, Counter>,
    /// Commands by type and outcome.
    pub sink_commands: Family<CommandLabels, Counter>,
    /// Command-to-result latency.
    pub sink_command_latency_seconds: Family<ConnectorLabels, Histogram>,
    /// Records written to a dead-letter topic (Connect: deadletterqueue-produce-requests).
    pub dlq_produce_requests: Family<ConnectorLabels, Counter>,
    /// Consumer offset commits.
    pub sink_offset_commits: Family<ConnectorLabels, Counter>,
    /// athena requests by route template and status class.
    pub athena_requests: Family<RouteLabels, Counter>,
    /// athena request duration by route template.
    pub athena_request_seconds: Family<RouteLabels, Histogram>,
    /// Throttled athena responses (403 over-QPS / 429).
    pub athena_throttled: Counter,
    /// Remaining daily athena quota as last reported in `X-RateLimit-Remaining`.
    pub athena_quota_remaining: Gauge,
    /// Push notifications received, by result (`accepted`, `heartbeat`, `replayed`, `stale`,
    /// `unauthorized`, `unavailable`).
    pub push_notifications: Family<PushResultLabels, Counter>,
    /// Push silences longer than the heartbeat period (each triggers a catch-up).
    pub push_gaps: Family<ConnectorLabels, Counter>,
    /// Events a push catch-up read produced from the changed-data feeds (`replayed = true`).
    pub push_catch_up_events: Family<ConnectorLabels, Counter>,
    /// Push catch-up reads of one feed that failed (`feed` = the changed-data feed name).
    pub push_catch_up_failures: Family<FeedLabels, Counter>,
    /// 1 for the state each connector is in, 0 for the others (set by the supervisor).
    pub connector_state: Family<ConnectorStateLabels, Gauge>,
    /// Automatic restarts of a failed connector by the supervisor.
    pub connector_restarts: Family<ConnectorLabels, Counter>,
    /// Subscribed push topics a catch-up could not read (no changed-data feed), per catch-up.
    pub push_catch_up_uncovered: Family<ConnectorLabels, Counter>,
    /// Connections an HTTP listener shed at its connection or TLS-handshake cap.
    pub http_connections_shed: Family<ServerLabels, Counter>,
    /// Authentic push notifications answered 2xx without a record (already accepted).
    pub push_replays: Family<ConnectorLabels, Counter>,
    /// Authentic push notifications refused because every event was older than allowed.
    pub push_stale_refused: Family<ConnectorLabels, Counter>,
    /// Records behind the high watermark per partition for connectors that consume Kafka
    /// (write-back sinks, push inflation): high watermark minus the group's committed offset.
    pub consumer_lag_records: Family<PartitionLabels, Gauge>,
    /// Average broker round-trip time from librdkafka statistics.
    pub kafka_broker_rtt_seconds: Family<BrokerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Messages a client sent to the brokers (librdkafka `txmsgs`).
    pub kafka_client_tx_messages: Family<ClientLabels, Counter>,
    /// Messages a client received from the brokers (librdkafka `rxmsgs`).
    pub kafka_client_rx_messages: Family<ClientLabels, Counter>,
    /// Messages waiting in a producer's queue (librdkafka `msg_cnt`).
    pub kafka_client_queue_messages: Family<ClientLabels, Gauge>,
    /// Operations waiting for the application to poll (librdkafka `replyq`).
    pub kafka_client_reply_queue: Family<ClientLabels, Gauge>,
    /// The running consumer's lag per partition from librdkafka statistics (last stable offset
    /// minus its position, the Java client's `records-lag`); it stops updating while the
    /// partition is paused, which `consumer_lag_records` does not.
    pub kafka_consumer_lag_records: Family<PartitionLabels, Gauge>,
    /// 1, labelled with the version, git commit and rustc of the binary.
    pub build_info: Family<BuildInfoLabels, Gauge>,
    /// Last cumulative librdkafka counters seen per client, to turn them into counter increments.
    last_client_totals: Mutex<HashMap<ClientLabels, (u64, u64)>>,
}

impl Metrics {
    /// A fresh set of metrics with its own registry (tests); the process uses [`global()`].
    pub fn new() -> Self {
        let mut root = Registry::default();
        let m = Metrics {
            source_polls: Family::default(),
            source_records_produced: Family::default(),
            source_offset_commits: Family::default(),
            source_feed_lag_seconds: Family::default(),
            source_budget_poll_interval_seconds: Family::default(),
            source_owned_tasks: Family::default(),
            errors: Family::default(),
            sink_commands: Family::default(),
            sink_command_latency_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            dlq_produce_requests: Family::default(),
            sink_offset_commits: Family::default(),
            athena_requests: Family::default(),
            athena_request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            athena_throttled: Counter::default(),
            athena_quota_remaining: Gauge::default(),
            push_notifications: Family::default(),
            push_gaps: Family::default(),
            push_catch_up_events: Family::default(),
            push_catch_up_failures: Family::default(),
            push_catch_up_uncovered: Family::default(),
            http_connections_shed: Family::default(),
            push_replays: Family::default(),
            push_stale_refused: Family::default(),
            connector_state: Family::default(),
            connector_restarts: Family::default(),
            consumer_lag_records: Family::default(),
            kafka_broker_rtt_seconds: Family::default(),
            kafka_client_tx_messages: Family::default(),
            kafka_client_rx_messages: Family::default(),
            kafka_client_queue_messages: Family::default(),
            kafka_client_reply_queue: Family::default(),
            kafka_consumer_lag_records: Family::default(),
            build_info: Family::default(),
            last_client_totals: Mutex::default(),
            registry: Registry::default(),
        };
        // The standard process metrics keep their conventional unprefixed names
        // (`process_resident_memory_bytes`, ...), so existing dashboards work unchanged.
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("athena_connect");
        registry.register(
            "source_polls",
            "Changed-data polls issued",
            m.source_polls.clone(),
        );
        registry.register(
            "source_records_produced",
            "Source records acknowledged by Kafka",
            m.source_records_produced.clone(),
        );
        registry.register(
            "source_offset_commits",
            "Source cursor commits",
            m.source_offset_commits.clone(),
        );
        registry.register(
            "source_feed_lag_seconds",
            "Seconds since the feed cursor last advanced",
            m.source_feed_lag_seconds.clone(),
        );
        registry.register(
            "source_budget_poll_interval_seconds",
            "Poll interval allowed by the feed's share of the daily request budget",
            m.source_budget_poll_interval_seconds.clone(),
        );
        registry.register(
            "source_owned_tasks",
            "Changed-data tasks (practice, feed) this instance owns",
            m.source_owned_tasks.clone(),
        );
        registry.register("errors", "Errors by class", m.errors.clone());
        registry.register(
            "sink_commands",
            "Commands by type and outcome",
            m.sink_commands.clone(),
        );
        registry.register(
            "sink_command_latency_seconds",
            "Command-to-result latency",
            m.sink_command_latency_seconds.clone(),
        );
        registry.register(
            "dlq_produce_requests",
            "Records written to a dead-letter topic",
            m.dlq_produce_requests.clone(),
        );
        registry.register(
            "sink_offset_commits",
            "Sink consumer offset commits",
            m.sink_offset_commits.clone(),
        );
        registry.register(
            "athena_requests",
            "athena API requests by route template and status class",
            m.athena_requests.clone(),
        );
        registry.register(
            "athena_request_seconds",
            "athena API request duration by route template",
            m.athena_request_seconds.clone(),
        );
        registry.register(
            "athena_throttled",
            "Throttled athena responses",
            m.athena_throttled.clone(),
        );
        registry.register(
            "athena_quota_remaining",
            "Remaining daily athena quota (X-RateLimit-Remaining)",
            m.athena_quota_remaining.clone(),
        );
        registry.register(
            "push_notifications",
            "Push notifications received, by result",
            m.push_notifications.clone(),
        );
        registry.register(
            "push_gaps",
            "Push silences longer than the heartbeat period",
            m.push_gaps.clone(),
        );
        registry.register(
            "push_catch_up_events",
            "Events produced by push catch-up reads of the changed-data feeds",
            m.push_catch_up_events.clone(),
        );
        registry.register(
            "push_catch_up_failures",
            "Push catch-up reads of a feed that failed",
            m.push_catch_up_failures.clone(),
        );
        registry.register(
            "push_catch_up_uncovered",
            "Subscribed push topics a catch-up could not read (no changed-data feed)",
            m.push_catch_up_uncovered.clone(),
        );
        registry.register(
            "http_connections_shed",
            "Connections shed at an HTTP listener's connection or TLS-handshake cap",
            m.http_connections_shed.clone(),
        );
        registry.register(
            "push_replays",
            "Push notifications already accepted, answered without a new record",
            m.push_replays.clone(),
        );
        registry.register(
            "push_stale_refused",
            "Push notifications refused as older than max_event_age",
            m.push_stale_refused.clone(),
        );
        registry.register(
            "connector_state",
            "1 for the state each connector is in (UNASSIGNED, RUNNING, PAUSED, FAILED, STOPPED, RESTARTING), 0 for the others",
            m.connector_state.clone(),
        );
        registry.register(
            "connector_restarts",
            "Automatic restarts of a failed connector",
            m.connector_restarts.clone(),
        );
        registry.register(
            "consumer_lag_records",
            "Records behind the high watermark per partition (high watermark minus the group's committed offset)",
            m.consumer_lag_records.clone(),
        );
        registry.register(
            "kafka_broker_rtt_seconds",
            "Average broker round-trip time (librdkafka statistics)",
            m.kafka_broker_rtt_seconds.clone(),
        );
        registry.register(
            "kafka_client_tx_messages",
            "Messages sent to the brokers (librdkafka txmsgs)",
            m.kafka_client_tx_messages.clone(),
        );
        registry.register(
            "kafka_client_rx_messages",
            "Messages received from the brokers (librdkafka rxmsgs)",
            m.kafka_client_rx_messages.clone(),
        );
        registry.register(
            "kafka_client_queue_messages",
            "Messages waiting in the producer queue (librdkafka msg_cnt)",
            m.kafka_client_queue_messages.clone(),
        );
        registry.register(
            "kafka_client_reply_queue",
            "Operations waiting for the application to poll (librdkafka replyq)",
            m.kafka_client_reply_queue.clone(),
        );
        registry.register(
            "kafka_consumer_lag_records",
            "Last stable offset minus the running consumer's position, from librdkafka statistics (stops updating while paused)",
            m.kafka_consumer_lag_records.clone(),
        );
        registry.register(
            "build_info",
            "1, labelled with the binary's version, git commit and rustc",
            m.build_info.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Sets `build_info{version, git_commit, rustc} 1` (the binary calls it once at start).
    pub fn set_build_info(&self, version: &str, git_commit: &str, rustc: &str) {
        self.build_info.clear();
        self.build_info
            .get_or_create(&BuildInfoLabels {
                version: version.to_string(),
                git_commit: git_commit.to_string(),
                rustc: rustc.to_string(),
            })
            .set(1);
    }

    /// Records the selected librdkafka statistics of one client of `connector` (`client` is
    /// `consumer` or `producer`; one client of each kind per connector should report).
    pub fn record_kafka_statistics(
        &self,
        connector: &str,
        client: &str,
        stats: &rdkafka::Statistics,
    ) {
        let labels = ClientLabels {
            connector: connector.to_string(),
            client: client.to_string(),
        };
        let (tx, rx) = (stats.txmsgs.max(0) as u64, stats.rxmsgs.max(0) as u64);
        let (last_tx, last_rx) = self
            .last_client_totals
            .lock()
            .insert(labels.clone(), (tx, rx))
            .unwrap_or((0, 0));
        // A smaller total means a new client (the connector restarted): count from zero.
        let delta = |now: u64, last: u64| if now >= last { now - last } else { now };
        self.kafka_client_tx_messages
            .get_or_create(&labels)
            .inc_by(delta(tx, last_tx));
        self.kafka_client_rx_messages
            .get_or_create(&labels)
            .inc_by(delta(rx, last_rx));
        self.kafka_client_queue_messages
            .get_or_create(&labels)
            .set(stats.msg_cnt.min(i64::MAX as u64) as i64);
        self.kafka_client_reply_queue
            .get_or_create(&labels)
            .set(stats.replyq);
        for b in stats.brokers.values() {
            // Bootstrap and internal entries are not brokers of the cluster.
            if b.nodeid < 0 || b.source == "internal" || b.source == "logical" {
                continue;
            }
            if let Some(rtt) = b.rtt.as_ref().filter(|w| w.cnt > 0) {
                self.kafka_broker_rtt_seconds
                    .get_or_create(&BrokerLabels {
                        connector: connector.to_string(),
                        client: client.to_string(),
                        broker: b.name.clone(),
                    })
                    .set(rtt.avg as f64 / 1e6);
            }
        }
        if client == "consumer" {
            for t in stats.topics.values() {
                for p in t.partitions.values() {
                    // The Java client's records-lag: the end a read_committed consumer can
                    // reach (last stable offset) minus its position. librdkafka's own
                    // `consumer_lag` counts from the offset this client committed, which it
                    // does not know when offsets are committed through a transaction (the
                    // sink). -1 is the internal UA partition; negative offsets are unknown.
                    let end = if p.ls_offset >= 0 {
                        p.ls_offset
                    } else {
                        p.hi_offset
                    };
                    if p.partition < 0 || end < 0 || p.app_offset < 0 {
                        continue;
                    }
                    self.kafka_consumer_lag_records
                        .get_or_create(&PartitionLabels {
                            connector: connector.to_string(),
                            topic: t.topic.clone(),
                            partition: p.partition.to_string(),
                        })
                        .set((end - p.app_offset).max(0));
                }
            }
        }
    }

    /// The value of one series as rendered (`name{labels}` exactly as in [`Metrics::render`]),
    /// 0 when it does not exist yet (tests and the live summary read metrics this way).
    pub fn sample(&self, series: &str) -> f64 {
        self.render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The conventional process metrics, read from `/proc/self` on each scrape (Linux; elsewhere
/// they are absent).
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` tells about this process.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: Option<i64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ): 100 on every Linux architecture
/// the project builds for.
const CLOCK_TICKS: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

impl ProcessStats {
    /// Parses `/proc/self/stat` (`stat`) against `/proc/stat`'s `btime` (boot time in seconds).
    fn parse(stat: &str, btime: f64) -> Option<ProcessStats> {
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Field numbers of proc(5) minus 3 (pid, comm and state come first).
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        Some(ProcessStats {
            cpu_seconds: (num(11)? + num(12)?) / CLOCK_TICKS,
            threads: num(17)? as i64,
            start_time_seconds: btime + num(19)? / CLOCK_TICKS,
            virtual_bytes: num(20)? as i64,
            resident_bytes: num(21)? as i64 * PAGE_SIZE,
            open_fds: 0,
            max_fds: None,
        })
    }

    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let mut s = ProcessStats::parse(&stat, btime)?;
        s.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        s.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok());
        Some(s)
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<i64>); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(s.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(s.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                Some(s.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
            ("process_threads", "Number of OS threads", Some(s.threads)),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        let start = ConstGauge::new(s.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_prefix_and_labels() {
        let m = Metrics::new();
        m.sink_commands
            .get_or_create(&CommandLabels {
                connector: "sink".into(),
                command: "BookAppointment".into(),
                outcome: "applied".into(),
            })
            .inc();
        m.athena_quota_remaining.set(42);
        let text = m.render();
        assert!(
            text.contains(
                "athena_connect_sink_commands_total{connector=\"sink\",command=\"BookAppointment\",outcome=\"applied\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("athena_connect_athena_quota_remaining 42"),
            "{text}"
        );
        m.set_build_info("1.2.3", "abc123", "1.95.0");
        m.consumer_lag_records
            .get_or_create(&PartitionLabels {
                connector: "sink".into(),
                topic: "cmds".into(),
                partition: "2".into(),
            })
            .set(7);
        let text = m.render();
        for line in [
            "athena_connect_build_info{version=\"1.2.3\",git_commit=\"abc123\",rustc=\"1.95.0\"} 1",
            "athena_connect_consumer_lag_records{connector=\"sink\",topic=\"cmds\",partition=\"2\"} 7",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_threads ",
                "process_start_time_seconds ",
            ] {
                assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
            }
            assert!(m.sample("process_resident_memory_bytes") > 0.0);
            assert!(m.sample("process_open_fds") >= 1.0);
        }
    }

    #[test]
    fn proc_stat_fields() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (athena (x) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 \
                    7 0 12345 104857600 2560 18446744073709551615";
        let s = ProcessStats::parse(stat, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert!(ProcessStats::parse("garbage", 0.0).is_none());
    }

    #[test]
    fn kafka_statistics_become_counters_and_gauges() {
        let m = Metrics::new();
        let json = |tx: i64| {
            serde_json::json!({
                "name": "c#consumer-1", "client_id": "athena-connect", "type": "consumer",
                "ts": 1, "time": 1, "age": 1, "replyq": 2, "msg_cnt": 3, "msg_size": 0,
                "msg_max": 0, "msg_size_max": 0, "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0,
                "txmsgs": tx, "txmsg_bytes": 0, "rxmsgs": 10, "rxmsg_bytes": 0, "simple_cnt": 0,
                "metadata_cache_cnt": 0, "brokers": {}, "topics": {}
            })
        };
        let parse = |v: serde_json::Value| -> rdkafka::Statistics {
            serde_json::from_value(v).expect("statistics JSON")
        };
        m.record_kafka_statistics("sink", "consumer", &parse(json(5)));
        m.record_kafka_statistics("sink", "consumer", &parse(json(8)));
        let l = "{connector=\"sink\",client=\"consumer\"}";
        assert_eq!(
            m.sample(&format!("athena_connect_kafka_client_tx_messages_total{l}")),
            8.0
        );
        assert_eq!(
            m.sample(&format!("athena_connect_kafka_client_rx_messages_total{l}")),
            10.0
        );
        assert_eq!(
            m.sample(&format!("athena_connect_kafka_client_reply_queue{l}")),
            2.0
        );
        // A restarted client starts from zero again: its whole total is new.
        m.record_kafka_statistics("sink", "consumer", &parse(json(2)));
        assert_eq!(
            m.sample(&format!("athena_connect_kafka_client_tx_messages_total{l}")),
            10.0
        );
    }
}

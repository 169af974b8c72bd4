//! Prometheus metrics: every name and label set is defined here, once.
//!
//! Names follow `athena_connect_<name>_<unit>[_total]` and reuse Kafka Connect's vocabulary
//! where one exists (records produced, poll, DLQ produce requests, offset commits). Labels come
//! from fixed sets: connector names and feeds from the config, command types and outcomes from
//! enums, route *templates* (never URLs), error classes. Never a practice's patient data, never
//! an id that grows without bound.
//!
//! Connectors record through [`global()`]; the admin API renders it with [`Metrics::render`].

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
}

impl Metrics {
    /// A fresh set of metrics with its own registry (tests); the process uses [`global()`].
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("athena_connect");
        let m = Metrics {
            source_polls: Family::default(),
            source_records_produced: Family::default(),
            source_offset_commits: Family::default(),
            source_feed_lag_seconds: Family::default(),
            source_budget_poll_interval_seconds: Family::default(),
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
            registry: Registry::default(),
        };
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
        Metrics { registry, ..m }
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
    }
}

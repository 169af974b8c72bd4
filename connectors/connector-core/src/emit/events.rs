//! The events every connector (or the core itself) emits; connector-specific ones live in
//! their crate's `telemetry` module.

use std::time::Duration;

use crate::metrics::{
    ConnectorLabels, ConnectorStateLabels, ErrorLabels, FeedLabels, RouteLabels, ServerLabels,
    global,
};
use crate::runtime::TaskState;

use super::InternalEvent;

/// A batch of a source's records that Kafka acknowledged (`source_records_produced_total`).
#[derive(Debug, Clone, Copy)]
pub struct EventsProduced<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Feed (or topic family) the records belong to.
    pub feed: &'a str,
    /// How many records Kafka acknowledged.
    pub count: u64,
}

impl InternalEvent for EventsProduced<'_> {
    fn emit(self) {
        tracing::debug!(
            connector = self.connector,
            feed = self.feed,
            count = self.count,
            "Events produced."
        );
        global()
            .source_records_produced
            .get_or_create(&FeedLabels::of(self.connector, self.feed))
            .inc_by(self.count);
    }
}

/// One record Kafka acknowledged on a dead-letter topic (`dlq_produce_requests_total`).
#[derive(Debug, Clone, Copy)]
pub struct DeadLettered<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// The dead-letter topic written.
    pub dlq_topic: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        // `warn`: a record left the stream (recovered, but an operator should look at the DLQ).
        tracing::warn!(
            connector = self.connector,
            dlq_topic = self.dlq_topic,
            "Record written to the dead-letter topic."
        );
        global()
            .dlq_produce_requests
            .get_or_create(&ConnectorLabels::of(self.connector))
            .inc();
    }
}

/// The state of a connector as the supervisor sees it (`connector_state`: 1 for `state`, 0 for
/// the other states). Emitted at every scrape so the gauge is never stale, hence logged at
/// `trace` only (state transitions are logged where they happen).
#[derive(Debug, Clone, Copy)]
pub struct ConnectorStateChanged<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Its current state.
    pub state: TaskState,
}

impl InternalEvent for ConnectorStateChanged<'_> {
    fn emit(self) {
        tracing::trace!(
            connector = self.connector,
            state = self.state.name(),
            "Connector state."
        );
        for st in TaskState::ALL {
            global()
                .connector_state
                .get_or_create(&ConnectorStateLabels {
                    connector: self.connector.to_string(),
                    state: st.name().to_string(),
                })
                .set(i64::from(st == self.state));
        }
    }
}

/// A sink committed consumer offsets (with their results, in one transaction)
/// (`sink_offset_commits_total`).
#[derive(Debug, Clone, Copy)]
pub struct OffsetCommitted<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Result records committed with the offsets.
    pub records: usize,
}

impl InternalEvent for OffsetCommitted<'_> {
    fn emit(self) {
        tracing::debug!(
            connector = self.connector,
            records = self.records,
            "Committed results and offsets."
        );
        global()
            .sink_offset_commits
            .get_or_create(&ConnectorLabels::of(self.connector))
            .inc();
    }
}

/// An error of a connector, counted by class (`errors_total{connector, class}`). Not logged:
/// the place that handles the error logs it with its context (retry, result topic, stop).
#[derive(Debug, Clone, Copy)]
pub struct ErrorRecorded<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// The error class label ([`crate::error::ErrorClass::label`] or a crate's equivalent).
    pub class: &'static str,
}

impl InternalEvent for ErrorRecorded<'_> {
    fn emit(self) {
        global()
            .errors
            .get_or_create(&ErrorLabels {
                connector: self.connector.to_string(),
                class: self.class.to_string(),
            })
            .inc();
    }
}

/// Why an HTTP listener shed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The listener's connection cap was reached.
    ConnectionCap,
    /// The listener's concurrent TLS-handshake cap was reached.
    HandshakeCap,
}

/// An HTTP listener shed a connection at a cap (`http_connections_shed_total{server}`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionShed<'a> {
    /// Listener name (`admin` or a connector name).
    pub server: &'a str,
    /// Which cap.
    pub reason: ShedReason,
}

impl InternalEvent for ConnectionShed<'_> {
    fn emit(self) {
        match self.reason {
            ShedReason::ConnectionCap => tracing::debug!(
                server = self.server,
                "Connection cap reached; shedding a connection."
            ),
            ShedReason::HandshakeCap => tracing::debug!(
                server = self.server,
                "TLS handshake cap reached; closing a connection."
            ),
        }
        global()
            .http_connections_shed
            .get_or_create(&ServerLabels {
                server: self.server.to_string(),
            })
            .inc();
    }
}

/// One athena API request attempt got its answer (`athena_requests_total` and
/// `athena_request_seconds`, by method, route template and status class). Emitted by the
/// observer the binary installs on the athena client; the `athena_request` span is the log.
#[derive(Debug, Clone, Copy)]
pub struct AthenaRequestCompleted<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Route template (never a URL).
    pub route: &'a str,
    /// `2xx` .. `5xx`, or `error` without a response.
    pub status_class: &'a str,
    /// From sending to the response headers.
    pub elapsed: Duration,
}

impl InternalEvent for AthenaRequestCompleted<'_> {
    fn emit(self) {
        let labels = RouteLabels {
            method: self.method.to_string(),
            route: self.route.to_string(),
            status_class: self.status_class.to_string(),
        };
        let m = global();
        m.athena_requests.get_or_create(&labels).inc();
        m.athena_request_seconds
            .get_or_create(&labels)
            .observe(self.elapsed.as_secs_f64());
    }
}

/// athena throttled a request (403 over-QPS or 429) (`athena_throttled_total`). The client logs
/// the throttle itself, where it decides how long to pause.
#[derive(Debug, Clone, Copy)]
pub struct AthenaThrottled;

impl InternalEvent for AthenaThrottled {
    fn emit(self) {
        global().athena_throttled.inc();
    }
}

/// athena reported the API key's remaining daily quota (`X-RateLimit-Remaining`)
/// (`athena_quota_remaining`).
#[derive(Debug, Clone, Copy)]
pub struct AthenaQuotaReported {
    /// Requests left today.
    pub remaining: u64,
}

impl InternalEvent for AthenaQuotaReported {
    fn emit(self) {
        tracing::trace!(remaining = self.remaining, "athena quota reported.");
        global()
            .athena_quota_remaining
            .set(i64::try_from(self.remaining).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: &str) -> f64 {
        global().sample(series)
    }

    #[test]
    fn events_produced_counts_records() {
        let s = "athena_connect_source_records_produced_total{connector=\"ev-produced\",feed=\"patients\"}";
        let before = sample(s);
        EventsProduced {
            connector: "ev-produced",
            feed: "patients",
            count: 3,
        }
        .emit();
        assert_eq!(sample(s) - before, 3.0);
    }

    #[test]
    fn dead_lettered_counts_one() {
        let s = "athena_connect_dlq_produce_requests_total{connector=\"ev-dlq\"}";
        let before = sample(s);
        DeadLettered {
            connector: "ev-dlq",
            dlq_topic: "t.dlq",
        }
        .emit();
        assert_eq!(sample(s) - before, 1.0);
    }

    #[test]
    fn connector_state_sets_one_state() {
        ConnectorStateChanged {
            connector: "ev-state",
            state: TaskState::Running,
        }
        .emit();
        ConnectorStateChanged {
            connector: "ev-state",
            state: TaskState::Paused,
        }
        .emit();
        let g = |st: &str| {
            sample(&format!(
                "athena_connect_connector_state{{connector=\"ev-state\",state=\"{st}\"}}"
            ))
        };
        assert_eq!(g("PAUSED"), 1.0);
        assert_eq!(g("RUNNING"), 0.0);
        assert_eq!(g("FAILED"), 0.0);
    }

    #[test]
    fn offset_committed_counts_one() {
        let s = "athena_connect_sink_offset_commits_total{connector=\"ev-commit\"}";
        let before = sample(s);
        OffsetCommitted {
            connector: "ev-commit",
            records: 4,
        }
        .emit();
        assert_eq!(sample(s) - before, 1.0);
    }

    #[test]
    fn error_recorded_counts_by_class() {
        let s = "athena_connect_errors_total{connector=\"ev-err\",class=\"retriable\"}";
        let before = sample(s);
        ErrorRecorded {
            connector: "ev-err",
            class: "retriable",
        }
        .emit();
        assert_eq!(sample(s) - before, 1.0);
    }

    #[test]
    fn connection_shed_counts_both_caps() {
        let s = "athena_connect_http_connections_shed_total{server=\"ev-shed\"}";
        let before = sample(s);
        for reason in [ShedReason::ConnectionCap, ShedReason::HandshakeCap] {
            ConnectionShed {
                server: "ev-shed",
                reason,
            }
            .emit();
        }
        assert_eq!(sample(s) - before, 2.0);
    }

    #[test]
    fn athena_request_counts_and_times() {
        let labels = "{method=\"GET\",route=\"/v1/{practiceid}/ev-test\",status_class=\"4xx\"}";
        let count = format!("athena_connect_athena_requests_total{labels}");
        let hist = format!("athena_connect_athena_request_seconds_count{labels}");
        let (c0, h0) = (sample(&count), sample(&hist));
        AthenaRequestCompleted {
            method: "GET",
            route: "/v1/{practiceid}/ev-test",
            status_class: "4xx",
            elapsed: Duration::from_millis(5),
        }
        .emit();
        assert_eq!(sample(&count) - c0, 1.0);
        assert_eq!(sample(&hist) - h0, 1.0);
    }

    #[test]
    fn athena_throttle_and_quota_update() {
        let before = sample("athena_connect_athena_throttled_total");
        AthenaThrottled.emit();
        assert_eq!(
            sample("athena_connect_athena_throttled_total") - before,
            1.0
        );
        // No other test of this crate touches the process-wide quota gauge.
        AthenaQuotaReported { remaining: 4242 }.emit();
        assert_eq!(sample("athena_connect_athena_quota_remaining"), 4242.0);
    }
}

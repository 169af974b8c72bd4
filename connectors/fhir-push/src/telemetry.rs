//! The telemetry events of the FHIR push connector (see [`connector_core::emit`]). Records
//! produced and errors use the generic [`connector_core::emit::EventsProduced`] and
//! [`connector_core::emit::ErrorRecorded`].

use std::time::Duration;

use connector_core::emit::{ErrorRecorded, InternalEvent};
use connector_core::metrics::{ConnectorLabels, FeedLabels, PushResultLabels, global};

use crate::notification::NotificationKind;

/// Why an authentic notification was answered 503 (athena retries it).
#[derive(Debug, Clone, Copy)]
pub enum Unavailable<'a> {
    /// A copy of the same notification is being made durable right now.
    InFlight,
    /// The producer would not queue the record.
    NotQueued(&'a rdkafka::error::KafkaError),
    /// Kafka refused the record.
    Refused(&'a rdkafka::error::KafkaError),
    /// Kafka did not acknowledge within the durability budget.
    Timeout(Duration),
}

/// What the receiver answered a notification.
#[derive(Debug, Clone, Copy)]
pub enum NotificationResult<'a> {
    /// Durable on Kafka, answered 200.
    Accepted,
    /// A handshake, heartbeat or query-status without events, answered 200.
    Heartbeat {
        /// The notification type.
        kind: NotificationKind,
        /// Whether it moved the subscription's counter (counts as liveness).
        live: bool,
    },
    /// Every event already accepted within the replay window: 200 without a record.
    Replayed,
    /// Every event older than `max_event_age`: 422.
    Stale {
        /// The configured maximum age.
        max_event_age: Duration,
    },
    /// The signature or token did not verify: 401, nothing produced.
    Unauthorized {
        /// Why (no payload, only the kind of failure).
        reason: &'a dyn std::fmt::Debug,
    },
    /// Not durable yet: 503.
    Unavailable(Unavailable<'a>),
}

impl NotificationResult<'_> {
    /// The bounded `result` label.
    pub fn label(&self) -> &'static str {
        match self {
            NotificationResult::Accepted => "accepted",
            NotificationResult::Heartbeat { .. } => "heartbeat",
            NotificationResult::Replayed => "replayed",
            NotificationResult::Stale { .. } => "stale",
            NotificationResult::Unauthorized { .. } => "unauthorized",
            NotificationResult::Unavailable(_) => "unavailable",
        }
    }
}

/// The receiver answered a push notification (`push_notifications_total{connector, result}`;
/// replays also `push_replays_total`, stale ones `push_stale_refused_total`, unauthorized ones
/// `errors_total{class="permanent"}`, unavailable ones `errors_total{class="retriable"}`).
#[derive(Debug, Clone, Copy)]
pub struct NotificationReceived<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// What was answered.
    pub result: NotificationResult<'a>,
}

impl InternalEvent for NotificationReceived<'_> {
    fn emit(self) {
        let connector = self.connector;
        let m = global();
        match self.result {
            NotificationResult::Accepted => {
                tracing::debug!(connector, "Notification durable on Kafka.");
            }
            NotificationResult::Heartbeat { kind, live } => {
                tracing::debug!(connector, kind = ?kind, live, "Notification without events acknowledged.");
            }
            NotificationResult::Replayed => {
                m.push_replays
                    .get_or_create(&ConnectorLabels::of(connector))
                    .inc();
                tracing::debug!(
                    connector,
                    "Replayed notification acknowledged without a new record."
                );
            }
            NotificationResult::Stale { max_event_age } => {
                m.push_stale_refused
                    .get_or_create(&ConnectorLabels::of(connector))
                    .inc();
                tracing::warn!(
                    connector,
                    max_event_age_secs = max_event_age.as_secs(),
                    "Refused an authentic notification whose events are all older than max_event_age."
                );
            }
            NotificationResult::Unauthorized { reason } => {
                ErrorRecorded {
                    connector,
                    class: "permanent",
                }
                .emit();
                tracing::warn!(connector, reason = ?reason, "Rejected an unauthenticated notification.");
            }
            NotificationResult::Unavailable(why) => {
                ErrorRecorded {
                    connector,
                    class: "retriable",
                }
                .emit();
                match why {
                    Unavailable::InFlight => tracing::debug!(
                        connector,
                        "A copy of this notification is in flight; answering 503."
                    ),
                    Unavailable::NotQueued(e) => {
                        tracing::warn!(connector, error = %e, "Could not queue a notification for Kafka; answering 503.")
                    }
                    Unavailable::Refused(e) => {
                        tracing::warn!(connector, error = %e, "Kafka refused a notification; answering 503.")
                    }
                    Unavailable::Timeout(budget) => tracing::warn!(
                        connector,
                        budget_ms = budget.as_millis() as u64,
                        "Kafka did not acknowledge a notification in time; answering 503."
                    ),
                }
            }
        }
        m.push_notifications
            .get_or_create(&PushResultLabels {
                connector: connector.to_string(),
                result: self.result.label().to_string(),
            })
            .inc();
    }
}

/// No authentic notification for longer than the heartbeat period (`push_gaps_total`); a
/// catch-up follows.
#[derive(Debug, Clone, Copy)]
pub struct PushGap<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Gaps detected so far by this process.
    pub gaps: u64,
}

impl InternalEvent for PushGap<'_> {
    fn emit(self) {
        tracing::warn!(
            connector = self.connector,
            gaps = self.gaps,
            "No push notification within the heartbeat period; running a catch-up check."
        );
        global()
            .push_gaps
            .get_or_create(&ConnectorLabels::of(self.connector))
            .inc();
    }
}

/// Time since the last authentic notification (`source_feed_lag_seconds{feed="push"}`).
#[derive(Debug, Clone, Copy)]
pub struct PushSilenceObserved<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// The silence.
    pub silence: Duration,
}

impl InternalEvent for PushSilenceObserved<'_> {
    fn emit(self) {
        global()
            .source_feed_lag_seconds
            .get_or_create(&FeedLabels::of(self.connector, crate::gap::PUSH_FEED))
            .set(self.silence.as_secs_f64());
    }
}

/// What one step of a catch-up read found.
#[derive(Debug, Clone, Copy)]
pub enum CatchUpRead<'a> {
    /// A catch-up started with subscribed topics no changed-data feed covers
    /// (`push_catch_up_uncovered_total`).
    Uncovered {
        /// Connector name.
        connector: &'a str,
        /// How many topics.
        topics: usize,
    },
    /// Events produced from a feed, acknowledged by Kafka (`push_catch_up_events_total`).
    Produced {
        /// Connector name.
        connector: &'a str,
        /// How many events.
        events: usize,
    },
    /// Reading one feed failed (`push_catch_up_failures_total{feed}`); the caller logs why.
    Failed {
        /// Connector name.
        connector: &'a str,
        /// The changed-data feed.
        feed: &'a str,
    },
}

impl InternalEvent for CatchUpRead<'_> {
    fn emit(self) {
        let m = global();
        match self {
            CatchUpRead::Uncovered { connector, topics } => {
                if topics > 0 {
                    m.push_catch_up_uncovered
                        .get_or_create(&ConnectorLabels::of(connector))
                        .inc_by(topics as u64);
                }
            }
            CatchUpRead::Produced { connector, events } => {
                tracing::debug!(connector, events, "Push catch-up events produced.");
                m.push_catch_up_events
                    .get_or_create(&ConnectorLabels::of(connector))
                    .inc_by(events as u64);
            }
            CatchUpRead::Failed { connector, feed } => {
                m.push_catch_up_failures
                    .get_or_create(&FeedLabels::of(connector, feed))
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: &str) -> f64 {
        global().sample(series)
    }

    #[test]
    fn every_result_is_counted_under_its_label() {
        let e = rdkafka::error::KafkaError::Canceled;
        let results = [
            NotificationResult::Accepted,
            NotificationResult::Heartbeat {
                kind: NotificationKind::Heartbeat,
                live: true,
            },
            NotificationResult::Replayed,
            NotificationResult::Stale {
                max_event_age: Duration::from_secs(60),
            },
            NotificationResult::Unauthorized { reason: &"bad" },
            NotificationResult::Unavailable(Unavailable::Refused(&e)),
        ];
        for r in results {
            let s = format!(
                "athena_connect_push_notifications_total{{connector=\"tel-push\",result=\"{}\"}}",
                r.label()
            );
            let before = sample(&s);
            NotificationReceived {
                connector: "tel-push",
                result: r,
            }
            .emit();
            assert_eq!(sample(&s) - before, 1.0, "{}", r.label());
        }
        let one = |name: &str| sample(&format!("athena_connect_{name}{{connector=\"tel-push\"}}"));
        assert_eq!(one("push_replays_total"), 1.0);
        assert_eq!(one("push_stale_refused_total"), 1.0);
        let err = |class: &str| {
            sample(&format!(
                "athena_connect_errors_total{{connector=\"tel-push\",class=\"{class}\"}}"
            ))
        };
        assert_eq!(err("permanent"), 1.0);
        assert_eq!(err("retriable"), 1.0);
    }

    #[test]
    fn gap_silence_and_catch_up_update_their_metrics() {
        PushGap {
            connector: "tel-gap",
            gaps: 1,
        }
        .emit();
        PushSilenceObserved {
            connector: "tel-gap",
            silence: Duration::from_secs(7),
        }
        .emit();
        CatchUpRead::Uncovered {
            connector: "tel-gap",
            topics: 2,
        }
        .emit();
        CatchUpRead::Produced {
            connector: "tel-gap",
            events: 5,
        }
        .emit();
        CatchUpRead::Failed {
            connector: "tel-gap",
            feed: "patients",
        }
        .emit();
        let one = |name: &str| sample(&format!("athena_connect_{name}{{connector=\"tel-gap\"}}"));
        assert_eq!(one("push_gaps_total"), 1.0);
        assert_eq!(one("push_catch_up_uncovered_total"), 2.0);
        assert_eq!(one("push_catch_up_events_total"), 5.0);
        let feed = |name: &str, feed: &str| {
            sample(&format!(
                "athena_connect_{name}{{connector=\"tel-gap\",feed=\"{feed}\"}}"
            ))
        };
        assert_eq!(feed("push_catch_up_failures_total", "patients"), 1.0);
        assert_eq!(feed("source_feed_lag_seconds", "push"), 7.0);
    }
}

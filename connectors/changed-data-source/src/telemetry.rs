//! The telemetry events of a changed-data feed (see [`connector_core::emit`]): each logs and
//! counts one thing that happened to a (connector, feed). Records produced and errors use the
//! generic [`connector_core::emit::EventsProduced`] and [`connector_core::emit::ErrorRecorded`].

use std::time::Duration;

use connector_core::emit::InternalEvent;
use connector_core::metrics::{FeedLabels, global};

/// A poll of the changed-data feed was issued (`source_polls_total`), destructive or replay.
#[derive(Debug, Clone, Copy)]
pub struct FeedPolled<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Feed name.
    pub feed: &'a str,
    /// A non-destructive re-read of a window after a crash.
    pub replay: bool,
}

impl InternalEvent for FeedPolled<'_> {
    fn emit(self) {
        tracing::trace!(
            connector = self.connector,
            feed = self.feed,
            replay = self.replay,
            "Feed polled."
        );
        global()
            .source_polls
            .get_or_create(&FeedLabels::of(self.connector, self.feed))
            .inc();
    }
}

/// The feed's cursor was committed to Kafka (`source_offset_commits_total`).
#[derive(Debug, Clone, Copy)]
pub struct CursorCommitted<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Feed name.
    pub feed: &'a str,
}

impl InternalEvent for CursorCommitted<'_> {
    fn emit(self) {
        tracing::debug!(
            connector = self.connector,
            feed = self.feed,
            "Cursor committed."
        );
        global()
            .source_offset_commits
            .get_or_create(&FeedLabels::of(self.connector, self.feed))
            .inc();
    }
}

/// How long ago the feed's cursor last advanced (`source_feed_lag_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct FeedLagObserved<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Feed name.
    pub feed: &'a str,
    /// Seconds since the last cursor commit (negative clock skew reads as 0).
    pub lag_seconds: f64,
}

impl InternalEvent for FeedLagObserved<'_> {
    fn emit(self) {
        global()
            .source_feed_lag_seconds
            .get_or_create(&FeedLabels::of(self.connector, self.feed))
            .set(self.lag_seconds.max(0.0));
    }
}

/// The poll interval the feed's share of the daily request budget allows
/// (`source_budget_poll_interval_seconds`, 0 without a budget).
#[derive(Debug, Clone, Copy)]
pub struct BudgetIntervalChanged<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Feed name.
    pub feed: &'a str,
    /// The interval, `None` without a budget.
    pub interval: Option<Duration>,
}

impl InternalEvent for BudgetIntervalChanged<'_> {
    fn emit(self) {
        global()
            .source_budget_poll_interval_seconds
            .get_or_create(&FeedLabels::of(self.connector, self.feed))
            .set(self.interval.map_or(0.0, |b| b.as_secs_f64()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: &str) -> f64 {
        global().sample(series)
    }

    const L: &str = "{connector=\"tel-cds\",feed=\"patients\"}";

    #[test]
    fn feed_polled_counts_polls() {
        let s = format!("athena_connect_source_polls_total{L}");
        let before = sample(&s);
        for replay in [false, true] {
            FeedPolled {
                connector: "tel-cds",
                feed: "patients",
                replay,
            }
            .emit();
        }
        assert_eq!(sample(&s) - before, 2.0);
    }

    #[test]
    fn cursor_committed_counts_commits() {
        let s = format!("athena_connect_source_offset_commits_total{L}");
        let before = sample(&s);
        CursorCommitted {
            connector: "tel-cds",
            feed: "patients",
        }
        .emit();
        assert_eq!(sample(&s) - before, 1.0);
    }

    #[test]
    fn lag_and_budget_set_their_gauges() {
        FeedLagObserved {
            connector: "tel-cds",
            feed: "patients",
            lag_seconds: 12.5,
        }
        .emit();
        assert_eq!(
            sample(&format!("athena_connect_source_feed_lag_seconds{L}")),
            12.5
        );
        BudgetIntervalChanged {
            connector: "tel-cds",
            feed: "patients",
            interval: Some(Duration::from_secs(30)),
        }
        .emit();
        assert_eq!(
            sample(&format!(
                "athena_connect_source_budget_poll_interval_seconds{L}"
            )),
            30.0
        );
    }
}

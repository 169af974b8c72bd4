//! Gap detection. athena numbers events per bundle (not per subscription) and documents no
//! heartbeats, so the IG's event-number check cannot find lost notifications there; what is left
//! is silence: no authentic notification for longer than `heartbeat_period`. Silence raises the
//! gap signal (the `source_feed_lag_seconds{feed="push"}` gauge, a gap counter, the task's last
//! error) and runs the catch-up hook, which re-checks the Subscriptions (the usual cause of
//! silence is a subscription athena turned off) and reads the missed changes
//! ([`crate::catch_up`]). The monitor also keeps the wall-clock time of the last notification,
//! which is where a catch-up window starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use connector_core::metrics::{FeedLabels, global};
use parking_lot::Mutex;

/// Tracks when the last authentic notification arrived.
#[derive(Debug)]
pub struct GapMonitor {
    last: Mutex<Instant>,
    last_wall: Mutex<Option<DateTime<Utc>>>,
    period: Duration,
    gaps: AtomicU64,
    labels: FeedLabels,
}

impl GapMonitor {
    /// A monitor for `connector` expecting traffic at least every `period`.
    pub fn new(connector: &str, period: Duration) -> Self {
        GapMonitor {
            last: Mutex::new(Instant::now()),
            last_wall: Mutex::new(None),
            period,
            gaps: AtomicU64::new(0),
            labels: FeedLabels {
                connector: connector.to_string(),
                feed: "push".into(),
            },
        }
    }

    /// Records an authentic notification (event, heartbeat or handshake).
    pub fn seen(&self) {
        *self.last.lock() = Instant::now();
        *self.last_wall.lock() = Some(Utc::now());
        global()
            .source_feed_lag_seconds
            .get_or_create(&self.labels)
            .set(0.0);
    }

    /// Wall-clock time of the last authentic notification of this process (`None` before the
    /// first). Unlike the silence clock, a gap does not reset it.
    pub fn last_seen_at(&self) -> Option<DateTime<Utc>> {
        *self.last_wall.lock()
    }

    /// Time since the last authentic notification.
    pub fn silence(&self) -> Duration {
        self.last.lock().elapsed()
    }

    /// Gaps detected so far.
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// Checks once: updates the lag gauge and, when silent for longer than the period, counts a
    /// gap, restarts the silence clock (one gap per silent period) and returns true.
    pub fn check(&self) -> bool {
        let silence = self.silence();
        global()
            .source_feed_lag_seconds
            .get_or_create(&self.labels)
            .set(silence.as_secs_f64());
        if silence > self.period {
            self.gaps.fetch_add(1, Ordering::Relaxed);
            global()
                .push_gaps
                .get_or_create(&connector_core::metrics::ConnectorLabels {
                    connector: self.labels.connector.clone(),
                })
                .inc();
            *self.last.lock() = Instant::now();
            true
        } else {
            false
        }
    }

    /// How often [`GapMonitor::check`] should run.
    pub fn tick(&self) -> Duration {
        (self.period / 4).max(Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_beyond_period_is_one_gap() {
        let m = GapMonitor::new("t", Duration::from_millis(30));
        assert!(!m.check());
        std::thread::sleep(Duration::from_millis(60));
        assert!(m.check());
        assert!(!m.check(), "the clock restarts after a gap");
        assert_eq!(m.gaps(), 1);
        assert!(
            global()
                .render()
                .contains("athena_connect_push_gaps_total{connector=\"t\"} 1"),
            "the gap is counted in the exported metrics"
        );
        assert_eq!(m.last_seen_at(), None, "a gap is not a notification");
        m.seen();
        assert!(m.silence() < Duration::from_millis(30));
        assert!(m.last_seen_at().is_some());
    }
}

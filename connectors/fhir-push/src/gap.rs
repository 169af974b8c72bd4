//! Gap detection. athena numbers events per bundle (not per subscription) and documents no
//! heartbeats, so the IG's event-number check cannot find lost notifications there; what is left
//! is silence: no authentic notification for longer than `heartbeat_period`. Silence raises the
//! gap signal (the `source_feed_lag_seconds{feed="push"}` gauge, a gap counter, the task's last
//! error) and runs the catch-up hook, which re-checks the Subscriptions (the usual cause of
//! silence is a subscription athena turned off) and reads the missed changes
//! ([`crate::catch_up`]). Only new evidence resets the silence clock: a newly accepted event
//! notification, or a heartbeat / handshake whose event counter moved
//! ([`GapMonitor::heartbeat`]); a replayed notification or heartbeat does not. The monitor also keeps the wall-clock time of the last notification,
//! which is where a catch-up window starts.
//!
//! With several receivers behind one URL (decision 0026) a notification reaches one of them, so
//! one process's silence is not a gap: before a silence counts, the connector looks at the
//! newest record on the notifications topic, which every receiver writes to, and feeds it in
//! with [`GapMonitor::heard_elsewhere`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use connector_core::emit::InternalEvent;

use crate::telemetry::{PushGap, PushSilenceObserved};

/// The `feed` label of the push connector's lag gauge (`source_feed_lag_seconds`).
pub const PUSH_FEED: &str = "push";
use parking_lot::Mutex;

/// Tracks when the last authentic notification arrived.
#[derive(Debug)]
pub struct GapMonitor {
    last: Mutex<Instant>,
    last_wall: Mutex<Option<DateTime<Utc>>>,
    period: Duration,
    gaps: AtomicU64,
    connector: String,
    /// Last event counter seen per subscription (few subscriptions; capped anyway).
    counters: Mutex<HashMap<String, u64>>,
}

/// Most subscriptions whose counters are tracked; beyond it the table starts over (the cost is
/// one heartbeat per subscription counted as liveness again).
const MAX_TRACKED_SUBSCRIPTIONS: usize = 1024;

impl GapMonitor {
    /// A monitor for `connector` expecting traffic at least every `period`.
    pub fn new(connector: &str, period: Duration) -> Self {
        GapMonitor {
            last: Mutex::new(Instant::now()),
            last_wall: Mutex::new(None),
            period,
            gaps: AtomicU64::new(0),
            connector: connector.to_string(),
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// A notification without events (heartbeat, handshake, status) counts as liveness only
    /// when the subscription's event counter (`eventsSinceSubscriptionStart`) moved past the
    /// last value seen: a replayed heartbeat repeats an old counter and must not hide a gap,
    /// and one without a counter proves nothing. Returns whether it counted.
    pub fn heartbeat(&self, subscription: Option<&str>, counter: Option<u64>) -> bool {
        let moved = counter.is_some_and(|c| self.note_counter(subscription, c));
        if moved {
            self.seen();
        }
        moved
    }

    /// Records the event counter of an accepted notification; true when it moved forward
    /// (the first value seen by this process counts as moved).
    pub fn note_counter(&self, subscription: Option<&str>, counter: u64) -> bool {
        let key = subscription.unwrap_or_default();
        let mut m = self.counters.lock();
        if m.get(key).is_some_and(|prev| *prev >= counter) {
            return false;
        }
        if m.len() >= MAX_TRACKED_SUBSCRIPTIONS && !m.contains_key(key) {
            m.clear();
        }
        m.insert(key.to_string(), counter);
        true
    }

    /// Records an authentic notification (event, heartbeat or handshake).
    pub fn seen(&self) {
        *self.last.lock() = Instant::now();
        *self.last_wall.lock() = Some(Utc::now());
        PushSilenceObserved {
            connector: &self.connector,
            silence: Duration::ZERO,
        }
        .emit();
    }

    /// Records that some receiver (maybe another replica) made a notification durable at `at`
    /// (the newest record time on the notifications topic). Moves the silence clock and the
    /// last-seen time forward only; returns whether it moved them.
    pub fn heard_elsewhere(&self, at: DateTime<Utc>) -> bool {
        let mut wall = self.last_wall.lock();
        if wall.is_some_and(|w| w >= at) {
            return false;
        }
        let ago = (Utc::now() - at).to_std().unwrap_or_default();
        let at_instant = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        let mut last = self.last.lock();
        if at_instant <= *last {
            return false;
        }
        *last = at_instant;
        *wall = Some(at);
        true
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
        PushSilenceObserved {
            connector: &self.connector,
            silence,
        }
        .emit();
        if silence > self.period {
            let gaps = self.gaps.fetch_add(1, Ordering::Relaxed) + 1;
            PushGap {
                connector: &self.connector,
                gaps,
            }
            .emit();
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
    fn replayed_heartbeat_does_not_reset_the_silence_clock() {
        let m = GapMonitor::new("hb", Duration::from_secs(600));
        assert!(!m.heartbeat(Some("Subscription/s1"), None), "no counter");
        assert_eq!(m.last_seen_at(), None);
        assert!(
            m.heartbeat(Some("Subscription/s1"), Some(5)),
            "first counter"
        );
        let first = m.last_seen_at().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!m.heartbeat(Some("Subscription/s1"), Some(5)), "replayed");
        assert!(!m.heartbeat(Some("Subscription/s1"), Some(4)), "older");
        assert_eq!(m.last_seen_at(), Some(first), "replays are not liveness");
        assert!(m.silence() >= Duration::from_millis(20));
        assert!(
            m.heartbeat(Some("Subscription/s2"), Some(1)),
            "per subscription"
        );
        assert!(m.heartbeat(Some("Subscription/s1"), Some(6)), "moved");
    }

    #[test]
    fn a_notification_another_receiver_took_ends_the_silence() {
        let m = GapMonitor::new("elsewhere", Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            !m.heard_elsewhere(Utc::now() - chrono::Duration::seconds(5)),
            "older than this process's clock: no news"
        );
        let at = Utc::now() - chrono::Duration::milliseconds(10);
        assert!(m.heard_elsewhere(at));
        assert_eq!(m.last_seen_at(), Some(at));
        assert!(m.silence() < Duration::from_millis(200));
        assert!(!m.check(), "not a gap: another receiver heard something");
        assert!(!m.heard_elsewhere(at), "the same record twice is no news");
    }

    #[test]
    fn silence_beyond_period_is_one_gap() {
        let m = GapMonitor::new("t", Duration::from_millis(30));
        assert!(!m.check());
        std::thread::sleep(Duration::from_millis(60));
        assert!(m.check());
        assert!(!m.check(), "the clock restarts after a gap");
        assert_eq!(m.gaps(), 1);
        assert!(
            connector_core::metrics::global()
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

//! The crash-safe cursor of one (practice, feed), stored as JSON in the compacted state topic
//! under `<connector>/<practice>/<feed>`.
//!
//! athena marks rows processed the moment it returns them, so the cursor's job is to know when
//! rows may have been handed out without reaching Kafka. The protocol, per drain (one poll, or a
//! run of full pages ending with a short one):
//! 1. write `in_progress_since = now` and wait for Kafka's acknowledgement;
//! 2. poll athena (rows are now marked processed);
//! 3. produce every row and wait for every acknowledgement (or commit the page's transaction,
//!    which carries the cursor with the marker still set); repeat 2-3 while pages are full;
//! 4. write the cursor with `in_progress_since = None`.
//!
//! A cursor found with a marker at start (or after an ambiguous poll) means step 2 happened and
//! step 4 did not: the connector replays `showprocessedstartdatetime = marker - margin` to
//! `showprocessedenddatetime = now + 1s` before polling again.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Most event ids kept for replay dedupe (exactly-once mode). Beyond it the oldest pages are
/// dropped, and a replay may re-send rows from them (documented in the connector page).
pub const MAX_RECENT_IDS: usize = 20_000;

/// The persisted state of one (practice, feed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    #[serde(default = "one")]
    pub v: u32,
    /// Set (and acknowledged) before a destructive poll, cleared once its rows are durable.
    pub in_progress_since: Option<DateTime<Utc>>,
    /// When a page was last made durable (the cursor's position in time).
    pub committed_at: Option<DateTime<Utc>>,
    /// When the feed was last polled, empty or not (the heartbeat).
    pub polled_at: Option<DateTime<Utc>>,
    /// Events made durable so far by this cursor.
    #[serde(default)]
    pub events_total: u64,
    /// Exactly-once mode: short ids (first 16 hex digits of the event id) of pages committed
    /// recently, so a replay window that overlaps them does not emit them twice.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<RecentPage>,
}

fn one() -> u32 {
    1
}

/// Event ids committed together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentPage {
    /// When the page was committed.
    pub at: DateTime<Utc>,
    /// Short event ids.
    pub ids: Vec<String>,
}

/// The short form of an event id kept in [`Cursor::recent`] (64 bits of the UUID).
pub fn short_id(event_id: &str) -> String {
    event_id.chars().filter(|c| *c != '-').take(16).collect()
}

impl Cursor {
    /// The state-topic key of a (practice, feed).
    pub fn key(connector: &str, practice: &str, feed: &str) -> String {
        format!("{connector}/{practice}/{feed}")
    }

    /// Parses a stored cursor.
    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<Cursor, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Cursor {
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    /// The JSON stored in the state topic.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cursor serialises")
    }

    /// The replay window for a marker: `[marker - margin, now + 1s]`. The extra second covers
    /// athena's whole-second end bound and rows processed in the second the window is computed.
    pub fn replay_window(
        marker: DateTime<Utc>,
        margin: std::time::Duration,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let margin = ChronoDuration::from_std(margin).unwrap_or(ChronoDuration::minutes(2));
        (marker - margin, now + ChronoDuration::seconds(1))
    }

    /// Every short id in [`Cursor::recent`].
    pub fn recent_ids(&self) -> HashSet<String> {
        self.recent
            .iter()
            .flat_map(|p| p.ids.iter().cloned())
            .collect()
    }

    /// Adds a committed page's ids and forgets pages older than `keep` (they are outside any
    /// future replay window) or beyond [`MAX_RECENT_IDS`].
    pub fn remember(&mut self, at: DateTime<Utc>, ids: Vec<String>, keep: std::time::Duration) {
        if !ids.is_empty() {
            self.recent.push_back(RecentPage { at, ids });
        }
        let keep = ChronoDuration::from_std(keep).unwrap_or(ChronoDuration::minutes(10));
        while self.recent.front().is_some_and(|p| p.at < at - keep) {
            self.recent.pop_front();
        }
        let mut total: usize = self.recent.iter().map(|p| p.ids.len()).sum();
        while total > MAX_RECENT_IDS {
            match self.recent.pop_front() {
                Some(p) => total -= p.ids.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn round_trip_and_key() {
        let c = Cursor {
            v: 1,
            in_progress_since: Some(Utc.with_ymd_and_hms(2026, 3, 8, 6, 59, 0).unwrap()),
            events_total: 3,
            ..Default::default()
        };
        let back = Cursor::from_bytes("k", &c.to_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            Cursor::key("src", "195900", "patients"),
            "src/195900/patients"
        );
        let e = Cursor::from_bytes("src/1/patients", b"{not json").unwrap_err();
        assert!(e.to_string().contains("src/1/patients"));
        // Older cursors without the optional fields still load.
        let old = Cursor::from_bytes(
            "k",
            br#"{"in_progress_since":null,"committed_at":null,"polled_at":null}"#,
        )
        .unwrap();
        assert_eq!(old.v, 1);
    }

    #[test]
    fn replay_window_spans_the_margin_and_dst() {
        // Marker 06:59:30 UTC on the 2026 spring-forward day (01:59:30 EST); margin 2 min.
        let marker = Utc.with_ymd_and_hms(2026, 3, 8, 6, 59, 30).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 30).unwrap();
        let (s, e) = Cursor::replay_window(marker, Duration::from_secs(120), now);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 3, 8, 6, 57, 30).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 31).unwrap());
        // As athena sees it: the window crosses 02:00 EST -> 03:00 EDT.
        use athena_client::api::changed::format_eastern;
        assert_eq!(format_eastern(s), "03/08/2026 01:57:30");
        assert_eq!(format_eastern(e), "03/08/2026 03:00:31");
    }

    #[test]
    fn remember_prunes_by_age_and_size() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut c = Cursor::default();
        c.remember(t0, vec!["a".into()], Duration::from_secs(60));
        c.remember(
            t0 + ChronoDuration::seconds(30),
            vec!["b".into()],
            Duration::from_secs(60),
        );
        assert_eq!(c.recent_ids().len(), 2);
        c.remember(
            t0 + ChronoDuration::seconds(90),
            vec![],
            Duration::from_secs(60),
        );
        assert_eq!(c.recent_ids(), HashSet::from(["b".to_string()]));
        let big: Vec<String> = (0..MAX_RECENT_IDS).map(|i| i.to_string()).collect();
        c.remember(
            t0 + ChronoDuration::seconds(91),
            big,
            Duration::from_secs(60),
        );
        assert_eq!(c.recent_ids().len(), MAX_RECENT_IDS);
        assert!(!c.recent_ids().contains("b"));
        assert_eq!(
            short_id("6f1c2d9e-8b44-4c1a-9f3e-52a7d0c41b88"),
            "6f1c2d9e8b444c1a"
        );
    }
}

//! Replay protection at the receiver. A signature proves who wrote a body, not when, so a
//! captured notification stays valid forever; athena also retries (at-least-once). Both arrive
//! as the same event ids, and both are answered 2xx without a new record when every event of
//! the notification was accepted within `replay_window`.
//!
//! - Bounded: at most `replay_max_entries` ids, the oldest forgotten first; ids older than the
//!   window are dropped as they expire.
//! - Survives restart: at start the guard is rebuilt from the notifications topic's last
//!   `replay_window` ([`rebuild`]), which holds exactly the notifications accepted before.
//! - Concurrent copies: the first copy reserves its ids; a copy arriving while the first is
//!   still being made durable is answered 503 (athena retries, and then finds it accepted),
//!   so two copies in flight never give two records.
//! - Events older than `max_event_age` are refused before any of this (see [`crate::receiver`]);
//!   `replay_window >= max_event_age` (validated), so a replay is either remembered or too old.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_core::CoreError;
use connector_core::kafka::KafkaConfig;
use parking_lot::Mutex;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::adapter::PushAdapter;
use crate::error::Error;

/// Remembered event ids with the time each was accepted.
#[derive(Debug)]
pub struct ReplayGuard {
    state: Mutex<State>,
    window: chrono::Duration,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct State {
    accepted: HashMap<Arc<str>, DateTime<Utc>>,
    order: VecDeque<(DateTime<Utc>, Arc<str>)>,
    in_flight: HashSet<Arc<str>>,
}

/// What [`ReplayGuard::admit`] decided.
#[derive(Debug)]
pub enum Admit {
    /// New: produce it; call [`Reservation::commit`] once Kafka acknowledged.
    New(Reservation),
    /// Every event was accepted within the window: answer 2xx, produce nothing.
    Replay,
    /// A copy of it is being made durable right now: answer 503 (athena retries).
    InFlight,
}

/// Ids reserved by one request; released on drop unless committed.
#[derive(Debug)]
pub struct Reservation {
    guard: Arc<ReplayGuard>,
    keys: Vec<Arc<str>>,
    committed: bool,
}

impl Reservation {
    /// Records the ids as accepted at `at` (call after Kafka acknowledged).
    pub fn commit(mut self, at: DateTime<Utc>) {
        let keys = std::mem::take(&mut self.keys);
        let mut st = self.guard.state.lock();
        for k in keys {
            st.in_flight.remove(&k);
            self.guard.insert(&mut st, k, at);
        }
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed && !self.keys.is_empty() {
            let mut st = self.guard.state.lock();
            for k in &self.keys {
                st.in_flight.remove(k);
            }
        }
    }
}

impl ReplayGuard {
    /// A guard remembering ids for `window`, at most `max_entries` of them.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        ReplayGuard {
            state: Mutex::new(State::default()),
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
            max_entries: max_entries.max(1),
        }
    }

    /// Decides for a notification whose events have the dedup `keys` (empty: nothing to key on,
    /// always new). Ids already accepted are not reserved again.
    pub fn admit(self: &Arc<Self>, keys: &[String], now: DateTime<Utc>) -> Admit {
        let mut st = self.state.lock();
        self.expire(&mut st, now);
        let fresh: Vec<&String> = keys
            .iter()
            .filter(|k| !st.accepted.contains_key(k.as_str()))
            .collect();
        if !keys.is_empty() && fresh.is_empty() {
            return Admit::Replay;
        }
        if fresh.iter().any(|k| st.in_flight.contains(k.as_str())) {
            return Admit::InFlight;
        }
        let reserved: Vec<Arc<str>> = fresh.into_iter().map(|k| Arc::from(k.as_str())).collect();
        for k in &reserved {
            st.in_flight.insert(k.clone());
        }
        Admit::New(Reservation {
            guard: self.clone(),
            keys: reserved,
            committed: false,
        })
    }

    /// Remembers `key` as accepted at `at` (the rebuild at start).
    pub fn remember(&self, key: &str, at: DateTime<Utc>) {
        let mut st = self.state.lock();
        self.insert(&mut st, Arc::from(key), at);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.state.lock().accepted.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, st: &mut State, k: Arc<str>, at: DateTime<Utc>) {
        let newer = match st.accepted.get(&k) {
            Some(prev) => at > *prev,
            None => true,
        };
        if newer {
            st.accepted.insert(k.clone(), at);
            st.order.push_back((at, k));
        }
        while st.accepted.len() > self.max_entries {
            let Some((t, old)) = st.order.pop_front() else {
                break;
            };
            // Only the newest entry of a key removes it (older duplicates in `order` are stale).
            if st.accepted.get(&old) == Some(&t) {
                st.accepted.remove(&old);
            }
        }
        // `order` holds at most one stale entry per re-accepted key; keep it bounded too.
        if st.order.len() > 2 * self.max_entries {
            let State {
                accepted, order, ..
            } = st;
            order.retain(|(t, k)| accepted.get(k) == Some(t));
        }
    }

    fn expire(&self, st: &mut State, now: DateTime<Utc>) {
        let oldest = now - self.window;
        while let Some((t, _)) = st.order.front() {
            if *t >= oldest {
                break;
            }
            let (t, k) = st.order.pop_front().expect("front exists");
            if st.accepted.get(&k) == Some(&t) {
                st.accepted.remove(&k);
            }
        }
    }
}

/// Rebuilds `guard` from the records of `topic` written in the last `window` (the receiver
/// produced exactly the notifications it accepted). Reads by assignment, commits nothing, and
/// gives up after `timeout`; returns how many records were read.
pub async fn rebuild(
    guard: Arc<ReplayGuard>,
    adapter: Arc<dyn PushAdapter>,
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
    window: Duration,
    timeout: Duration,
) -> Result<usize, Error> {
    let cfg = kafka.clone();
    let (group_id, topic) = (group_id.to_string(), topic.to_string());
    let kafka_err = |operation: &'static str| move |source| CoreError::Kafka { operation, source };
    tokio::task::spawn_blocking(move || -> Result<usize, Error> {
        let (c, partitions) = crate::catch_up::probe_consumer(&cfg, &group_id, &topic, timeout)?;
        let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
        let mut by_time = TopicPartitionList::new();
        for p in &partitions {
            by_time
                .add_partition_offset(&topic, *p, Offset::Offset(since.timestamp_millis()))
                .map_err(kafka_err("replay reader offsets"))?;
        }
        let starts = c
            .offsets_for_times(by_time, timeout)
            .map_err(kafka_err("notifications offsets for time"))?;
        let mut assign = TopicPartitionList::new();
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for p in &partitions {
            let (_, high) = c
                .fetch_watermarks(&topic, *p, timeout)
                .map_err(kafka_err("notifications watermarks"))?;
            let start = match starts.find_partition(&topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                // No record at or after `since` in this partition.
                _ => continue,
            };
            if start < high {
                assign
                    .add_partition_offset(&topic, *p, Offset::Offset(start))
                    .map_err(kafka_err("replay reader offsets"))?;
                ends.insert(*p, high);
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        c.assign(&assign).map_err(kafka_err("assign replay reader"))?;
        let deadline = std::time::Instant::now() + timeout;
        let mut read = 0usize;
        while !ends.is_empty() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    read,
                    "Replay-protection rebuild timed out; older replays may be produced again (the inflation stage still drops them)."
                );
                break;
            }
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    read += 1;
                    let at = m
                        .timestamp()
                        .to_millis()
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or_else(Utc::now);
                    if let Some(n) = m.payload().and_then(|p| adapter.parse(p).ok()) {
                        for i in 0..n.events.len() {
                            if let Some(k) = n.dedup_key(i) {
                                guard.remember(&k, at);
                            }
                        }
                    }
                    if ends.get(&m.partition()).is_some_and(|h| m.offset() + 1 >= *h) {
                        ends.remove(&m.partition());
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "Replay reader error; continuing.");
                }
                None => {}
            }
        }
        Ok(read)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepted_ids_are_replays_until_they_expire() {
        let g = Arc::new(ReplayGuard::new(Duration::from_secs(3600), 100));
        let t0 = Utc::now();
        let Admit::New(r) = g.admit(&keys(&["a"]), t0) else {
            panic!("first copy is new")
        };
        // A second copy while the first is in flight is told to retry.
        assert!(matches!(g.admit(&keys(&["a"]), t0), Admit::InFlight));
        r.commit(t0);
        assert!(matches!(g.admit(&keys(&["a"]), t0), Admit::Replay));
        // A notification with one new event is new (only the new id is reserved).
        let Admit::New(r) = g.admit(&keys(&["a", "b"]), t0) else {
            panic!("b is new")
        };
        assert_eq!(r.keys.len(), 1);
        drop(r);
        // Dropped without commit: released, so athena's retry is new again.
        assert!(matches!(g.admit(&keys(&["b"]), t0), Admit::New(_)));
        // Past the window the id is forgotten.
        let later = t0 + chrono::Duration::seconds(3601);
        assert!(matches!(g.admit(&keys(&["a"]), later), Admit::New(_)));
        assert_eq!(g.len(), 0);
        // Nothing to key on: always new.
        assert!(matches!(g.admit(&[], t0), Admit::New(_)));
    }

    #[test]
    fn bounded_by_max_entries() {
        let g = Arc::new(ReplayGuard::new(Duration::from_secs(3600), 3));
        let t0 = Utc::now();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            g.remember(k, t0 + chrono::Duration::seconds(i as i64));
        }
        assert_eq!(g.len(), 3);
        assert!(matches!(g.admit(&keys(&["a"]), t0), Admit::New(_)));
        assert!(matches!(g.admit(&keys(&["d"]), t0), Admit::Replay));
        // Re-remembering a key many times does not grow the queue without bound.
        for i in 0..100 {
            g.remember("d", t0 + chrono::Duration::seconds(10 + i));
        }
        assert!(g.state.lock().order.len() <= 6);
    }
}

//! The process-wide, per-API-key rate limiter.
//!
//! athena's quotas belong to the app (client id) in one environment, not to a practice or a connector, so
//! every [`crate::AthenaClient`] built in this process with the same `base_url` + `client_id` shares ONE
//! [`RateLimiter`] (a registry of `Weak` references; the last client dropped frees it).
//!
//! * A token bucket at `rate_limit.qps` with `rate_limit.burst` gates every API request.
//! * Fairness: waiters queue per *lane* (a practice id; practice-less calls share lane `""`), and permits go
//!   round-robin between lanes that have waiters, so one busy practice cannot starve the others.
//!   FIFO holds within a lane.
//! * Throttling answers pause *all* callers until `retry_after` (capped) and drain the bucket.
//! * `X-RateLimit-Limit`/`-Remaining` are recorded from every API response into a [`QuotaSnapshot`]. When
//!   remaining reaches 0 (daily quota, resets at 00:00 GMT) the key is paused until midnight GMT, capped by
//!   `rate_limit.quota_pause_cap`, a warning is logged and the snapshot shows `paused_until`. During that
//!   pause [`RateLimiter::acquire`] fails fast (the caller sees `Error::QuotaExhausted`) rather than
//!   blocking for hours; after the cap, requests probe athena again.
//! * The token endpoint has its own, much smaller per-minute budget (athena: 5/min preview, 50/min prod).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::RateLimitConfig;

/// The latest quota headers athena sent, for metrics and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSnapshot {
    /// `X-RateLimit-Limit` of the latest API response (athena: the daily request limit).
    pub limit: Option<u64>,
    /// `X-RateLimit-Remaining` of the latest API response.
    pub remaining: Option<u64>,
    /// When those headers were observed.
    pub observed_at: Option<DateTime<Utc>>,
    /// Set while callers are paused because the daily quota is exhausted.
    pub paused_until: Option<DateTime<Utc>>,
}

/// A plain token bucket; `rate` tokens per second up to `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: Instant::now(),
        }
    }
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }
    fn until_one(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[derive(Debug)]
struct State {
    bucket: Bucket,
    paused_until: Option<Instant>,
    /// Daily quota exhausted until then: acquire fails fast instead of blocking for hours.
    quota_until: Option<Instant>,
    next_ticket: u64,
    queues: HashMap<String, VecDeque<u64>>,
    /// Lanes with waiters, in round-robin order; the front lane's first ticket is served next.
    order: VecDeque<String>,
}

impl State {
    fn head(&self) -> Option<u64> {
        self.order
            .front()
            .and_then(|l| self.queues.get(l))
            .and_then(|q| q.front().copied())
    }
    fn enqueue(&mut self, lane: &str) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        let q = self.queues.entry(lane.to_owned()).or_default();
        if q.is_empty() {
            self.order.push_back(lane.to_owned());
        }
        q.push_back(t);
        t
    }
    /// Serve the head ticket and move its lane to the back of the round.
    fn pop_head(&mut self) {
        if let Some(lane) = self.order.pop_front() {
            let empty = match self.queues.get_mut(&lane) {
                Some(q) => {
                    q.pop_front();
                    q.is_empty()
                }
                None => true,
            };
            if empty {
                self.queues.remove(&lane);
            } else {
                self.order.push_back(lane);
            }
        }
    }
    fn remove(&mut self, lane: &str, ticket: u64) {
        if let Some(q) = self.queues.get_mut(lane) {
            q.retain(|t| *t != ticket);
            if q.is_empty() {
                self.queues.remove(lane);
                self.order.retain(|l| l != lane);
            }
        }
    }
}

/// The shared limiter for one API key. Obtain it through [`RateLimiter::shared`].
#[derive(Debug)]
pub struct RateLimiter {
    key: String,
    config: RateLimitConfig,
    state: Mutex<State>,
    notify: Notify,
    token_bucket: Mutex<Bucket>,
    quota: Mutex<QuotaSnapshot>,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<RateLimiter>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl RateLimiter {
    /// A limiter that is not registered (tests, or deliberate isolation).
    pub fn new(key: impl Into<String>, config: RateLimitConfig) -> Self {
        let tpm = f64::from(config.token_requests_per_minute);
        RateLimiter {
            key: key.into(),
            state: Mutex::new(State {
                bucket: Bucket::new(config.qps, f64::from(config.burst)),
                paused_until: None,
                quota_until: None,
                next_ticket: 0,
                queues: HashMap::new(),
                order: VecDeque::new(),
            }),
            notify: Notify::new(),
            token_bucket: Mutex::new(Bucket::new(tpm / 60.0, tpm)),
            quota: Mutex::new(QuotaSnapshot::default()),
            config,
        }
    }

    /// The process-wide limiter for `key` (base URL + client id), created with `config` if none is alive.
    /// The first client's settings win for as long as any client with that key exists.
    pub fn shared(key: &str, config: &RateLimitConfig) -> Arc<RateLimiter> {
        let mut reg = REGISTRY.lock();
        if let Some(l) = reg.get(key).and_then(Weak::upgrade) {
            if l.config != *config {
                tracing::warn!(
                    limiter = key,
                    "Rate limiter already exists for this API key; keeping its settings."
                );
            }
            return l;
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(RateLimiter::new(key, config.clone()));
        reg.insert(key.to_owned(), Arc::downgrade(&l));
        l
    }

    /// The key this limiter serves.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Wait for permission to send one API request on behalf of `lane` (a practice id, or `""`).
    /// Cancel-safe: dropping the future gives up the place in the queue.
    ///
    /// Fails fast with the remaining pause while the daily quota is exhausted: blocking a caller for hours
    /// would only hide the condition (and break Kafka consumer liveness); the caller gets
    /// `Error::QuotaExhausted` with a `retry_after` instead.
    pub async fn acquire(&self, lane: &str) -> Result<(), Duration> {
        let ticket = self.state.lock().enqueue(lane);
        let mut guard = Waiter {
            limiter: self,
            lane,
            ticket,
            served: false,
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut st = self.state.lock();
                let now = Instant::now();
                if let Some(q) = st.quota_until.filter(|q| *q > now) {
                    return Err(q - now);
                }
                match st.paused_until {
                    Some(p) if p > now => Some(p - now),
                    _ => {
                        st.paused_until = None;
                        if st.head() == Some(ticket) {
                            st.bucket.refill(now);
                            if st.bucket.tokens >= 1.0 {
                                st.bucket.tokens -= 1.0;
                                st.pop_head();
                                guard.served = true;
                                drop(st);
                                self.notify.notify_waiters();
                                return Ok(());
                            }
                            Some(st.bucket.until_one())
                        } else {
                            None
                        }
                    }
                }
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Limits this process to `share` (0..=1) of the configured `qps` and `burst`: the key's
    /// limit is divided among the instances that use it (the changed-data source sets its share
    /// of owned tasks on every rebalance, decision 0025). At least one request a second and a
    /// burst of one remain, so a small share still progresses.
    pub fn set_share(&self, share: f64) {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let rate = (self.config.qps * share).max(self.config.qps.min(1.0));
        let burst = (f64::from(self.config.burst) * share).max(1.0);
        let mut st = self.state.lock();
        st.bucket.refill(Instant::now());
        st.bucket.rate = rate;
        st.bucket.burst = burst;
        st.bucket.tokens = st.bucket.tokens.min(burst);
    }

    /// The requests per second this process may currently send (`qps` times its share).
    pub fn rate(&self) -> f64 {
        self.state.lock().bucket.rate
    }

    /// Wait for a token-endpoint permit (separate per-minute budget).
    pub async fn acquire_token_grant(&self) {
        loop {
            let wait = {
                let mut b = self.token_bucket.lock();
                b.refill(Instant::now());
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                b.until_one()
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "Waiting for the token-endpoint budget."
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Pause every caller for `d` (capped by `rate_limit.max_retry_after`) and drain the bucket.
    /// Returns the pause actually applied.
    pub fn pause_for(&self, d: Duration) -> Duration {
        let d = d.min(self.config.max_retry_after);
        self.pause_until(Instant::now() + d);
        d
    }

    fn pause_until(&self, until: Instant) {
        let mut st = self.state.lock();
        st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
        st.bucket.tokens = 0.0;
        st.bucket.last = Instant::now();
    }

    /// Record the quota headers of an API (not token) response. Pauses everyone when the daily quota is out.
    /// Returns the `X-RateLimit-Remaining` the response reported, if any.
    pub fn observe(&self, headers: &HeaderMap) -> Option<u64> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let (limit, remaining) = (num("x-ratelimit-limit"), num("x-ratelimit-remaining"));
        if limit.is_none() && remaining.is_none() {
            return None;
        }
        let now = Utc::now();
        let mut q = self.quota.lock();
        q.limit = limit.or(q.limit);
        q.remaining = remaining;
        q.observed_at = Some(now);
        if remaining == Some(0) {
            let pause = until_midnight_gmt(now).min(self.config.quota_pause_cap);
            let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
            if q.paused_until.is_none_or(|p| p < until) {
                tracing::warn!(
                    limiter = %self.key, limit = ?q.limit, pause_secs = pause.as_secs(),
                    "Daily athena API quota exhausted; pausing all requests for this API key."
                );
                q.paused_until = Some(until);
            }
            drop(q);
            self.state.lock().quota_until = Some(Instant::now() + pause);
            self.notify.notify_waiters();
        } else if remaining.is_some() || q.paused_until.is_some_and(|p| p <= now) {
            q.paused_until = None;
            drop(q);
            self.state.lock().quota_until = None;
        }
        remaining
    }

    /// The latest quota headers and pause state.
    pub fn quota(&self) -> QuotaSnapshot {
        self.quota.lock().clone()
    }
}

/// Time from `now` to the next 00:00 GMT (athena's daily quota reset).
pub fn until_midnight_gmt(now: DateTime<Utc>) -> Duration {
    let tomorrow = now
        .date_naive()
        .succ_opt()
        .unwrap_or(now.date_naive())
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();
    (tomorrow.and_utc() - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
}

/// Removes an abandoned ticket so the queue does not stall behind a dropped future.
struct Waiter<'a> {
    limiter: &'a RateLimiter,
    lane: &'a str,
    ticket: u64,
    served: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.limiter.state.lock().remove(self.lane, self.ticket);
            self.limiter.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(qps: f64, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            qps,
            burst,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn a_share_scales_the_rate_with_a_floor() {
        let l = RateLimiter::new("share", cfg(20.0, 8));
        assert_eq!(l.rate(), 20.0);
        l.set_share(0.25);
        assert_eq!(l.rate(), 5.0);
        assert_eq!(l.state.lock().bucket.burst, 2.0);
        // A tiny share still sends one request a second.
        l.set_share(0.01);
        assert_eq!(l.rate(), 1.0);
        assert_eq!(l.state.lock().bucket.burst, 1.0);
        l.set_share(f64::NAN);
        assert_eq!(l.rate(), 20.0);
        l.set_share(3.0);
        assert_eq!(l.rate(), 20.0);
    }

    #[tokio::test]
    async fn round_robin_between_practices() {
        let l = Arc::new(RateLimiter::new("t", cfg(200.0, 1)));
        l.acquire("warmup").await.unwrap(); // drain the single burst token
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (lane, n) in [("A", 10), ("B", 3), ("C", 2)] {
            for _ in 0..n {
                let (l, order) = (l.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    l.acquire(lane).await.unwrap();
                    order.lock().push(lane);
                }));
                tokio::task::yield_now().await; // enqueue in spawn order
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().clone();
        assert_eq!(order.len(), 15);
        // Strict rotation: B's 3 and C's 2 are served within the first 8 grants although A queued 10 first.
        assert_eq!(
            &order[..8],
            &["A", "B", "C", "A", "B", "C", "A", "B"],
            "{order:?}"
        );
        assert!(order[8..].iter().all(|l| *l == "A"), "{order:?}");
    }

    #[tokio::test]
    async fn dropped_waiter_does_not_block_queue() {
        let l = Arc::new(RateLimiter::new("t", cfg(20.0, 1)));
        l.acquire("A").await.unwrap();
        // This waiter is cancelled while at the head of the queue.
        let _ = tokio::time::timeout(Duration::from_millis(5), l.acquire("A")).await;
        tokio::time::timeout(Duration::from_secs(2), l.acquire("B"))
            .await
            .expect("queue not stalled")
            .unwrap();
    }

    #[tokio::test]
    async fn pause_blocks_everyone() {
        let l = RateLimiter::new("t", cfg(1000.0, 10));
        let applied = l.pause_for(Duration::from_millis(300));
        assert_eq!(applied, Duration::from_millis(300));
        let start = std::time::Instant::now();
        l.acquire("A").await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(290));
        assert_eq!(
            l.pause_for(Duration::from_secs(3600)),
            Duration::from_secs(60),
            "capped"
        );
    }

    #[tokio::test]
    async fn quota_headers_are_recorded() {
        let l = RateLimiter::new("t", cfg(10.0, 1));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", "50000".parse().unwrap());
        h.insert("x-ratelimit-remaining", "49999".parse().unwrap());
        l.observe(&h);
        let q = l.quota();
        assert_eq!((q.limit, q.remaining), (Some(50000), Some(49999)));
        assert!(q.paused_until.is_none());
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        l.observe(&h);
        assert!(l.quota().paused_until.is_some());
        let wait = l
            .acquire("A")
            .await
            .expect_err("fails fast while the quota is out");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(3600));
        h.insert("x-ratelimit-remaining", "10".parse().unwrap());
        l.observe(&h);
        assert!(l.quota().paused_until.is_none());
        l.acquire("A").await.expect("quota back");
    }

    #[test]
    fn midnight_gmt() {
        let now = DateTime::parse_from_rfc3339("2024-03-10T23:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_midnight_gmt(now), Duration::from_secs(60));
    }

    #[test]
    fn registry_shares_by_key() {
        let c = RateLimitConfig::default();
        let a = RateLimiter::shared("http://x|id-registry", &c);
        let b = RateLimiter::shared("http://x|id-registry", &c);
        assert!(Arc::ptr_eq(&a, &b));
        let other = RateLimiter::shared("http://x|other-registry", &c);
        assert!(!Arc::ptr_eq(&a, &other));
    }
}

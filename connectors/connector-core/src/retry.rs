//! The one retry policy of the connectors: exponential backoff with full jitter, capped, bounded
//! by a number of attempts or a deadline, and an async [`retry`] loop driven by the caller's
//! error classification.
//!
//! What each [`ErrorClass`] means to the loop:
//! - `Retriable`: wait a random time in `[0, min(cap, base * 2^(attempt-1))]` (AWS's "full
//!   jitter", so many clients that failed together do not retry together), then try again;
//! - `RateLimited { retry_after }`: wait what the other side asked, capped by
//!   [`Backoff::max_retry_after`] (a hostile or buggy `Retry-After: 86400` must not park a task
//!   for a day); without a hint, as `Retriable`;
//! - `Permanent` and `Fatal`: return the error at once (retrying cannot help).
//!
//! The arithmetic ([`Backoff::ceiling`], [`Backoff::delay_at`], [`Backoff::wait_for`]) is pure
//! and unit-tested; only [`Backoff::delay`] draws a random number.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorClass;

/// The shortest wait between two attempts: a zero wait would turn a retry loop into a busy loop
/// against a service that is down.
pub const MIN_DELAY: Duration = Duration::from_millis(10);

/// When to stop retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Retry until success, a permanent or fatal error, or cancellation.
    Unbounded,
    /// At most this many attempts in all (the first try included).
    Attempts(u32),
    /// No new attempt starts once this long has passed since the first.
    Deadline(Duration),
}

/// An exponential backoff policy with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait; it doubles with every failed attempt.
    pub base: Duration,
    /// The largest ceiling of a computed wait.
    pub cap: Duration,
    /// The largest wait a `Retry-After` hint may impose.
    pub max_retry_after: Duration,
    /// When to give up.
    pub limit: Limit,
}

impl Backoff {
    /// An unbounded policy doubling from `base` up to `cap`; `Retry-After` is capped at `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            max_retry_after: cap,
            limit: Limit::Unbounded,
        }
    }

    /// The policy giving up after `attempts` attempts (the first try included).
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.limit = Limit::Attempts(attempts);
        self
    }

    /// The policy giving up once `deadline` has passed since the first attempt.
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.limit = Limit::Deadline(deadline);
        self
    }

    /// The policy honouring `Retry-After` up to `max` (instead of [`Backoff::cap`]).
    pub const fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The ceiling of the wait after the `attempt`-th failure (1-based):
    /// `min(cap, base * 2^(attempt-1))`, never below [`MIN_DELAY`].
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.base
            .saturating_mul(1u32 << exp)
            .min(self.cap)
            .max(MIN_DELAY)
    }

    /// The wait after the `attempt`-th failure for a uniform draw `unit` in `[0, 1]`: full jitter
    /// over `[MIN_DELAY, ceiling]`. Pure, so the bounds can be tested without randomness.
    pub fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt)
            .mul_f64(unit.clamp(0.0, 1.0))
            .max(MIN_DELAY)
    }

    /// A random wait after the `attempt`-th failure (see [`Backoff::delay_at`]).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::rng().random_range(0.0..=1.0))
    }

    /// How long to wait after the `attempt`-th failure of class `class`, or `None` when the error
    /// must be returned at once (permanent, fatal).
    pub fn wait_for(&self, class: ErrorClass, attempt: u32) -> Option<Duration> {
        self.wait_with(class, attempt, rand::rng().random_range(0.0..=1.0))
    }

    /// [`Backoff::wait_for`] with the jitter draw `unit` given (pure).
    pub fn wait_with(&self, class: ErrorClass, attempt: u32, unit: f64) -> Option<Duration> {
        match class {
            ErrorClass::Retriable | ErrorClass::RateLimited { retry_after: None } => {
                Some(self.delay_at(attempt, unit))
            }
            ErrorClass::RateLimited {
                retry_after: Some(r),
            } => Some(r.min(self.max_retry_after).max(MIN_DELAY)),
            ErrorClass::Permanent | ErrorClass::Fatal => None,
        }
    }

    /// Whether another attempt may start after `attempts` attempts that took `elapsed`.
    pub fn allows(&self, attempts: u32, elapsed: Duration) -> bool {
        match self.limit {
            Limit::Unbounded => true,
            Limit::Attempts(max) => attempts < max,
            Limit::Deadline(d) => elapsed < d,
        }
    }
}

/// One failed attempt, as reported to the `on_retry` callback of [`retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// How many attempts have failed so far (1 after the first failure).
    pub number: u32,
    /// The wait before the next attempt.
    pub wait: Duration,
    /// The class of the error.
    pub class: ErrorClass,
}

/// Runs `op` until it succeeds, its error is permanent or fatal (per `classify`), the policy is
/// exhausted, or `cancel` fires; then returns the last result. `on_retry` is called before each
/// wait (log, report status, count), with the error and the [`Attempt`].
///
/// A cancellation interrupts the wait, never a running attempt: an attempt that already produced
/// to Kafka is allowed to finish, so the caller sees its true outcome.
pub async fn retry<T, E, Op, Fut>(
    policy: &Backoff,
    cancel: &CancellationToken,
    classify: impl Fn(&E) -> ErrorClass,
    mut on_retry: impl FnMut(&E, Attempt),
    mut op: Op,
) -> Result<T, E>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        failures = failures.saturating_add(1);
        let class = classify(&err);
        let Some(wait) = policy.wait_for(class, failures) else {
            return Err(err);
        };
        if cancel.is_cancelled() || !policy.allows(failures, started.elapsed() + wait) {
            return Err(err);
        }
        on_retry(
            &err,
            Attempt {
                number: failures,
                wait,
                class,
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::new(MS(100), MS(1_000));
        let ceilings: Vec<u64> = (1..=6).map(|a| b.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1_000, 1_000]);
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(b.ceiling(u32::MAX), MS(1_000));
        assert_eq!(b.ceiling(0), MS(100));
        // A zero base still waits at least MIN_DELAY.
        assert_eq!(Backoff::new(Duration::ZERO, MS(5)).ceiling(3), MIN_DELAY);
    }

    #[test]
    fn full_jitter_spans_min_delay_to_ceiling() {
        let b = Backoff::new(MS(100), MS(1_000));
        assert_eq!(b.delay_at(4, 0.0), MIN_DELAY);
        assert_eq!(b.delay_at(4, 1.0), MS(800));
        assert_eq!(b.delay_at(4, 0.5), MS(400));
        // Out-of-range draws are clamped.
        assert_eq!(b.delay_at(9, 7.0), MS(1_000));
        for attempt in 1..40 {
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(
                    d >= MIN_DELAY && d <= b.ceiling(attempt),
                    "{attempt}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn classes_decide_the_wait() {
        let b = Backoff::new(MS(100), MS(1_000)).with_max_retry_after(MS(5_000));
        assert_eq!(b.wait_with(ErrorClass::Retriable, 2, 1.0), Some(MS(200)));
        let hinted = |s| ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(b.wait_with(hinted(3), 1, 0.0), Some(MS(3_000)));
        assert_eq!(b.wait_with(hinted(86_400), 1, 0.0), Some(MS(5_000)));
        assert_eq!(
            b.wait_with(ErrorClass::RateLimited { retry_after: None }, 3, 1.0),
            Some(MS(400))
        );
        assert_eq!(b.wait_with(ErrorClass::Permanent, 1, 1.0), None);
        assert_eq!(b.wait_with(ErrorClass::Fatal, 1, 1.0), None);
    }

    #[test]
    fn limits() {
        let b = Backoff::new(MS(1), MS(2));
        assert!(b.allows(1_000_000, Duration::from_secs(1_000_000)));
        let b = b.with_max_attempts(3);
        assert!(b.allows(2, Duration::ZERO));
        assert!(!b.allows(3, Duration::ZERO));
        let b = b.with_deadline(Duration::from_secs(10));
        assert!(b.allows(99, Duration::from_secs(9)));
        assert!(!b.allows(1, Duration::from_secs(10)));
    }

    fn class_of(e: &&'static str) -> ErrorClass {
        match *e {
            "transient" => ErrorClass::Retriable,
            "permanent" => ErrorClass::Permanent,
            _ => ErrorClass::Fatal,
        }
    }

    #[tokio::test]
    async fn retry_stops_on_success_permanent_and_exhaustion() {
        let cancel = CancellationToken::new();
        let policy = Backoff::new(MS(1), MS(2)).with_max_attempts(5);
        let calls = AtomicU32::new(0);
        let mut reported = Vec::new();
        let r: Result<u32, &str> = retry(
            &policy,
            &cancel,
            class_of,
            |_, a| reported.push(a.number),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 { Err("transient") } else { Ok(n) }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(reported, vec![1, 2]);

        // A permanent error returns at once; a transient one until the attempts run out.
        for (error, expected_calls) in [("permanent", 1), ("transient", 5)] {
            calls.store(0, Ordering::SeqCst);
            let r: Result<(), &str> = retry(
                &policy,
                &cancel,
                class_of,
                |_, _| {},
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(error)
                },
            )
            .await;
            assert_eq!(r, Err(error));
            assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "{error}");
        }
    }

    #[tokio::test]
    async fn cancellation_ends_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let policy = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let r: Result<(), &str> = retry(
            &policy,
            &cancel,
            class_of,
            |_, _| {},
            || async { Err("transient") },
        )
        .await;
        assert_eq!(r, Err("transient"));
    }
}

//! Backoff arithmetic: exponential with full jitter (AWS architecture blog's "Full Jitter").
//!
//! Attempt `n` (1-based, the attempt that just failed) may wait anywhere in `[0, min(cap, base * 2^(n-1))]`.
//! Full jitter spreads synchronized clients (many practices failing together) better than equal jitter.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

/// The upper bound of the wait after failed attempt `attempt` (1-based).
pub fn backoff_ceiling(cfg: &RetryConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(31);
    let factor = 1u64 << exp;
    let nanos = cfg.base.as_nanos().saturating_mul(u128::from(factor));
    let capped = nanos.min(cfg.cap.as_nanos());
    Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
}

/// A full-jitter delay for failed attempt `attempt`, drawn from `rng`.
pub fn full_jitter<R: Rng + ?Sized>(cfg: &RetryConfig, attempt: u32, rng: &mut R) -> Duration {
    let ceiling = backoff_ceiling(cfg, attempt);
    if ceiling.is_zero() {
        return ceiling;
    }
    Duration::from_nanos(
        rng.random_range(0..=u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            max_attempts: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let c = cfg();
        let got: Vec<u128> = (1..=9)
            .map(|n| backoff_ceiling(&c, n).as_millis())
            .collect();
        assert_eq!(
            got,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(
            backoff_ceiling(&c, 200),
            Duration::from_secs(30),
            "no overflow"
        );
        assert_eq!(backoff_ceiling(&c, 0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_ceiling_and_varies() {
        let c = cfg();
        let mut rng = rand::rng();
        let samples: Vec<Duration> = (0..200).map(|_| full_jitter(&c, 3, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(2)));
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "full jitter should spread delays");
        assert!(samples.iter().any(|d| *d < Duration::from_millis(1000)));
    }
}

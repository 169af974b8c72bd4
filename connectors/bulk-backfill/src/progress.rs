//! Progress reporting: an `indicatif` bar (resources, rate, ETA) when stderr is a terminal,
//! periodic log lines otherwise, so CI logs and `kubectl logs` stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::ProgressMode;

/// Reports resources done against an optional total.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    log_every: Option<Duration>,
    last_log: Instant,
    started: Instant,
    done: u64,
    total: Option<u64>,
}

impl Progress {
    /// A reporter in `mode` for `total` resources (when the manifest gives counts).
    pub fn new(mode: ProgressMode, total: Option<u64>, log_interval: Duration) -> Self {
        let bar_wanted = match mode {
            ProgressMode::Bar => true,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Log | ProgressMode::Off => false,
        };
        let bar = bar_wanted.then(|| {
            let b = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} resources ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            log_every: (!bar_wanted && mode != ProgressMode::Off).then_some(log_interval),
            bar,
            last_log: Instant::now(),
            started: Instant::now(),
            done: 0,
            total,
        }
    }

    /// Starts the count at `done` (resumed work).
    pub fn resume_at(&mut self, done: u64) {
        self.done = done;
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    /// Adds `n` resources.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(every) = self.log_every
            && self.last_log.elapsed() >= every
        {
            self.last_log = Instant::now();
            self.log_line();
        }
    }

    fn log_line(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let eta = self
            .total
            .filter(|_| rate > 0.0)
            .map(|t| (t.saturating_sub(self.done) as f64 / rate).round() as u64);
        tracing::info!(
            done = self.done,
            total = self.total,
            rate_per_sec = (rate * 10.0).round() / 10.0,
            eta_secs = eta,
            "Backfill progress."
        );
    }

    /// Ends the report.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        } else if self.log_every.is_some() {
            self.log_line();
        }
    }
}

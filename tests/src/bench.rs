//! Helpers of the benchmarks (`./dev bench`): the machine-readable figure line, percentiles,
//! and the CPU time of this process. Figures only: nothing here decides a test.

/// Prints a figure for `./dev bench`: `BENCH|name|value|ceiling|unit` (ceiling `-` when the
/// figure has none). `./dev bench` takes the median of each name over its runs.
pub fn figure(name: &str, value: f64, ceiling: Option<f64>, unit: &str) {
    let c = ceiling.map_or_else(|| "-".to_string(), |c| format!("{c:.3}"));
    println!("BENCH|{name}|{value:.3}|{c}|{unit}");
}

/// The `p` quantile (0.0..=1.0, nearest rank) of `sorted` (ascending); 0 when empty.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `p50 a / p99 b / p99.9 c / max d <unit>` of `sorted` (ascending).
pub fn distribution(sorted: &[i64], unit: &str) -> String {
    format!(
        "p50 {} / p99 {} / p99.9 {} / max {} {unit}",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        percentile(sorted, 0.999),
        sorted.last().copied().unwrap_or(0)
    )
}

/// Prints the p50, p99, p99.9 and max of `sorted` as figures `<name>.p50` etc., each with the
/// same quantile of `ceiling` (when given) as its ceiling.
pub fn distribution_figures(name: &str, sorted: &[i64], ceiling: Option<&[i64]>, unit: &str) {
    for (p, q) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max")] {
        figure(
            &format!("{name}.{q}"),
            percentile(sorted, p) as f64,
            ceiling.map(|c| percentile(c, p) as f64),
            unit,
        );
    }
}

/// CPU seconds (user + system) the threads of this process have run so far: the connector's,
/// the runtime's and librdkafka's. Summed over `/proc/self/task/*/schedstat` (nanoseconds), so
/// short windows resolve; a thread that exits inside a measured window takes its time with it
/// (the long-lived runtime and librdkafka threads do not). Falls back to `/proc/self/stat`
/// (whole process, 10 ms ticks) where schedstat is missing, and to 0 off Linux.
pub fn process_cpu_seconds() -> f64 {
    let mut ns = 0u64;
    let mut any = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let Ok(line) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            if let Some(v) = line
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                ns += v;
                any = true;
            }
        }
    }
    if any {
        return ns as f64 / 1e9;
    }
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux ABI.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cpu() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 501);
        assert_eq!(percentile(&v, 1.0), 1000);
        assert_eq!(percentile(&[], 0.5), 0);
        // Burn some CPU: the counter moves (by at least one tick).
        let before = process_cpu_seconds();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu_seconds() > before, "{x}");
    }
}

//! How many cases every fuzz target of the workspace runs (docs/testing.md): a bounded count in
//! CI, `PROPTEST_CASES` for the long run by hand; and a deterministic sample of a generator, for
//! the tests that check a generator reaches past the first syntax check. Included by path from
//! the other crates' fuzz targets, so the count is set in one place.

#![allow(dead_code)] // each including test uses a subset

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
pub const CI_CASES: u32 = 256;

/// The config every fuzz property runs with.
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CI_CASES);
    Config {
        cases,
        // A found case is kept as a named regression test next to the parser, not in a file.
        failure_persistence: None,
        ..Config::default()
    }
}

/// `n` values of `strategy` from a fixed seed (the same on every run).
pub fn sample<S: Strategy>(strategy: &S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("generators do not reject")
                .current()
        })
        .collect()
}

//! The harness fails clearly, and promptly, when a server is not there.

use std::time::{Duration, Instant};

use athena_connect_tests::{HOW_TO_START, Stack, probe, probe_kafka};

fn closed_port() -> u16 {
    // Bind and drop: nothing listens there afterwards.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn unreachable_kafka_is_a_clear_bounded_failure() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let err = probe_kafka(&addr, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("./dev up"), "{err}");
    // Bounded: a stopped broker must not hang the suite.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_registry_is_a_clear_failure() {
    let real = Stack::get().await;
    let stack = Stack {
        bootstrap: real.bootstrap,
        registry_url: format!("http://127.0.0.1:{}/apis/ccompat/v7", closed_port()),
    };
    let err = probe(&stack).await.unwrap_err();
    assert!(err.contains("schema registry"), "{err}");
    assert!(err.contains(HOW_TO_START), "{err}");
}

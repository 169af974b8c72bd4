//! Self-healing of the real binary (`athena-connect run --only`), with a write-back sink on the
//! real broker:
//! - started while its schema registry is unreachable (a stopped proxy in front of the real
//!   one), the sink fails, `/readyz` answers 503 and its status shows the error and a growing
//!   restart count; once the registry is reachable it becomes RUNNING by itself and `/readyz`
//!   answers 200, with the restarts counted in `/metrics`;
//! - started while Kafka is unreachable (a stopped proxy as its bootstrap address), the sink
//!   fails and is restarted until Kafka is reachable, then runs;
//! - concurrent `POST /connectors/x/restart` calls leave exactly one running instance: one
//!   member in the sink's consumer group.

mod common;

use std::time::Duration;

use athena_connect_tests::{Stack, TcpProxy};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

async fn status(admin: &str, name: &str) -> Value {
    let a = admin_call(
        admin,
        "GET",
        &format!("/connectors/{name}/status"),
        Some(ADMIN_TOKEN),
        &mut Vec::new(),
    )
    .await;
    serde_json::from_str(&a.text).unwrap_or_else(|e| panic!("status JSON: {e}: {}", a.text))
}

async fn readyz(admin: &str) -> Answer {
    admin_call(admin, "GET", "/readyz", None, &mut Vec::new()).await
}

/// Waits until `f` holds for the connector's status JSON.
async fn wait_status(admin: &str, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(admin, name).await;
        if f(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {what} never happened; last status {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const RESTART: &str = r#"
[sinks.write_back.wb.restart]
backoff_initial = "100ms"
backoff_max = "1s"
"#;

/// Starts the binary with the sink `wb` (fast restarts) and one dependency reached through a
/// proxy: the config line `direct` becomes `proxied`.
fn start_behind(
    stack: &Stack,
    sim: &athena_sim::RunningSim,
    names: &SinkNames,
    direct: &str,
    proxied: &str,
) -> Proc {
    let config = base_config(
        stack,
        &sim.base_url,
        "pretty",
        &format!("{}{RESTART}", names.section("wb")),
    );
    assert!(config.contains(direct), "{config}");
    Proc::start(&config.replace(direct, proxied), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_started_without_its_registry_heals_when_it_returns() {
    let (stack, sim, names) = sink_setup().await;
    let url = url::Url::parse(&stack.registry_url).expect("registry URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut proxy = TcpProxy::new(&upstream);
    let mut proxied = url.clone();
    proxied.set_port(Some(proxy.addr().port())).unwrap();
    let mut proc = start_behind(
        &stack,
        &sim,
        &names,
        &format!("url = \"{}\"", stack.registry_url),
        &format!("url = \"{}\"", proxied.as_str().trim_end_matches('/')),
    );
    let admin = proc.admin.clone();

    // Down: FAILED between restarts, the error says why, /readyz is 503.
    let v = wait_status(&admin, "wb", "a restart", |v| {
        v["restarts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert!(
        v["last_error"].as_str().unwrap_or("").contains("registry"),
        "{v}"
    );
    assert_eq!(v["auto_restart"], true, "{v}");
    assert_ne!(v["connector"]["state"], "RUNNING", "{v}");
    wait_status(&admin, "wb", "FAILED", |v| {
        v["connector"]["state"] == "FAILED"
    })
    .await;
    let r = readyz(&admin).await;
    assert_eq!(r.status, 503, "{}", r.text);

    // Back: RUNNING without any call, ready again.
    proxy.start().await;
    let v = wait_status(&admin, "wb", "RUNNING", |v| {
        v["connector"]["state"] == "RUNNING"
    })
    .await;
    let restarts = v["restarts"].as_u64().unwrap();
    assert!(restarts >= 2, "{v}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = readyz(&admin).await;
        if r.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {}: {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = admin_call(
        &admin,
        "GET",
        "/metrics",
        Some(ADMIN_TOKEN),
        &mut Vec::new(),
    )
    .await;
    assert!(
        m.text
            .contains("athena_connect_connector_state{connector=\"wb\",state=\"RUNNING\"} 1"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(&format!(
            "athena_connect_connector_restarts_total{{connector=\"wb\"}} {restarts}"
        )),
        "{}",
        m.text
    );

    proc.stop_cleanly().await;
    proxy.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_started_without_kafka_heals_when_it_returns() {
    let (stack, sim, names) = sink_setup().await;
    let mut proxy = TcpProxy::new(&stack.bootstrap);
    let mut proc = start_behind(
        &stack,
        &sim,
        &names,
        &format!("bootstrap_servers = \"{}\"", stack.bootstrap),
        &format!("bootstrap_servers = \"{}\"", proxy.addr()),
    );
    let admin = proc.admin.clone();

    let v = wait_status(&admin, "wb", "a restart", |v| {
        v["restarts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(v["auto_restart"], true, "{v}");
    assert!(
        v["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{v}"
    );
    assert_eq!(readyz(&admin).await.status, 503);

    proxy.start().await;
    wait_status(&admin, "wb", "RUNNING", |v| {
        v["connector"]["state"] == "RUNNING"
    })
    .await;
    proc.stop_cleanly().await;
    proxy.stop();
    sim.shutdown().await;
}

/// Members of `group` right now.
fn members(stack: &Stack, group: &str) -> usize {
    let consumer: BaseConsumer = stack
        .kafka()
        .consumer_config("athena-connect-test-describe")
        .create()
        .expect("consumer");
    consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .expect("describe group")
        .groups()
        .iter()
        .map(|g| g.members().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_restarts_leave_one_instance() {
    let (stack, sim, names) = sink_setup().await;
    let config = base_config(&stack, &sim.base_url, "pretty", &names.section("wb"));
    let mut proc = Proc::start(&config, &[]);
    let admin = proc.admin.clone();
    wait_state(&admin, "wb", "RUNNING", Duration::from_secs(120)).await;

    let calls: Vec<_> = (0..8)
        .map(|_| {
            let admin = admin.clone();
            tokio::spawn(async move {
                admin_call(
                    &admin,
                    "POST",
                    "/connectors/wb/restart",
                    Some(ADMIN_TOKEN),
                    &mut Vec::new(),
                )
                .await
                .status
            })
        })
        .collect();
    for c in calls {
        // A plain restart answers 204 once restarted (KIP-745; this test asserted our former 202).
        assert_eq!(c.await.unwrap(), 204);
    }
    wait_state(&admin, "wb", "RUNNING", Duration::from_secs(120)).await;
    // Every stopped instance left the group on its way out: exactly one member remains.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = members(&stack, &names.group);
        if n == 1 {
            break;
        }
        assert!(
            n <= 1 && tokio::time::Instant::now() < deadline,
            "{n} members in the sink's group after concurrent restarts; output:\n{}",
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = status(&admin, "wb").await;
    assert_eq!(v["connector"]["state"], "RUNNING", "{v}");
    assert_eq!(v["restarts"], 0, "operator restarts are not failures: {v}");

    proc.stop_cleanly().await;
    sim.shutdown().await;
}

//! `/metrics` of the real binary with a write-back sink on the real broker: the consumer lag
//! per partition rises while the sink is paused (admin API) and falls back to zero after
//! resume; the sink consumer's librdkafka statistics, `build_info` and the process metrics are
//! there.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;

/// An authenticated admin API call.
async fn call(admin: &str, method: &str, path: &str) -> Answer {
    admin_call(admin, method, path, Some(ADMIN_TOKEN), &mut Vec::new()).await
}

/// The sink's summed `consumer_lag_records` over `topic`'s partitions, as `/metrics` shows it
/// (None while no partition of it was measured yet).
async fn lag(admin: &str, topic: &str) -> (Option<i64>, String) {
    let a = call(admin, "GET", "/metrics").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let prefix = "athena_connect_consumer_lag_records{connector=\"wb\",";
    let topic_label = format!("topic=\"{topic}\"");
    let values: Vec<i64> = a
        .text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&topic_label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    ((!values.is_empty()).then(|| values.iter().sum()), a.text)
}

/// Polls `/metrics` until the lag of `topic` satisfies `ok` (generous bound: the lag is
/// measured every few seconds).
async fn wait_lag(admin: &str, topic: &str, what: &str, ok: impl Fn(i64) -> bool) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (l, text) = lag(admin, topic).await;
        if let Some(l) = l.filter(|l| ok(*l)) {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag of {topic} never became {what}; last {l:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_lag_rises_while_paused_and_falls_after_resume() {
    let (stack, sim, names) = sink_setup().await;
    // librdkafka statistics every second instead of every 15 s, so they show within the test.
    let extra = format!(
        "{}\n[kafka.consumer]\n\"statistics.interval.ms\" = \"1000\"\n",
        names.section("wb")
    );
    let config = base_config(&stack, &sim.base_url, "json", &extra);
    let proc = Proc::start(&config, &[]);
    let admin = proc.admin.clone();
    wait_state(&admin, "wb", "RUNNING", Duration::from_secs(60)).await;
    // Nothing on the topic yet: measured, and zero.
    wait_lag(&admin, &names.patients, "0", |l| l == 0).await;

    let a = call(&admin, "PUT", "/connectors/wb/pause").await;
    assert_eq!(a.status, 202);
    wait_state(&admin, "wb", "PAUSED", Duration::from_secs(10)).await;
    // Pause is asynchronous: let the sink's loop pause its partitions first.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Records the sink cannot decode: after resume they go to the dead-letter topic and the
    // offsets move on, so the lag must fall to zero again.
    const SENT: i64 = 12;
    let producer = stack.kafka().build_producer().unwrap();
    for i in 0..SENT {
        producer
            .send(
                FutureRecord::to(&names.patients)
                    .key(&format!("{PRACTICE}/lag-{i}"))
                    .payload("not an avro command"),
                Duration::from_secs(30),
            )
            .await
            .expect("produce");
    }
    let paused_lag = wait_lag(&admin, &names.patients, "the records sent", |l| l == SENT).await;
    assert_eq!(paused_lag, SENT);

    let a = call(&admin, "PUT", "/connectors/wb/resume").await;
    assert_eq!(a.status, 202);
    wait_lag(&admin, &names.patients, "0 after resume", |l| l == 0).await;

    let (_, text) = lag(&admin, &names.patients).await;
    for name in [
        "athena_connect_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_threads ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(!text.contains(ATHENA_SECRET) && !text.contains(ADMIN_TOKEN));

    // The sink consumer's librdkafka statistics: it received the records, it knows a broker's
    // round-trip time, and librdkafka's own lag of the partitions is back to zero.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = call(&admin, "GET", "/metrics").await;
        let value = |prefix: &str| -> Vec<f64> {
            a.text
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
                .collect()
        };
        let rx = value(
            "athena_connect_kafka_client_rx_messages_total{connector=\"wb\",client=\"consumer\"}",
        );
        let rtt =
            value("athena_connect_kafka_broker_rtt_seconds{connector=\"wb\",client=\"consumer\",");
        let own_lag = value(&format!(
            "athena_connect_kafka_consumer_lag_records{{connector=\"wb\",topic=\"{}\",",
            names.patients
        ));
        if rx.iter().sum::<f64>() >= SENT as f64
            && !rtt.is_empty()
            && !own_lag.is_empty()
            && own_lag.iter().all(|l| *l == 0.0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no librdkafka statistics of the sink (rx {rx:?}, rtt {rtt:?}, lag {own_lag:?}):\n{}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    drop(sim);
}

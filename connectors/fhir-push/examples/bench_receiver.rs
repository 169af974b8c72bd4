//! Receiver throughput against the real broker, as a ratio to the ceiling measured in the same
//! run: raw rdkafka produce of the same payloads (send all, then await all); the CPU time per
//! notification next to the raw producer's (this process's user + system time, which includes
//! the HTTP client sending the notifications, so it overstates the receiver's own); and the
//! receive-to-2xx latency (p50/p99/p99.9/max, seen by the client) at fixed offered loads of 100
//! and 1,000 notifications/s. Prints figures (and `BENCH|...` lines for `./dev bench`); it
//! asserts nothing (timing never decides a test).
//!
//! ```text
//! export $(./dev env)
//! cargo run --release -p fhir-push --example bench_receiver -- [notifications] [concurrency]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_connect_tests::bench::{
    distribution, distribution_figures, figure, process_cpu_seconds,
};
use connector_core::Secret;
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};
use fhir_push::adapter::{AthenaAdapter, PushAdapter};
use fhir_push::signature::sign;
use futures::StreamExt;
use rdkafka::producer::FutureRecord;

const SECRET: &str = "bench-shared-secret-0123456789";

fn body(i: usize) -> String {
    format!(
        r#"{{"resourceType":"Bundle","type":"history","entry":[{{"resource":{{"resourceType":"SubscriptionStatus","type":"event-notification","subscription":{{"reference":"Subscription/bench"}},"topic":"https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/Patient.update","notificationEvent":[{{"id":"bench-{i}","eventNumber":"1","focus":{{"reference":"Patient/a-195900.E-{i}"}}}}]}}}}]}}"#
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let conc: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| anyhow::anyhow!("export $(./dev env) first"))?;
    let kafka = KafkaConfig::plaintext(bootstrap);
    let suffix = std::process::id();
    let (raw_topic, recv_topic) = (
        format!("bench.push.raw.{suffix}"),
        format!("bench.push.recv.{suffix}"),
    );
    ensure_topics(
        &kafka.build_admin()?,
        1,
        &[
            TopicSpec::new(&raw_topic, 6),
            TopicSpec::new(&recv_topic, 6),
        ],
    )
    .await?;
    let bodies: Vec<String> = (0..n).map(body).collect();

    // Ceiling: the same payloads straight into rdkafka (after a warm-up that fetches metadata
    // and waits for the new topic's leaders).
    let producer = kafka.build_producer()?;
    for topic in [&raw_topic, &recv_topic] {
        producer
            .send(
                FutureRecord::<str, str>::to(topic).payload("warm-up"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let t = Instant::now();
    let cpu = process_cpu_seconds();
    // `send_result` enqueues at once (an un-polled `send` future would not).
    let futs: Vec<_> = bodies
        .iter()
        .map(|b| {
            producer
                .send_result(FutureRecord::<str, str>::to(&raw_topic).payload(b))
                .map_err(|(e, _)| e)
        })
        .collect::<Result<_, _>>()?;
    for f in futs {
        f.await?.map_err(|(e, _)| e)?;
    }
    let raw = n as f64 / t.elapsed().as_secs_f64();
    let raw_cpu = process_cpu_seconds() - cpu;

    // The receiver over HTTP: verify, produce, await the ack, answer.
    let adapter: Arc<dyn PushAdapter> = Arc::new(AthenaAdapter::new(Secret::new(SECRET)));
    let recv_producer = kafka.build_producer()?;
    recv_producer
        .send(
            FutureRecord::<str, str>::to(&recv_topic).payload("warm-up"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    let state = fhir_push::receiver::ReceiverState::new(
        "bench",
        adapter,
        recv_producer,
        recv_topic.clone(),
        Duration::from_millis(1500),
        Arc::new(fhir_push::gap::GapMonitor::new(
            "bench",
            Duration::from_secs(600),
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/notifications", listener.local_addr()?);
    tokio::spawn(fhir_push::receiver::serve(
        listener,
        fhir_push::receiver::router(state, 1 << 20),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let t = Instant::now();
    let cpu = process_cpu_seconds();
    let statuses: Vec<u16> = futures::stream::iter(bodies.iter())
        .map(|b| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.post(&url)
                    .header("X-Hub-Signature", sign(SECRET.as_bytes(), b.as_bytes()))
                    .body(b.clone())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let recv = n as f64 / t.elapsed().as_secs_f64();
    let recv_cpu = process_cpu_seconds() - cpu;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    println!("notifications: {n}, concurrency: {conc}, answered 200: {ok}");
    println!("raw produce (ceiling):          {raw:>10.0} msg/s");
    println!("receiver (verify+durable+2xx): {recv:>10.0} msg/s");
    println!("ratio receiver/ceiling:        {:>10.3}", recv / raw);
    let (recv_us, raw_us) = (1e6 * recv_cpu / n as f64, 1e6 * raw_cpu / n as f64);
    println!(
        "CPU per notification: receiver + HTTP client {recv_us:.1} us, raw producer {raw_us:.1} us"
    );
    figure("push.notifications_per_s", recv, Some(raw), "msg/s");
    figure("push.cpu_per_notification", recv_us, Some(raw_us), "us");

    // Latency at fixed offered loads: every request starts on its schedule (not after the
    // previous one), so a slow answer does not lower the load.
    for (k, rate) in [100u32, 1000].into_iter().enumerate() {
        let count = rate as usize * 3;
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                // Ids not used before: a repeated notification is answered from the dedup cache.
                let b = body(n + 1_000_000 * (k + 1) + i);
                let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let t = Instant::now();
                    let status = http
                        .post(&url)
                        .header("X-Hub-Signature", sign(SECRET.as_bytes(), b.as_bytes()))
                        .body(b)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    (t.elapsed().as_micros() as i64, status)
                })
            })
            .collect();
        let mut lat = Vec::with_capacity(count);
        let mut ok = 0;
        for t in tasks {
            let (us, status) = t.await?;
            lat.push(us);
            ok += usize::from(status == 200);
        }
        lat.sort_unstable();
        println!(
            "receive-to-2xx at {rate} notifications/s ({count} sent, {ok} answered 200): {}",
            distribution(&lat, "us")
        );
        distribution_figures(
            &format!("push.{rate}_per_s.receive_to_2xx"),
            &lat,
            None,
            "us",
        );
    }
    let admin = kafka.build_admin()?;
    let _ = admin
        .delete_topics(
            &[&raw_topic, &recv_topic],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await;
    Ok(())
}

//! An offsets reset of a write-back sink never silently re-executes commands its ledger has
//! forgotten: with a command on its topic older than `ledger_retention`, a reset to the
//! beginning is refused (admin API 409, CLI exit 4) with a message naming the retention, unless
//! the caller names a time within the retention (the group is set to that time) or forces it;
//! a time before the retention is refused too, and so is a `PATCH` of the offsets back to it.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_past_the_ledger_retention_is_refused_unless_timed_or_forced() {
    let (stack, sim, names) = sink_setup().await;
    let section = format!("{}ledger_retention = \"2h\"\n", names.section("wb"));
    let config = base_config(&stack, &sim.base_url, "pretty", &section);
    let mut proc = Proc::start(&config, &[]);
    let admin = proc.admin.clone();
    wait_state(&admin, "wb", "RUNNING", Duration::from_secs(120)).await;
    let call = |method: &'static str, path: String| {
        let admin = admin.clone();
        async move { admin_call(&admin, method, &path, Some(ADMIN_TOKEN), &mut Vec::new()).await }
    };
    assert_eq!(call("PUT", "/connectors/wb/stop".into()).await.status, 204);

    // A command written three hours ago (older than the 2 h retention).
    let producer: FutureProducer = stack.kafka().build_producer().unwrap();
    let three_hours_ago = chrono::Utc::now() - chrono::Duration::hours(3);
    producer
        .send(
            FutureRecord::to(&names.appointments)
                .key("195900/1")
                .payload(&b"an old command"[..])
                .timestamp(three_hours_ago.timestamp_millis()),
            Duration::from_secs(30),
        )
        .await
        .expect("produce the old command");

    let base = "/connectors/wb/offsets";
    let refused = call("DELETE", base.to_string()).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.text.contains("ledger_retention"),
        "{}",
        refused.text
    );
    let bad = call("DELETE", format!("{base}?to_time=yesterday")).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let too_old = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let a = call("DELETE", format!("{base}?to_time={}", urlencode(&too_old))).await;
    assert_eq!(a.status, 409, "a time before the retention: {}", a.text);
    let recent = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let a = call("DELETE", format!("{base}?to_time={}", urlencode(&recent))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    // The group now starts after the old command: its partition is set past it.
    let shown: Value = serde_json::from_str(&call("GET", base.to_string()).await.text).unwrap();
    let past_old: Vec<&Value> = shown["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["partition"]["kafka_topic"] == names.appointments.as_str()
                && o["offset"]["kafka_offset"] == 1
        })
        .collect();
    assert_eq!(past_old.len(), 1, "{shown}");

    // The CLI refuses the same way (exit 4) and accepts --force.
    let (code, text) = cli(
        &["offsets", "reset", "--connector", "wb"],
        &proc.config_path,
    );
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("ledger_retention"), "{text}");
    let (code, text) = cli(
        &["offsets", "reset", "--connector", "wb", "--force"],
        &proc.config_path,
    );
    assert_eq!(code, 0, "{text}");
    let a = call("DELETE", format!("{base}?force=true")).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // PATCH (KIP-875 alter) is guarded the same way: offset 0 on every partition re-reads the
    // old command, refused with 409 unless forced.
    let rewind = serde_json::json!({"offsets": (0..3).map(|p| serde_json::json!({
        "partition": {"kafka_topic": names.appointments, "kafka_partition": p},
        "offset": {"kafka_offset": 0},
    })).collect::<Vec<_>>()});
    let patch = |query: &'static str| {
        let (admin, body) = (admin.clone(), rewind.clone());
        async move {
            let r = reqwest::Client::new()
                .patch(format!("{admin}{base}{query}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .expect("admin API answers");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (code, text) = patch("").await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("ledger_retention"), "{text}");
    let (code, text) = patch("?force=true").await;
    assert_eq!(code, 200, "{text}");

    proc.stop_cleanly().await;
    sim.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

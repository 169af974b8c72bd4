//! Fault injection seen from a plain reqwest client, and gateway throttling.

mod common;

use std::time::{Duration, Instant};

use athena_sim::{Fault, FaultRule, SimConfig};
use common::{Harness, PID, patient_form};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn status_faults_are_consumed_in_order() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 500,
                retry_after: None,
                body: None,
            },
            2,
        )
        .path("/ping"),
    );
    h.sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 429,
                retry_after: Some(7),
                body: Some("slow down".into()),
            },
            1,
        )
        .path("/ping"),
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = h.get(&h.v1("/ping")).await;
        seen.push((
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string()),
        ));
    }
    assert_eq!(
        seen,
        vec![
            (500, None),
            (500, None),
            (429, Some("7".into())),
            (200, None)
        ]
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_then_answers() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim
        .state
        .inject(FaultRule::new(Fault::Latency(Duration::from_millis(300)), 1).method("GET"));
    let t = Instant::now();
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "waited at least the injected latency"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn drop_connection_is_a_connection_error_and_writes_nothing() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim.state.inject(
        FaultRule::new(Fault::DropConnection, 1)
            .method("POST")
            .path("/patients"),
    );
    let err = h
        .http
        .post(h.v1("/patients"))
        .bearer_auth(&h.token)
        .form(&patient_form("Testa", "Dropped"))
        .send()
        .await;
    let err = err.expect_err("no response expected");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert!(h.sim.state.ledger().is_empty());
    // The next attempt goes through.
    h.post_ok("/patients", &patient_form("Testa", "Dropped"))
        .await;
    assert_eq!(h.sim.state.ledger().len(), 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn apply_then_drop_is_a_connection_error_but_the_write_happened() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 1)
            .method("POST")
            .path("/patients"),
    );
    let res = h
        .http
        .post(h.v1("/patients"))
        .bearer_auth(&h.token)
        .form(&patient_form("Testa", "Applied"))
        .send()
        .await;
    assert!(res.is_err(), "connection error expected, got {res:?}");
    let ledger = h.sim.state.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].operation, "CreatePatient");
    assert_eq!(ledger[0].params["lastname"], "Applied");
    // A retry is matched to the patient the dropped request created.
    let again = h
        .post_ok("/patients", &patient_form("Testa", "Applied"))
        .await;
    assert_eq!(again[0]["patientid"], ledger[0].entity_id.as_str());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn exhaust_quota_answers_over_rate_with_zero_remaining() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim.state.inject(FaultRule::new(Fault::ExhaustQuota, 1));
    let r = h.get(&h.v1("/ping")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-mashery-error-code"],
        "ERR_403_DEVELOPER_OVER_RATE"
    );
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 200);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn daily_quota_exhaustion_is_over_rate() {
    let h = Harness::start(SimConfig {
        daily_quota: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        h.get(&h.v1("/ping")).await.headers()["x-ratelimit-remaining"],
        "1"
    );
    assert_eq!(
        h.get(&h.v1("/ping")).await.headers()["x-ratelimit-remaining"],
        "0"
    );
    let r = h.get(&h.v1("/ping")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-mashery-error-code"],
        "ERR_403_DEVELOPER_OVER_RATE"
    );
    h.sim.shutdown().await;
}

async fn burst(h: &Harness, n: usize) -> Vec<reqwest::Response> {
    let url = h.v1("/ping");
    let futs = (0..n).map(|_| h.get(&url));
    futures::future::join_all(futs).await
}

#[tokio::test]
async fn qps_limit_is_mashery_403_with_html_body() {
    let h = Harness::start(SimConfig {
        qps_limit: Some(2),
        throttle_retry_after: Some(1),
        ..Default::default()
    })
    .await;
    let resps = burst(&h, 6).await;
    let throttled: Vec<_> = resps.into_iter().filter(|r| r.status() == 403).collect();
    assert!(
        !throttled.is_empty(),
        "a burst of 6 over 2 qps must be throttled"
    );
    let r = throttled.into_iter().next().unwrap();
    assert_eq!(
        r.headers()["x-mashery-error-code"],
        "ERR_403_DEVELOPER_OVER_QPS"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.text().await.unwrap(), "<h1>Developer Over Qps</h1>");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn qps_limit_can_answer_429() {
    let h = Harness::start(SimConfig {
        qps_limit: Some(1),
        throttle_status: 429,
        ..Default::default()
    })
    .await;
    let resps = burst(&h, 5).await;
    assert!(resps.iter().any(|r| r.status() == 429));
    assert!(resps.iter().all(|r| r.status() == 200 || r.status() == 429));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_inject_faults_and_expose_ledger_and_stats() {
    let h = Harness::start(SimConfig::default()).await;
    let base = &h.sim.base_url;
    let r = h
        .http
        .post(format!("{base}/_sim/faults"))
        .json(&json!([{"method": "GET", "path_contains": "/ping", "fault": {"status": {"code": 503}}, "times": 1},
                      {"path_contains": "/ping", "fault": {"latency": "10ms"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 503);
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 200);
    h.http
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"fault": "drop_connection"}))
        .send()
        .await
        .unwrap();
    let r = h
        .http
        .delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 200, "cleared");
    h.form(
        Method::POST,
        &h.v1("/patients"),
        &patient_form("Testa", "Admin"),
    )
    .await;
    let ledger: Value = h
        .http
        .get(format!("{base}/_sim/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger[0]["operation"], "CreatePatient");
    assert_eq!(ledger[0]["practice_id"], PID);
    let stats: Value = h
        .http
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["token_requests"], 1);
    assert_eq!(stats["requests"]["GET /v1/{practiceid}/ping"], 3);
    h.http
        .post(format!("{base}/_sim/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 401);
    h.sim.shutdown().await;
}

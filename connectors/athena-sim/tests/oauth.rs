//! Token endpoint: grant, string `expires_in`, wrong credentials, missing scope, expiry,
//! revocation and the per-minute token limit.

mod common;

use std::time::Duration;

use athena_sim::{RunningSim, SimConfig};
use common::{Harness, PID, grant};
use serde_json::Value;

#[tokio::test]
async fn grant_returns_string_expires_in_and_the_token_works() {
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/oauth2/v1/token", sim.base_url))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "athena/service/Athenanet.MDP.*"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "4");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["expires_in"],
        Value::String("3600".into()),
        "athena sends a string"
    );
    assert_eq!(v["token_type"], "Bearer");
    let token = v["access_token"].as_str().unwrap();
    let ping = http
        .get(format!("{}/v1/{PID}/ping", sim.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.headers()["x-ratelimit-limit"], "50000");
    assert_eq!(ping.headers()["x-ratelimit-remaining"], "49999");
    assert!(ping.headers().contains_key("x-request-id"));
    assert_eq!(sim.state.token_requests(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_and_missing_scope_are_401() {
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/oauth2/v1/token", sim.base_url);
    let r = http
        .post(&url)
        .basic_auth("sim-client", Some("wrong"))
        .form(&[("grant_type", "client_credentials"), ("scope", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "access_denied");
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let h = Harness::start(SimConfig {
        token_ttl: Duration::from_millis(1000),
        ..Default::default()
    })
    .await;
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 401);
    let fresh = grant(&h.http, &h.sim.base_url).await;
    let r = h
        .http
        .get(h.v1("/ping"))
        .bearer_auth(fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn revoked_and_missing_tokens_are_401_and_unknown_practice_404() {
    let h = Harness::start(SimConfig::default()).await;
    let r = h.http.get(h.v1("/ping")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no bearer");
    let r = h.get(&format!("{}/v1/1234/ping", h.sim.base_url)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "Invalid practice.");
    h.sim.state.revoke_tokens();
    assert_eq!(h.get(&h.v1("/ping")).await.status(), 401);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_enforces_its_per_minute_limit() {
    let sim = RunningSim::start(SimConfig {
        token_rate_limit_per_minute: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/oauth2/v1/token", sim.base_url))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "s")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // A minute boundary between the requests could reset the window; it can only help requests
    // pass, so a 429 must appear unless the boundary fell exactly there. Retry once if so.
    if !statuses.contains(&429) {
        let r = http
            .post(format!("{}/oauth2/v1/token", sim.base_url))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "s")])
            .send()
            .await
            .unwrap();
        let r2 = http
            .post(format!("{}/oauth2/v1/token", sim.base_url))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "s")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        statuses.push(r2.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(sim.state.token_requests(), statuses.len() as u64);
    sim.shutdown().await;
}

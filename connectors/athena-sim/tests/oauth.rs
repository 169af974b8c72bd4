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

#[tokio::test]
async fn scopes_are_enforced_per_route() {
    let sim = RunningSim::start(SimConfig {
        withheld_scopes: vec!["system/Observation.read".into()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/oauth2/v1/token", sim.base_url))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "scope",
                "athena/service/Athenanet.MDP.* system/Patient.rs system/Observation.read",
            ),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    // A withheld scope is left out of the grant, as athena grants only what the app has.
    assert_eq!(
        v["scope"],
        "athena/service/Athenanet.MDP.* system/Patient.rs"
    );
    let token = v["access_token"].as_str().unwrap().to_string();
    let get = |path: String| {
        let http = http.clone();
        let token = token.clone();
        async move { http.get(path).bearer_auth(token).send().await.unwrap() }
    };
    let base = &sim.base_url;
    assert_eq!(get(format!("{base}/v1/{PID}/ping")).await.status(), 200);
    let patient = get(format!(
        "{base}/fhir/r4/Patient?ah-practice=Organization/a-1.Practice-{PID}&_id=a-{PID}.E-60178"
    ))
    .await;
    assert_eq!(patient.status(), 200, "a v2 .rs scope covers read");
    let obs = get(format!(
        "{base}/fhir/r4/Observation?ah-practice=Organization/a-1.Practice-{PID}&patient=a-{PID}.E-60178"
    ))
    .await;
    assert_eq!(obs.status(), 403);
    let challenge = obs.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("system/Observation.read"),
        "{challenge}"
    );
    assert!(
        obs.text().await.unwrap().starts_with("<h1>"),
        "the gateway answers without JSON"
    );
    // The default rule covers routes nobody listed: Subscription management needs its scopes.
    let subs = get(format!("{base}/fhir/r4/Subscription")).await;
    assert_eq!(subs.status(), 403);
    sim.shutdown().await;
}

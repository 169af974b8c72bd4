//! Shared helpers for the simulator's in-process tests: start a simulator on 127.0.0.1:0 and
//! talk to it with a plain reqwest client (never the athena-client crate).
#![allow(dead_code)]

use athena_sim::{RunningSim, SimConfig};
use serde_json::Value;

/// What the harness's token asks for: every route these tests call is covered (the simulator
/// enforces scopes per route; `scopes_are_enforced_per_route` tests the refusals).
pub const ALL_SCOPES: &str =
    "athena/service/Athenanet.MDP.* system/*.read system/Subscription.write";

/// Practice every test uses.
pub const PID: u64 = 195_900;

/// A running simulator plus a client holding a valid token.
pub struct Harness {
    /// The simulator.
    pub sim: RunningSim,
    /// Plain HTTP client.
    pub http: reqwest::Client,
    /// A granted bearer token.
    pub token: String,
}

impl Harness {
    /// Starts a simulator with `config` and grants a token.
    pub async fn start(config: SimConfig) -> Harness {
        let sim = RunningSim::start(config).await.expect("start simulator");
        let http = reqwest::Client::new();
        let token = grant(&http, &sim.base_url).await;
        Harness { sim, http, token }
    }

    /// `{base}/v1/{PID}{path}`.
    pub fn v1(&self, path: &str) -> String {
        format!("{}/v1/{PID}{path}", self.sim.base_url)
    }

    /// GET with the token.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send")
    }

    /// Sends a form with the token.
    pub async fn form(
        &self,
        method: reqwest::Method,
        url: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .form(form)
            .send()
            .await
            .expect("send")
    }

    /// POST form, expect 200, return JSON.
    pub async fn post_ok(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let r = self.form(reqwest::Method::POST, &self.v1(path), form).await;
        assert_eq!(r.status(), 200, "POST {path}");
        r.json().await.expect("json")
    }

    /// GET, expect 200, return JSON.
    pub async fn get_ok(&self, path: &str) -> Value {
        let r = self.get(&self.v1(path)).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// Subscribes to every event of a feed.
    pub async fn subscribe(&self, feed: &str) {
        let v = self
            .post_ok(&format!("/{feed}/changed/subscription"), &[])
            .await;
        assert_eq!(v["success"], true);
    }
}

/// Client-credentials grant with the default credentials; returns the access token.
pub async fn grant(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/oauth2/v1/token"))
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", ALL_SCOPES)])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// A patient creation form that passes validation.
pub fn patient_form<'a>(first: &'a str, last: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("firstname", first),
        ("lastname", last),
        ("dob", "02/03/1981"),
        ("departmentid", "1"),
        ("zip", "02472"),
    ]
}

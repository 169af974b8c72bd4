//! The admin API as a Kafka Connect user drives it: every row of the Connect table in
//! docs/operations.md, called on the real binary (real broker, registry and simulator) with a
//! write-back sink and a changed-data source, checking each status code and JSON shape against
//! Connect's documented ones (Connect REST docs, KIP-745 restart, KIP-875 offsets).

mod common;

use std::time::Duration;

use athena_connect_tests::unique;
use common::*;
use serde_json::{Value, json};

/// One call: method, path, `Authorization` value (None = none), JSON body.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

/// The last lines of the process's output, for failure messages.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Connect's error body: `{"error_code": <status>, "message": "..."}`.
fn assert_error(what: &str, (status, v, text): &(u16, Value, String), code: u16) {
    assert_eq!(*status, code, "{what}: {text}");
    assert_eq!(
        v["error_code"].as_u64(),
        Some(code.into()),
        "{what}: {text}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {text}"
    );
}

/// Connect's `ConnectorStateInfo`: name, connector {state, worker_id}, tasks [{id, state,
/// worker_id}], type.
fn assert_status_shape(v: &Value, name: &str, connect_type: &str) {
    assert_eq!(v["name"], name, "{v}");
    assert!(v["connector"]["state"].is_string(), "{v}");
    assert!(v["connector"]["worker_id"].is_string(), "{v}");
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{v}");
    assert_eq!(tasks[0]["id"], 0, "{v}");
    assert!(
        tasks[0]["state"].is_string() && tasks[0]["worker_id"].is_string(),
        "{v}"
    );
    assert_eq!(v["type"], connect_type, "{v}");
}

/// Every value of a Connect config map is a string.
fn assert_config_shape(v: &Value) {
    let m = v.as_object().expect("config object");
    assert!(m.values().all(Value::is_string), "{v}");
    assert!(
        m.contains_key("connector.class") && m.contains_key("name"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_user_s_calls() {
    let (stack, sim, names) = sink_setup().await;
    sim.state.generate(5);
    let prefix = format!("{}.", unique("rest"));
    let extra = format!(
        "{}{}",
        names.section("wb"),
        source_section("src", &prefix, &["patients"])
    );
    let config = base_config(&stack, &sim.base_url, "json", &extra);
    let mut proc = Proc::start(&config, &[]);
    let base = proc.admin.clone();
    let b = format!("Bearer {ADMIN_TOKEN}");
    let auth = Some(b.as_str());
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(60)).await;
    wait_state(&base, "src", "RUNNING", Duration::from_secs(60)).await;

    // Authentication: no token is 401 in Connect's error shape; the scheme is case-insensitive.
    let r = call(&base, "GET", "/connectors", None, None).await;
    assert_error("no token", &r, 401);
    let lower = format!("bearer {ADMIN_TOKEN}");
    let r = call(&base, "GET", "/connectors", Some(&lower), None).await;
    assert_eq!(r.0, 200, "lower-case scheme: {}", r.2);

    // GET / : version info.
    let (code, v, _) = call(&base, "GET", "/", auth, None).await;
    assert_eq!(code, 200);
    assert!(v["version"].is_string() && v["commit"].is_string(), "{v}");
    assert!(
        v["kafka_cluster_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "the real cluster has an id: {v}"
    );

    // GET /connector-plugins: [{class, type, version}].
    let (code, v, _) = call(&base, "GET", "/connector-plugins", auth, None).await;
    assert_eq!(code, 200);
    let plugins = v.as_array().expect("array");
    assert!(!plugins.is_empty());
    for p in plugins {
        assert!(p["class"].is_string() && p["version"].is_string(), "{p}");
        assert!(p["type"] == "source" || p["type"] == "sink", "{p}");
    }

    // GET /connectors and its expansions.
    let (code, v, _) = call(&base, "GET", "/connectors", auth, None).await;
    assert_eq!((code, v), (200, json!(["src", "wb"])));
    let (code, v, _) = call(
        &base,
        "GET",
        "/connectors?expand=status&expand=info",
        auth,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_status_shape(&v["wb"]["status"], "wb", "sink");
    assert_status_shape(&v["src"]["status"], "src", "source");
    assert_eq!(v["wb"]["info"]["name"], "wb", "{v}");

    // GET /connectors/{name}: {name, config, tasks, type}.
    let (code, v, _) = call(&base, "GET", "/connectors/wb", auth, None).await;
    assert_eq!(code, 200);
    assert_eq!(v["name"], "wb");
    assert_config_shape(&v["config"]);
    assert_eq!(v["tasks"], json!([{"connector": "wb", "task": 0}]));
    assert_eq!(v["type"], "sink");

    // GET /connectors/{name}/config: a string map, sinks with their `topics`.
    let (code, v, text) = call(&base, "GET", "/connectors/wb/config", auth, None).await;
    assert_eq!(code, 200);
    assert_config_shape(&v);
    assert!(
        v["topics"].as_str().unwrap().contains(&names.appointments),
        "{v}"
    );
    assert!(!text.contains(ATHENA_SECRET) && !text.contains(ADMIN_TOKEN));

    // GET /connectors/{name}/status.
    let (code, v, _) = call(&base, "GET", "/connectors/wb/status", auth, None).await;
    assert_eq!(code, 200);
    assert_status_shape(&v, "wb", "sink");
    assert_error(
        "unknown connector",
        &call(&base, "GET", "/connectors/nope/status", auth, None).await,
        404,
    );

    // Tasks: [{id: {connector, task}, config}], one task's status, an unknown task.
    let (code, v, _) = call(&base, "GET", "/connectors/wb/tasks", auth, None).await;
    assert_eq!(code, 200);
    assert_eq!(v[0]["id"], json!({"connector": "wb", "task": 0}), "{v}");
    assert!(v[0]["config"].is_object(), "{v}");
    let (code, v, _) = call(&base, "GET", "/connectors/wb/tasks/0/status", auth, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        (v["id"].as_u64(), v["state"].as_str()),
        (Some(0), Some("RUNNING")),
        "{v}"
    );
    assert!(v["worker_id"].is_string(), "{v}");
    assert_error(
        "unknown task",
        &call(&base, "GET", "/connectors/wb/tasks/7/status", auth, None).await,
        404,
    );

    // Topics: {name: {topics: [...]}}; reset is refused as with topic.tracking.allow.reset=false.
    let (code, v, _) = call(&base, "GET", "/connectors/wb/topics", auth, None).await;
    assert_eq!(code, 200);
    let topics = v["wb"]["topics"].as_array().expect("topics");
    assert!(
        topics.iter().any(|t| t == names.appointments.as_str()),
        "{v}"
    );
    let (_, v, _) = call(&base, "GET", "/connectors/src/topics", auth, None).await;
    assert_eq!(
        v["src"]["topics"],
        json!([format!("{prefix}athena.patients.v1")])
    );
    assert_error(
        "topics reset",
        &call(&base, "PUT", "/connectors/wb/topics/reset", auth, None).await,
        403,
    );

    // Pause / resume: 202, no body.
    let (code, _, text) = call(&base, "PUT", "/connectors/wb/pause", auth, None).await;
    assert_eq!((code, text.as_str()), (202, ""));
    wait_state(&base, "wb", "PAUSED", Duration::from_secs(10)).await;
    let (code, _, text) = call(&base, "PUT", "/connectors/wb/resume", auth, None).await;
    assert_eq!((code, text.as_str()), (202, ""));
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(30)).await;

    // Restart (KIP-745): plain 204; includeTasks 202 with RESTARTING; onlyFailed on a healthy
    // connector 202 with nothing restarting; a task restart 204.
    let (code, _, text) = call(&base, "POST", "/connectors/wb/restart", auth, None).await;
    assert_eq!((code, text.as_str()), (204, ""));
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(60)).await;
    let (code, v, _) = call(
        &base,
        "POST",
        "/connectors/wb/restart?includeTasks=true&onlyFailed=false",
        auth,
        None,
    )
    .await;
    assert_eq!(code, 202, "{v}");
    assert_status_shape(&v, "wb", "sink");
    assert_eq!(v["connector"]["state"], "RESTARTING", "{v}");
    assert_eq!(v["tasks"][0]["state"], "RESTARTING", "{v}");
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(60)).await;
    let (code, v, _) = call(
        &base,
        "POST",
        "/connectors/wb/restart?includeTasks=true&onlyFailed=true",
        auth,
        None,
    )
    .await;
    assert_eq!(code, 202, "{v}");
    assert_status_shape(&v, "wb", "sink");
    assert_eq!(
        v["connector"]["state"], "RUNNING",
        "nothing failed, nothing restarts: {v}"
    );
    let (code, _, text) = call(&base, "POST", "/connectors/wb/tasks/0/restart", auth, None).await;
    assert_eq!((code, text.as_str()), (204, ""));
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(60)).await;

    // Offsets of a connector that is not STOPPED cannot change: 400 (KIP-875).
    let sink_offsets = json!({"offsets": [{
        "partition": {"kafka_topic": names.appointments, "kafka_partition": 0},
        "offset": {"kafka_offset": 0},
    }]});
    assert_error(
        "reset while running",
        &call(&base, "DELETE", "/connectors/wb/offsets", auth, None).await,
        400,
    );
    assert_error(
        "alter while running",
        &call(
            &base,
            "PATCH",
            "/connectors/wb/offsets",
            auth,
            Some(sink_offsets.clone()),
        )
        .await,
        400,
    );

    // Stop: 204; then alter (200 + message), read back, refuse a bad body, reset.
    let (code, _, text) = call(&base, "PUT", "/connectors/wb/stop", auth, None).await;
    assert_eq!((code, text.as_str()), (204, ""));
    let (code, v, _) = call(&base, "GET", "/connectors/wb/status", auth, None).await;
    assert_eq!(
        (code, v["connector"]["state"].as_str()),
        (200, Some("STOPPED"))
    );
    let (code, v, _) = call(
        &base,
        "PATCH",
        "/connectors/wb/offsets",
        auth,
        Some(sink_offsets),
    )
    .await;
    assert_eq!(code, 200, "{v}\n{}", tail(&proc.output()));
    assert!(v["message"].is_string(), "{v}");
    let (code, v, _) = call(&base, "GET", "/connectors/wb/offsets", auth, None).await;
    assert_eq!(code, 200);
    let altered = v["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .find(|o| {
            o["partition"] == json!({"kafka_topic": names.appointments, "kafka_partition": 0})
        })
        .unwrap_or_else(|| panic!("the altered partition is shown: {v}"));
    assert_eq!(altered["offset"], json!({"kafka_offset": 0}));
    for bad in [
        json!({"offsets": []}),
        json!({"offsets": [{"partition": {"kafka_topic": "not-ours", "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]}),
        json!({"offsets": [{"partition": {"kafka_topic": names.appointments, "kafka_partition": 99}, "offset": {"kafka_offset": 0}}]}),
    ] {
        assert_error(
            &format!("bad alter {bad}"),
            &call(
                &base,
                "PATCH",
                "/connectors/wb/offsets",
                auth,
                Some(bad.clone()),
            )
            .await,
            400,
        );
    }
    let (code, v, _) = call(&base, "DELETE", "/connectors/wb/offsets", auth, None).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["message"].is_string(), "{v}");
    let (code, _, text) = call(&base, "PUT", "/connectors/wb/resume", auth, None).await;
    assert_eq!((code, text.as_str()), (202, ""));
    wait_state(&base, "wb", "RUNNING", Duration::from_secs(60)).await;

    // A source's cursor: stop, read it, alter one field, read it back, delete it (null).
    let (code, _, _) = call(&base, "PUT", "/connectors/src/stop", auth, None).await;
    assert_eq!(code, 204);
    let (code, v, _) = call(&base, "GET", "/connectors/src/offsets", auth, None).await;
    assert_eq!(code, 200);
    let entry = v["offsets"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| panic!("the source committed a cursor: {v}"));
    let mut cursor = entry["offset"].clone();
    cursor["events_total"] = json!(424_242);
    let body = json!({"offsets": [{"partition": entry["partition"], "offset": cursor}]});
    let (code, v, _) = call(&base, "PATCH", "/connectors/src/offsets", auth, Some(body)).await;
    assert_eq!(code, 200, "{v}");
    let (_, v, _) = call(&base, "GET", "/connectors/src/offsets", auth, None).await;
    let shown = v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["partition"] == entry["partition"])
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(shown["offset"]["events_total"], 424_242, "{v}");
    let not_a_cursor =
        json!({"offsets": [{"partition": entry["partition"], "offset": {"v": "x"}}]});
    assert_error(
        "not a cursor",
        &call(
            &base,
            "PATCH",
            "/connectors/src/offsets",
            auth,
            Some(not_a_cursor),
        )
        .await,
        400,
    );
    let delete = json!({"offsets": [{"partition": entry["partition"], "offset": null}]});
    let (code, v, _) = call(
        &base,
        "PATCH",
        "/connectors/src/offsets",
        auth,
        Some(delete),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (_, v, _) = call(&base, "GET", "/connectors/src/offsets", auth, None).await;
    assert!(
        !v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["partition"] == entry["partition"]),
        "a null offset deletes the cursor: {v}"
    );

    // What we do not have (connectors come from the config file): Connect's error shape.
    assert_error(
        "delete a connector",
        &call(&base, "DELETE", "/connectors/wb", auth, None).await,
        405,
    );
    assert_error(
        "reconfigure a connector",
        &call(
            &base,
            "PUT",
            "/connectors/wb/config",
            auth,
            Some(json!({"tasks.max": "2"})),
        )
        .await,
        405,
    );
    assert_error(
        "create a connector",
        &call(
            &base,
            "POST",
            "/connectors",
            auth,
            Some(json!({"name": "x", "config": {}})),
        )
        .await,
        405,
    );

    proc.stop_cleanly().await;
    let out = proc.output();
    for secret in [ADMIN_TOKEN, ATHENA_SECRET] {
        assert!(!out.contains(secret), "the log contains a secret");
    }
}

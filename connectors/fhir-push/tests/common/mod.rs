//! Helpers shared by the push integration tests (each test file includes this module).

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{Stack, unique};
use std::sync::Arc;

use athena_sim::RunningSim;
use connector_core::Secret;
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::RunEnv;
use connector_core::runtime::TaskHandle;
use fhir_push::adapter::{AthenaAdapter, PushAdapter};
use fhir_push::gap::GapMonitor;
use fhir_push::receiver::ReceiverState;
use rdkafka::consumer::{BaseConsumer, Consumer};
use secrecy::SecretString;

/// The simulated practice.
pub const PRACTICE: u64 = 195_900;
/// The shared push secret (long enough for validation).
pub const SECRET: &str = "test-shared-secret-0123456789";

/// An athena client for the simulator, with limits generous enough for tests.
pub fn athena(sim: &RunningSim) -> AthenaClient {
    let mut c = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().unwrap()),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    c.request_timeout = Duration::from_secs(5);
    c.rate_limit.qps = 200.0;
    c.rate_limit.burst = 50;
    c.rate_limit.token_requests_per_minute = 60;
    c.scopes = push_scopes();
    AthenaClient::new(c).unwrap()
}

/// What the push connector needs from athena: the proprietary API (inflation of Patient and
/// Appointment foci, catch-up feeds), a FHIR read per typed resource type, and the
/// Subscription scopes (the simulator enforces scopes per route).
pub fn push_scopes() -> Vec<String> {
    use athena_client::scopes;
    scopes::with_fhir_reads(
        &[
            scopes::MDP,
            scopes::SUBSCRIPTION_READ,
            scopes::SUBSCRIPTION_WRITE,
        ],
        &[athena_contracts::events::FHIR_RESOURCE_TYPES, &["Patient"]].concat(),
    )
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sum of `topic`'s high watermarks (records ever written).
pub fn high_watermark(kafka: &KafkaConfig, topic: &str) -> i64 {
    let c: BaseConsumer = kafka.consumer_config(&unique("wm")).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// A push connector config on fresh topics, receiving on `port`, and its run environment.
pub fn config(stack: &Stack, port: u16) -> (fhir_push::Config, RunEnv) {
    let mut c = fhir_push::Config::new(
        PRACTICE,
        Secret::new(SECRET),
        format!("http://127.0.0.1:{port}/notifications"),
    );
    c.listen = format!("127.0.0.1:{port}");
    c.notifications_topic = unique("push.notifications");
    c.notifications_partitions = 2;
    c.patients_topic = Some(unique("patients"));
    c.appointments_topic = Some(unique("appointments"));
    c.fhir_resources_topic = Some(unique("fhir"));
    c.group_id = Some(unique("inflate"));
    c.subscription_topics = vec!["Patient.create".into(), "Patient.update".into()];
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    (c, env)
}

/// Waits until something listens on `port` (the receiver binds after its start-up reads).
pub async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "receiver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An in-process receiver (athena adapter, 1.5 s budget) producing to a new one-partition
/// notifications topic: the receiver state, its gap monitor and the topic.
pub async fn receiver_on_new_topic(
    stack: &Stack,
    name: &str,
) -> (ReceiverState, Arc<GapMonitor>, String) {
    let topic = unique("push.notifications");
    stack.create_topic(&topic, 1).await;
    let (state, gap) = receiver_state(&stack.kafka(), name, &topic);
    (state, gap, topic)
}

/// An in-process receiver state (athena adapter, 1.5 s budget) producing to `topic`, and its
/// gap monitor.
pub fn receiver_state(
    kafka: &KafkaConfig,
    name: &str,
    topic: &str,
) -> (ReceiverState, Arc<GapMonitor>) {
    let adapter: Arc<dyn PushAdapter> = Arc::new(AthenaAdapter::new(Secret::new(SECRET)));
    let gap = Arc::new(GapMonitor::new(name, Duration::from_secs(60)));
    let state = ReceiverState::new(
        name,
        adapter,
        kafka.build_producer().unwrap(),
        topic.to_string(),
        Duration::from_millis(1500),
        gap.clone(),
    );
    (state, gap)
}

/// Stops a connector task and checks it ended without error.
pub async fn stop(handle: TaskHandle, task: tokio::task::JoinHandle<Result<(), fhir_push::Error>>) {
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("connector stops")
        .unwrap()
        .unwrap();
}

/// A signed-ready notification bundle of topic `Encounter.check-in` with one event.
pub fn event_bundle(event_id: &str, focus: serde_json::Value) -> String {
    event_bundle_on("Encounter.check-in", event_id, focus)
}

/// A notification bundle of `topic_code` (e.g. `PatientProblem.update`) with one event.
pub fn event_bundle_on(topic_code: &str, event_id: &str, focus: serde_json::Value) -> String {
    serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "event-notification",
        "subscription": {"reference": "Subscription/s1"},
        "topic": format!("https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/{topic_code}"),
        "notificationEvent": [{"id": event_id, "eventNumber": "1",
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "focus": focus}]}}]})
    .to_string()
}

/// Posts `body` signed with [`SECRET`] to the receiver on `port`; the status code.
pub async fn post(http: &reqwest::Client, port: u16, body: &str) -> u16 {
    http.post(format!("http://127.0.0.1:{port}/notifications"))
        .header(
            "X-Hub-Signature",
            fhir_push::signature::sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .expect("receiver answers")
        .status()
        .as_u16()
}

/// The text value of header `key` of `m`.
pub fn header<'a>(m: &'a rdkafka::message::OwnedMessage, key: &str) -> Option<&'a str> {
    use rdkafka::message::{Headers, Message};
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Waits until `f` holds, failing the test with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `Patient.update` notification with one event `event_id` whose focus is `patient` of
/// [`PRACTICE`].
pub fn patient_bundle(event_id: &str, patient: &str) -> String {
    serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "event-notification",
        "subscription": {"reference": "Subscription/s1"},
        "topic": "https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/Patient.update",
        "notificationEvent": [{"id": event_id, "eventNumber": "1",
            "focus": {"reference": format!("Patient/a-{PRACTICE}.E-{patient}")}}]}}]})
    .to_string()
}

/// An `athena-connect` config for the push tests: `[kafka]` on `bootstrap` (plus `kafka_extra`,
/// e.g. a `[kafka.producer]` table), the registry at `registry`, athena at `athena_url`, no admin
/// API, and `section` (the `[sources.fhir_push.<name>]` table).
pub fn run_toml(
    bootstrap: &str,
    kafka_extra: &str,
    registry: &str,
    athena_url: &str,
    section: &str,
) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1
{kafka_extra}

[schema_registry]
url = "{registry}"
auto_register = true

[athena]
base_url = "{athena_url}"
client_id = "sim-client"
client_secret = "sim-secret"

[admin]
enabled = false

{section}
"#
    )
}

/// An `athena-connect run` process on a config written from `toml`, with the push secret in
/// `FHIR_PUSH_SECRET`; killed when dropped (its config directory removed with it).
pub struct RunProcess(pub Child, tempfile::TempDir);

impl RunProcess {
    /// Starts `athena-connect run --config <file> <args>` with `env` set.
    pub fn spawn(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("athena-connect.toml");
        std::fs::write(&config, toml).expect("write the config");
        let child = Command::new(athena_connect_tests::athena_connect_bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("FHIR_PUSH_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("athena-connect starts");
        RunProcess(child, dir)
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

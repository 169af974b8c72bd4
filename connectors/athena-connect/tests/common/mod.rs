//! Shared setup of the end-to-end tests of the `athena-connect` binary: a config over unique
//! topics, the real process with its stderr captured, the admin API client, and Kafka readers.
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use connector_core::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};

/// The admin token the tests configure (through the environment, as in production).
pub const ADMIN_TOKEN: &str = "e2e-admin-token-5f1c9a7d2b";
/// The simulator's client secret (must never show up in an answer or a log line).
pub const ATHENA_SECRET: &str = "sim-secret";
/// The simulated practice.
pub const PRACTICE: u64 = 195_900;

/// The shared part of every test config. `log_format` is `pretty` or `json`.
pub fn base_config(stack: &Stack, sim_url: &str, log_format: &str, extra: &str) -> String {
    format!(
        r#"
shutdown_timeout = "20s"

[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1

[schema_registry]
url = "{registry}"
subject_strategy = "topic_record_name"
auto_register = true

[athena]
base_url = "{sim_url}"
client_id = "sim-client"
client_secret = "${{ATHENA_TEST_SECRET}}"
request_timeout = "5s"

[athena.retry]
base = "20ms"
cap = "500ms"

[athena.rate_limit]
qps = 200.0
burst = 50
token_requests_per_minute = 600

[telemetry]
log_format = "{log_format}"
log_level = "info"

[admin]
listen = "127.0.0.1:0"
token = "${{ATHENA_CONNECT_ADMIN_TOKEN}}"
readiness_cache = "1s"

{extra}
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
    )
}

/// Topic and group names of one write-back sink.
#[derive(Debug, Clone)]
pub struct SinkNames {
    pub patients: String,
    pub appointments: String,
    pub billing: String,
    pub results: String,
    pub ledger: String,
    pub group: String,
}

impl SinkNames {
    pub fn new() -> Self {
        let base = unique("e2e");
        SinkNames {
            patients: format!("{base}.cmd.patients"),
            appointments: format!("{base}.cmd.appointments"),
            billing: format!("{base}.cmd.billing"),
            results: format!("{base}.results"),
            ledger: format!("{base}.ledger"),
            group: format!("{base}.group"),
        }
    }

    /// The `[sinks.write_back.<name>]` table.
    pub fn section(&self, name: &str) -> String {
        format!(
            r#"
[sinks.write_back.{name}]
topics = ["{}", "{}", "{}"]
results_topic = "{}"
ledger_topic = "{}"
group_id = "{}"
transactional_id = "{}.tx"
commit_interval = "50ms"
backoff_base = "20ms"
backoff_cap = "500ms"
topic_partitions = 3
"#,
            self.patients,
            self.appointments,
            self.billing,
            self.results,
            self.ledger,
            self.group,
            self.group
        )
    }
}

/// A `[sources.changed_data.<name>]` table over topics prefixed `prefix`, polling fast, with
/// `feeds` (e.g. `["patients"]`).
pub fn source_section(name: &str, prefix: &str, feeds: &[&str]) -> String {
    let feeds: String = feeds.iter().map(|f| format!("{f} = {{}}\n")).collect();
    format!(
        r#"
[sources.changed_data.{name}]
practices = ["{PRACTICE}"]
topic_prefix = "{prefix}"
state_topic = "{prefix}state"
topic_partitions = 1
poll_interval = "200ms"
max_poll_interval = "1s"

[sources.changed_data.{name}.feeds]
{feeds}"#
    )
}

/// The real stack, a simulator and the three command topics (3 partitions) of a new sink.
pub async fn sink_setup() -> (Stack, athena_sim::RunningSim, SinkNames) {
    let stack = Stack::get().await;
    let sim = athena_sim::RunningSim::start(athena_sim::SimConfig::default())
        .await
        .expect("simulator");
    let names = SinkNames::new();
    for t in [&names.patients, &names.appointments, &names.billing] {
        stack.create_topic(t, 3).await;
    }
    (stack, sim, names)
}

/// The running binary.
pub struct Proc {
    pub child: Child,
    /// `http://127.0.0.1:PORT` of its admin API.
    pub admin: String,
    /// Everything it wrote to stdout and stderr so far.
    pub output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// The config file the process runs with.
    pub config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Writes `config` to a temporary file and starts `athena-connect run` on it; waits until the
    /// admin API listens.
    pub fn start(config: &str, extra_env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_athena-connect"));
        cmd.args(["run", "--config"])
            .arg(&path)
            .env("ATHENA_CONNECT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ATHENA_TEST_SECRET", ATHENA_SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start athena-connect");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let output = output.clone();
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("admin API listening on ").nth(1) {
                        let _ = tx.send(rest.trim().to_string());
                    }
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            }));
        }
        let admin = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "athena-connect did not start its admin API within 120 s; output:\n{}",
                    output.lock().unwrap()
                );
            }
        };
        Proc {
            child,
            admin,
            output,
            readers,
            config_path: path,
            _dir: dir,
        }
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// SIGTERM, then asserts a clean exit (code 0) within a minute.
    pub async fn stop_cleanly(&mut self) {
        self.sigterm();
        let code = self.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(code, 0, "exit code on SIGTERM; output:\n{}", self.output());
    }

    /// Waits for the exit (generous bound: a hang fails the test instead of blocking it);
    /// returns the exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close at exit: collect the last lines before anyone reads them.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "athena-connect did not exit within {within:?} after SIGTERM; output:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One admin API answer: status, headers and body as text.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

/// Runs the CLI with the test environment; returns (exit code, stdout + stderr).
pub fn cli(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_athena-connect"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("ATHENA_CONNECT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ATHENA_TEST_SECRET", ATHENA_SECRET)
        .output()
        .expect("run athena-connect");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Calls the admin API with (or without) the token and records the raw answer in `seen`.
pub async fn admin_call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    seen: &mut Vec<String>,
) -> Answer {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    let text = resp.text().await.unwrap_or_default();
    seen.push(format!("{method} {path} -> {status} {headers} {text}"));
    Answer { status, text }
}

/// Waits until `GET /connectors/{name}/status` shows `state`.
pub async fn wait_state(base: &str, name: &str, state: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let a = admin_call(
            base,
            "GET",
            &format!("/connectors/{name}/status"),
            Some(ADMIN_TOKEN),
            &mut seen,
        )
        .await;
        if a.text.contains(&format!("\"state\":\"{state}\"")) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {state}: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `topic` from the beginning until `stop(messages so far)` or `timeout`; returns all.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    mut stop: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = kafka.build_consumer(&unique("reader")).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !stop(&out) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("consume {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Whether a message keyed `key` is among `msgs`.
pub fn has_key(msgs: &[OwnedMessage], key: &str) -> bool {
    msgs.iter().any(|m| m.key() == Some(key.as_bytes()))
}

/// A free port on 127.0.0.1 (for listeners the config must name in advance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An athena FHIR `Bundle` notification with one event about `focus` (e.g.
/// `Patient/a-195900.E-123`) on SubscriptionTopic `topic`.
pub fn notification(event_id: &str, number: u64, topic: &str, focus: &str) -> String {
    serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "event-notification",
        "subscription": {"reference": "Subscription/chaos"},
        "topic": format!("https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/{topic}"),
        "notificationEvent": [{"id": event_id, "eventNumber": number.to_string(),
            "focus": {"reference": focus}}]}}]})
    .to_string()
}

/// The `[sources.fhir_push.<name>]` table of an athena push receiver on `port` signing with
/// `secret` (a literal or a `${VAR}`), no subscription management and no catch-up, its topics
/// `<base>.notifications` (2 partitions), `<base>.patients`, `<base>.appointments`,
/// `<base>.fhir` and its group `<base>.inflate`.
pub fn push_section(name: &str, port: u16, secret: &str, base: &str) -> String {
    format!(
        r#"
[sources.fhir_push.{name}]
adapter = "athena"
practice_id = {PRACTICE}
secret = "{secret}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}/notifications"
subscription_topics = ["Patient.update"]
manage_subscriptions = false
catch_up = false
notifications_topic = "{base}.notifications"
notifications_partitions = 2
patients_topic = "{base}.patients"
appointments_topic = "{base}.appointments"
fhir_resources_topic = "{base}.fhir"
group_id = "{base}.inflate"
"#
    )
}

/// POSTs `body` to `url` signed with `secret` as athena does (`X-Hub-Signature`); the HTTP
/// status, or 0 when the request failed.
pub async fn post_signed(client: &reqwest::Client, url: &str, secret: &str, body: &str) -> u16 {
    client
        .post(url)
        .header("Content-Type", "application/fhir+json")
        .header(
            "X-Hub-Signature",
            fhir_push::signature::sign(secret.as_bytes(), body.as_bytes()),
        )
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

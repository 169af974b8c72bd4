//! Test harness shared by the end-to-end tests: where the real Kafka broker and schema registry
//! are, unique names, and small produce/consume helpers.
//!
//! # Finding the servers
//! 1. `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL` (set by `./dev test`, or by
//!    `export $(./dev env)` after `./dev up`).
//! 2. Otherwise, when a Docker engine answers, testcontainers starts Kafka and Apicurio Registry
//!    with the images and versions in `deploy/local/versions.env`, once per test binary, and
//!    removes them when that test binary exits (see [`containers`]).
//! 3. Otherwise the test **fails** with a message naming `./dev up`. It never skips.
//!
//! Either way the servers are probed before a test uses them, with a bounded timeout, so a
//! stopped broker gives a clear failure rather than a hang.
//!
//! # The real binary
//! Process tests (SIGKILL loops, crash hooks) run `athena-connect run --only <name>` from
//! [`athena_connect_bin`], which builds it once per test process with the `test-hooks` feature.

pub mod bench;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use connector_core::avro::{AvroCodec, RegistryClient, RegistryConfig};
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;

/// Addresses of the servers the tests talk to.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Confluent-compatible registry base URL.
    pub registry_url: String,
}

/// How a developer starts the servers; part of every failure message.
pub const HOW_TO_START: &str = "Start the local stack with `./dev up` and export its addresses \
     (`export $(./dev env)`), or run the whole suite with `./dev test`.";

impl Stack {
    /// The stack, or a panic explaining how to start it. Probes both servers.
    pub async fn get() -> Stack {
        let stack = locate().unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = probe(&stack).await {
            panic!("{e}");
        }
        stack
    }

    /// A Kafka config for the tests (replication factor 1).
    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig::plaintext(self.bootstrap.clone())
    }

    /// A registry config for the tests.
    pub fn registry(&self) -> RegistryConfig {
        RegistryConfig::new(self.registry_url.clone())
    }

    /// A codec over the test registry.
    pub fn codec(&self) -> AvroCodec {
        AvroCodec::new(self.registry()).expect("codec")
    }

    /// A registry admin client.
    pub fn registry_client(&self) -> RegistryClient {
        RegistryClient::new(self.registry()).expect("registry client")
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.kafka().build_admin().expect("admin");
        ensure_topics(&admin, 1, &[TopicSpec::new(topic, partitions)])
            .await
            .expect("create topic");
    }

    /// Consumes `n` messages from `topic` in a fresh consumer group, or panics after `timeout`.
    pub async fn consume(&self, topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let consumer: StreamConsumer = self
            .kafka()
            .build_consumer(&unique("group"))
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => out.push(m.detach()),
                Ok(Err(e)) => panic!("consume from {topic}: {e}"),
                Err(_) => panic!(
                    "consumed {} of {n} messages from {topic} within {timeout:?}",
                    out.len()
                ),
            }
        }
        out
    }
}

/// A unique name with `prefix`, for topics, groups and subjects (tests share one broker).
pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Where the servers are, without probing them.
pub fn locate() -> Result<Stack, String> {
    let kafka = std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok();
    let registry = std::env::var("SCHEMA_REGISTRY_URL").ok();
    match (kafka, registry) {
        (Some(bootstrap), Some(registry_url)) => Ok(Stack {
            bootstrap,
            registry_url,
        }),
        (None, None) if docker_available() => containers::start(),
        (k, r) => Err(format!(
            "These tests need a real Kafka broker and schema registry, and {} not set \
             (and no Docker engine answers for testcontainers). {HOW_TO_START}",
            match (k, r) {
                (None, None) => "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL are",
                (None, _) => "KAFKA_BOOTSTRAP_SERVERS is",
                _ => "SCHEMA_REGISTRY_URL is",
            }
        )),
    }
}

/// Probes Kafka (metadata request) and the registry (`GET /subjects`), each bounded.
pub async fn probe(stack: &Stack) -> Result<(), String> {
    probe_kafka(&stack.bootstrap, Duration::from_secs(10)).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/subjects", stack.registry_url.trim_end_matches('/'));
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "The schema registry at {} answered HTTP {}. {HOW_TO_START}",
            stack.registry_url,
            r.status()
        )),
        Err(e) => Err(format!(
            "The schema registry at {} is not reachable ({}). {HOW_TO_START}",
            stack.registry_url,
            e.without_url()
        )),
    }
}

/// Fails within about `timeout` when no broker answers at `bootstrap`.
pub async fn probe_kafka(bootstrap: &str, timeout: Duration) -> Result<(), String> {
    KafkaConfig::plaintext(bootstrap)
        .check_connectivity(timeout)
        .await
        .map(|_| ())
        .map_err(|e| format!("Kafka is not reachable at {bootstrap} ({e}). {HOW_TO_START}"))
}

fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Versions and ports from `deploy/local/versions.env`, the one place they are set.
pub fn versions() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/versions.env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Docker fallback: Kafka and Apicurio in containers, started once per test binary and
/// removed when it exits.
///
/// A `static` is never dropped, so the containers' own `Drop` (which removes them) would never
/// run and every test binary would leave a Kafka and a registry JVM behind. Each container
/// therefore gets a reaper at once: a `sh` that waits for end-of-file on a pipe only this
/// process holds, then runs `docker rm -f`. The pipe closes when the process ends however it
/// ends (normal exit, panic, abort, SIGKILL), the pattern of testcontainers-java's Ryuk. The
/// reaper ignores SIGINT/SIGHUP/SIGTERM, so Ctrl-C on `cargo test` still cleans up.
pub mod containers {
    use super::*;
    use std::process::{ChildStdin, Command, Stdio};
    use std::sync::Mutex;
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{Container, GenericImage, ImageExt};
    use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};

    struct Running {
        _kafka: Container<Kafka>,
        _registry: Container<GenericImage>,
        stack: Stack,
    }

    static RUNNING: OnceLock<Result<Running, String>> = OnceLock::new();
    /// The write ends of the reapers' pipes: held, never written, closed by the OS at exit.
    static REAPERS: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

    pub(super) fn start() -> Result<Stack, String> {
        RUNNING
            .get_or_init(|| {
                // SyncRunner drives its own runtime; keep it off the test's async runtime thread.
                std::thread::spawn(start_inner)
                    .join()
                    .unwrap_or_else(|_| Err("container start panicked".into()))
            })
            .as_ref()
            .map(|r| r.stack.clone())
            .map_err(|e| format!("testcontainers could not start the stack: {e}. {HOW_TO_START}"))
    }

    /// `(image, tag)` of Kafka and of the registry, from `deploy/local/versions.env` (the
    /// versions `./dev up` and docker-compose.yml run), never a module's default.
    pub fn images(v: &BTreeMap<String, String>) -> Result<[(String, String); 2], String> {
        let get = |k: &str| {
            v.get(k)
                .cloned()
                .ok_or_else(|| format!("deploy/local/versions.env has no {k}"))
        };
        Ok([
            (get("KAFKA_IMAGE")?, get("KAFKA_VERSION")?),
            (get("APICURIO_IMAGE")?, get("APICURIO_VERSION")?),
        ])
    }

    /// The shell script of a reaper: ignore the stop signals, wait for EOF, remove `$1`.
    pub const REAPER_SCRIPT: &str =
        "trap '' INT HUP TERM; cat >/dev/null; docker rm -f -v \"$1\" >/dev/null 2>&1";

    /// Starts a reaper that removes container `id` once this process has exited.
    fn reap_at_exit(id: &str) -> Result<(), String> {
        let mut child = Command::new("sh")
            .args(["-c", REAPER_SCRIPT, "athena-connect-test-reaper", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the container reaper: {e}"))?;
        let stdin = child.stdin.take().ok_or("reaper has no stdin")?;
        REAPERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stdin);
        // Not waited for: it outlives this process by design.
        drop(child);
        Ok(())
    }

    fn start_inner() -> Result<Running, String> {
        let [(kafka_image, kafka_tag), (registry_image, registry_tag)] = images(&versions())?;
        let kafka = Kafka::default()
            .with_jvm_image()
            .with_name(kafka_image)
            .with_tag(kafka_tag)
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .start()
            .map_err(|e| e.to_string())?;
        reap_at_exit(kafka.id())?;
        let kport = kafka
            .get_host_port_ipv4(KAFKA_PORT)
            .map_err(|e| e.to_string())?;
        let registry = GenericImage::new(registry_image, registry_tag)
            .with_exposed_port(8080.tcp())
            .with_wait_for(WaitFor::message_on_stdout("started in"))
            .start()
            .map_err(|e| e.to_string())?;
        reap_at_exit(registry.id())?;
        let rport = registry
            .get_host_port_ipv4(8080.tcp())
            .map_err(|e| e.to_string())?;
        Ok(Running {
            stack: Stack {
                bootstrap: format!("127.0.0.1:{kport}"),
                registry_url: format!("http://127.0.0.1:{rport}/apis/ccompat/v7"),
            },
            _kafka: kafka,
            _registry: registry,
        })
    }
}

/// A `tracing` writer that keeps everything written to it, for tests that prove no patient data
/// reaches the logs: `tracing_subscriber::fmt().with_writer(capture.clone())`, then
/// [`LogCapture::text`].
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A TCP proxy on a fixed local port that a test can stop (new connections refused, open ones
/// cut) and start again: the way to take a server "down" for one test without stopping the
/// shared servers other tests use.
#[derive(Debug)]
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    /// A proxy to `upstream` (`host:port`) on a free local port, initially stopped.
    pub fn new(upstream: &str) -> TcpProxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = l.local_addr().expect("local addr");
        drop(l);
        TcpProxy {
            addr,
            upstream: upstream.to_string(),
            task: None,
        }
    }

    /// The proxy's address (stable across stop and start).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Starts accepting and forwarding connections.
    pub async fn start(&mut self) {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        sock.bind(self.addr).expect("rebind the proxy port");
        let listener = sock.listen(64).expect("listen");
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
            // Dropping the JoinSet (when this task is aborted) cuts every open connection.
        }));
    }

    /// Stops: the listener closes and every proxied connection is cut.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The `athena-connect` binary with the test-only crash hooks (`--features test-hooks`), for
/// tests that run connectors as real processes (`athena-connect run --only <name>`). Built once
/// per test process with `cargo build -p athena-connect --features test-hooks` (a no-op when it
/// is up to date; cargo releases its build lock before it runs tests). Panics with cargo's
/// message when the build fails.
pub fn athena_connect_bin() -> std::path::PathBuf {
    static BIN: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(build_athena_connect)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_athena_connect() -> Result<std::path::PathBuf, String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // `cargo test` sets CARGO to the cargo that runs it; a plain run of the test binary uses
    // the one on PATH.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = std::process::Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "-p",
            "athena-connect",
            "--bin",
            "athena-connect",
            "--features",
            "test-hooks",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cargo} build -p athena-connect: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p athena-connect --features test-hooks failed ({}); see its output above",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "athena-connect")
        .find_map(|v| v["executable"].as_str().map(std::path::PathBuf::from))
        .ok_or_else(|| "cargo build -p athena-connect reported no athena-connect executable".into())
}

#[cfg(test)]
mod container_tests {
    use super::containers::{REAPER_SCRIPT, images};
    use super::versions;
    use std::io::Write;
    use std::process::{Command, Stdio};

    #[test]
    fn images_come_from_the_versions_file() {
        let v = versions();
        let [kafka, registry] = images(&v).unwrap();
        assert_eq!(
            kafka,
            (v["KAFKA_IMAGE"].clone(), v["KAFKA_VERSION"].clone())
        );
        assert_eq!(
            registry,
            (v["APICURIO_IMAGE"].clone(), v["APICURIO_VERSION"].clone())
        );
        let mut missing = v.clone();
        missing.remove("KAFKA_VERSION");
        assert!(images(&missing).unwrap_err().contains("KAFKA_VERSION"));
    }

    /// The reaper removes its container only once the pipe closes (this process exited), with
    /// a `docker` on PATH that records its arguments instead of talking to Docker.
    #[test]
    fn the_reaper_removes_the_container_when_the_pipe_closes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let docker = dir.path().join("docker");
        std::fs::write(
            &docker,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&docker)
            .status()
            .unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("sh")
            .args(["-c", REAPER_SCRIPT, "reaper", "c0ffee"])
            .env("PATH", path)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // While the pipe is open the reaper waits: nothing written yet.
        stdin.write_all(b"").unwrap();
        assert!(child.try_wait().unwrap().is_none(), "reaper ended early");
        assert!(!log.exists(), "removed while the process still runs");
        drop(stdin);
        assert!(child.wait().unwrap().success());
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.trim(), "rm -f -v c0ffee");
    }
}

//! A real broker restart during a run, without touching the shared Kafka: this test starts a
//! private single-node KRaft broker from the distribution `./dev up` downloaded
//! (`.cache/kafka-<version>`), runs the connector against it, stops the broker while the
//! simulator generates changes (so pages are polled and in flight while it is down), starts it
//! again on the same port and data, and checks that every change handed out is on Kafka.
//! It fails (never skips) when the distribution or Java is missing, naming what to run.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, unique};
use athena_sim::{RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::{RunEnv, task};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kafka_home() -> PathBuf {
    let versions =
        std::fs::read_to_string(repo().join("deploy/local/versions.env")).expect("versions.env");
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION="))
        .expect("KAFKA_VERSION in versions.env")
        .trim()
        .to_string();
    let cache = std::env::var("ATHENA_CONNECT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".cache"));
    let cache = if cache.is_absolute() {
        cache
    } else {
        repo().join(cache)
    };
    let home = cache.join(format!("kafka-{version}"));
    assert!(
        home.join("libs").is_dir(),
        "no Kafka distribution at {}: run `./dev up` once (it downloads Kafka)",
        home.display()
    );
    home
}

fn java() -> PathBuf {
    std::env::var("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .unwrap_or_else(|_| PathBuf::from("java"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker {
    home: PathBuf,
    props: PathBuf,
    log: PathBuf,
    bootstrap: String,
    child: Option<Child>,
}

impl Broker {
    fn create(dir: &Path) -> Broker {
        let home = kafka_home();
        let (port, controller) = (free_port(), free_port());
        let props = dir.join("server.properties");
        std::fs::write(
            &props,
            format!(
                "process.roles=broker,controller\nnode.id=1\n\
                 controller.quorum.voters=1@127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 log.dirs={}\nnum.partitions=1\noffsets.topic.replication.factor=1\n\
                 transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
                 share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
                 default.replication.factor=1\nmin.insync.replicas=1\ngroup.initial.rebalance.delay.ms=0\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let cp = format!("{}/libs/*", home.display());
        let log4j = repo().join("deploy/local/kafka/tools-log4j2.properties");
        let out = Command::new(java())
            .args([
                "-Xmx128m",
                &format!("-Dlog4j2.configurationFile={}", log4j.display()),
                "-cp",
                &cp,
            ])
            .args(["kafka.tools.StorageTool", "random-uuid"])
            .output()
            .expect("run java (set JAVA_HOME to a Java 17+)");
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        assert!(
            !id.is_empty(),
            "StorageTool random-uuid failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st = Command::new(java())
            .args([
                "-Xmx128m",
                &format!("-Dlog4j2.configurationFile={}", log4j.display()),
                "-cp",
                &cp,
            ])
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                &id,
                "-c",
            ])
            .arg(&props)
            .output()
            .expect("format");
        assert!(
            st.status.success(),
            "format failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        Broker {
            home,
            props,
            log: dir.join("broker.log"),
            bootstrap: format!("127.0.0.1:{port}"),
            child: None,
        }
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let log4j = repo().join("deploy/local/kafka/log4j2.properties");
        let child = Command::new(java())
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(format!("{}/libs/*", self.home.display()))
            .arg("kafka.Kafka")
            .arg(&self.props)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the private broker");
        self.child = Some(child);
        let k = KafkaConfig::plaintext(self.bootstrap.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while k.check_connectivity(Duration::from_secs(2)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "private broker did not start; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            for _ in 0..300 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn drained(sim: &athena_sim::SimState, feeds: &[Feed], what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while pending(sim, feeds) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not drained {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_during_a_run_loses_nothing() {
    let stack = Stack::get().await; // the shared registry
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::create(dir.path());
    broker.start().await;

    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let feeds = [Feed::Patients, Feed::Appointments, Feed::Claims];
    let prefix = unique("cds.restart");
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, "page_size = 10"),
        &Default::default(),
        "X",
    )
    .expect("config");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: KafkaConfig::plaintext(broker.bootstrap.clone()),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (control, handle) = task("restart", changed_data_source::KIND);
    let runner = {
        let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
        tokio::spawn(async move {
            changed_data_source::run("restart", &config, &env, &athena, control).await
        })
    };
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;
    // The generator spreads its steps over every feed (clinical ones too); about 40% land on
    // the three feeds read here.
    sim.state.generate(400);
    drained(&sim.state, &feeds, "before the restart").await;

    // Stop the broker while changes keep coming and pages are being polled.
    let gen_state = sim.state.clone();
    let generator = tokio::spawn(async move {
        for _ in 0..100 {
            gen_state.generate(4);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopper = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    });
    let mut broker = stopper.await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start().await;
    generator.await.unwrap();
    drained(&sim.state, &feeds, "after the restart").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stack_private = Stack {
        bootstrap: broker.bootstrap.clone(),
        registry_url: stack.registry_url.clone(),
    };
    let mut total = 0;
    for feed in feeds {
        let rows = handed_out(&sim.state, feed);
        total += rows.len();
        let expected: HashSet<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let got: HashSet<String> = read_all(&stack_private, &config.topic(feed))
            .iter()
            .map(event_id)
            .collect();
        let lost = expected.difference(&got).count();
        assert_eq!(
            lost,
            0,
            "{feed:?}: {lost} of {} changes lost",
            expected.len()
        );
    }
    assert!(total > 200, "{total}");
    handle.shutdown();
    runner.await.expect("join").expect("connector");
    sim.shutdown().await;
    drop(broker);
}

//! Outages during a run, without touching the shared servers: the registry is reached through
//! a TCP proxy this test stops and starts. Nothing is lost: every change the simulator handed out
//! is on Kafka afterwards.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, TcpProxy, unique};
use athena_sim::{RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use connector_core::runtime::{RunEnv, task};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_outage_at_start_and_during_the_run_loses_nothing() {
    let stack = Stack::get().await;
    let upstream = url::Url::parse(&stack.registry_url).expect("registry url");
    let host_port = format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port_or_known_default().unwrap()
    );
    let mut proxy = TcpProxy::new(&host_port);
    proxy.start().await;
    let mut proxied = upstream.clone();
    proxied.set_port(Some(proxy.addr().port())).unwrap();

    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let feeds = [Feed::Patients, Feed::Appointments, Feed::Problems];
    let prefix = unique("cds.outage");
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, ""),
        &Default::default(),
        "X",
    )
    .expect("config");
    let mut registry = stack.registry();
    registry.url = proxied.to_string();
    registry.auto_register = true;
    registry.timeout = Duration::from_secs(2);
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");

    // The registry is down when the connector starts.
    proxy.stop();
    let (control, handle) = task("outage", changed_data_source::KIND);
    let runner = {
        let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
        tokio::spawn(async move {
            changed_data_source::run("outage", &config, &env, &athena, control).await
        })
    };
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;
    sim.state.generate(150);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = handle.status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("schema")),
        "the outage is reported: {status:?}"
    );
    assert!(
        pending(&sim.state, &feeds) > 0,
        "nothing can be polled without the schema"
    );

    // Back up: the feeds start and drain.
    proxy.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending(&sim.state, &feeds) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained after the registry returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Down again during the run: encoders pinned their schema ids, production goes on.
    proxy.stop();
    sim.state.generate(150);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending(&sim.state, &feeds) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not drained during the registry outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.start().await;

    for feed in feeds {
        let rows = handed_out(&sim.state, feed);
        let expected: HashSet<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let got: HashSet<String> = read_all(&stack, &config.topic(feed))
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
    handle.shutdown();
    runner.await.expect("join").expect("connector");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_the_registry_lacks_stops_that_feed_only() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let feeds = [Feed::Patients, Feed::Problems];
    let prefix = unique("cds.rejected");
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, ""),
        &Default::default(),
        "X",
    )
    .expect("config");
    // Deploy-time registration for patients only; problems' subject holds nothing and the
    // connector may not register at runtime.
    let registry = stack.registry();
    assert!(!registry.auto_register);
    let client = stack.registry_client();
    let spec = changed_data_source::events::spec(Feed::Patients);
    let bundled = connector_core::avro::Catalog::global()
        .get(spec.schema_name)
        .unwrap();
    client
        .register(
            &format!("{}-value", config.topic(Feed::Patients)),
            &bundled.json,
        )
        .await
        .expect("register patients");
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (control, handle) = task("rejected", changed_data_source::KIND);
    let runner = {
        let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
        tokio::spawn(async move {
            changed_data_source::run("rejected", &config, &env, &athena, control).await
        })
    };
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;
    sim.state.generate(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sim.state.pending_changes(PRACTICE, Feed::Patients.path()) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "patients not drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = handle.status();
    assert_eq!(
        status.state,
        connector_core::runtime::TaskState::Running,
        "{status:?}"
    );
    let err = status.last_error.unwrap_or_default();
    assert!(err.contains("problems") && err.contains("stopped"), "{err}");
    assert!(
        sim.state.pending_changes(PRACTICE, Feed::Problems.path()) > 0,
        "the stopped feed must not poll (its rows would be lost)"
    );
    assert!(!runner.is_finished(), "the process goes on");
    let patients: HashSet<String> = handed_out(&sim.state, Feed::Patients)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let got: HashSet<String> = read_all(&stack, &config.topic(Feed::Patients))
        .iter()
        .map(event_id)
        .collect();
    assert!(!patients.is_empty() && patients.is_subset(&got));
    handle.shutdown();
    runner.await.expect("join").expect("connector");
    sim.shutdown().await;
}

//! The read side closes the loop for chart write-back (issue 14): chart writes made with the
//! calls the write-back sink uses (`PracticeClient::chart_post` / `chart_put`) against the
//! simulator become events on the source topics of their feeds (problems, allergies, vaccines,
//! lab results, orders), keyed by patient and carrying athena's new ids. Real broker and
//! registry, in-process simulator.

mod common;

use std::time::Duration;

use athena_client::AthenaClient;
use athena_client::api::changed::Feed;
use athena_client::api::chart::ChartPath;
use athena_connect_tests::{Stack, unique};
use athena_contracts::events::problems::ProblemChanged;
use athena_sim::{RunningSim, SimConfig};
use changed_data_source::Config;
use common::*;
use rdkafka::message::Message;

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_writes_become_events_on_their_feeds() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.expect("sim");
    let prefix = unique("cds.chart");
    let feeds = [
        Feed::Problems,
        Feed::Allergies,
        Feed::Vaccines,
        Feed::LabResults,
        Feed::Orders,
    ];
    let config: Config = connector_core::config::load_str(
        &connector_toml(&prefix, &feeds, ""),
        &Default::default(),
        "X",
    )
    .expect("config");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = connector_core::runtime::RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    let (handle, runner) = spawn_connector("chart-loop", &config, &env, &athena);
    wait_subscribed(&sim.state, &feeds, Duration::from_secs(60)).await;
    // Subscriptions take effect after the simulator's delay; write once they are effective.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !sim
        .state
        .with_practice(PRACTICE, |p| {
            feeds
                .iter()
                .all(|f| p.feeds.get(f.path()).is_some_and(|s| s.active.is_some()))
        })
        .unwrap_or(false)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions not effective"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let p = athena.practice(PRACTICE);
    let patient = "60178";
    let problem = p
        .chart_post(
            &ChartPath::problems(patient),
            form(&[("departmentid", "1"), ("snomedcode", "38341003")]),
        )
        .await
        .expect("problem");
    let problem_id = match &problem["problemid"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    p.chart_put(
        &ChartPath::allergies(patient),
        form(&[
            ("departmentid", "1"),
            (
                "allergies",
                r#"[{"allergenid":"18581","allergenname":"shellfish"}]"#,
            ),
        ]),
    )
    .await
    .expect("allergies");
    p.chart_post(
        &ChartPath::vaccines(patient),
        form(&[
            ("departmentid", "1"),
            ("cvx", "140"),
            ("administerdate", "11/01/2025"),
        ]),
    )
    .await
    .expect("vaccine");
    p.chart_post(
        &ChartPath::lab_results(patient),
        form(&[
            ("departmentid", "1"),
            (
                "analytes",
                r#"[{"loinc":"2345-7","analytename":"Glucose","value":"98"}]"#,
            ),
        ]),
    )
    .await
    .expect("lab result");
    p.chart_post(
        &ChartPath::referral_order("7000001"),
        form(&[
            ("ordertypeid", "257362"),
            ("diagnosissnomedcode", "38341003"),
        ]),
    )
    .await
    .expect("referral");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pending(&sim.state, &feeds) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "feeds not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_connector(&handle, runner).await;

    for feed in feeds {
        let rows = handed_out(&sim.state, feed);
        assert_eq!(rows.len(), 1, "{feed:?}: one changed-data row per write");
        let msgs = read_all(&stack, &config.topic(feed));
        assert_eq!(msgs.len(), 1, "{feed:?}: one event per write");
        assert_eq!(event_id(&msgs[0]), rows[0].0, "{feed:?}");
        let key = std::str::from_utf8(msgs[0].key().expect("key")).unwrap();
        assert!(key.starts_with("195900/"), "{feed:?}: {key}");
    }
    let msgs = read_all(&stack, &config.topic(Feed::Problems));
    let e: ProblemChanged = stack
        .codec()
        .decode(msgs[0].payload().expect("payload"))
        .await
        .expect("decode");
    assert_eq!(e.payload.problem_id, problem_id);
    assert_eq!(e.payload.code.as_deref(), Some("38341003"));
    assert_eq!(e.payload.patient_id.as_deref(), Some(patient));
    sim.shutdown().await;
}

//! The push path scaled out on the real broker (decision 0026): two push connectors of one config
//! (`role = "all"`: a receiver each, behind one public URL, and an inflater each, in one
//! consumer group over the notifications topic).
//!
//! - Started at the same moment, both manage the Subscriptions, and one Subscription per topic
//!   is left.
//! - Notifications posted alternately to both receivers are each made durable by the one that
//!   got it and inflated exactly once, with both inflaters holding partitions.
//! - One replica stopped: its partitions move to the other, which inflates every notification
//!   posted afterwards, whichever partition it lands on.
//! - A gap (silence) seen by both replicas is caught up by one: the leader, whose inflater holds
//!   notifications partition 0.
//! - The same with two `athena-connect run` processes and one SIGKILLed: after the group's
//!   session timeout the survivor inflates every notification, at least once, a repeat only with
//!   the same event id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::PatientChanged;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::{RunEnv, TaskHandle, TaskState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

mod common;
use common::{
    PRACTICE, RunProcess, athena, config, free_port, patient_bundle, post, run_toml, wait_for,
    wait_listening,
};

type Replica = (
    TaskHandle,
    tokio::task::JoinHandle<Result<(), fhir_push::Error>>,
);

fn start(cfg: &fhir_push::Config, env: &RunEnv, client: &athena_client::AthenaClient) -> Replica {
    start_named("push", cfg, env, client)
}

/// A replica under the connector name `name` (its own metric labels; the group is `cfg`'s).
fn start_named(
    name: &'static str,
    cfg: &fhir_push::Config,
    env: &RunEnv,
    client: &athena_client::AthenaClient,
) -> Replica {
    let (control, handle) = connector_core::runtime::task(name, "fhir-push-source");
    let (cfg, env, client) = (cfg.clone(), env.clone(), client.clone());
    let task =
        tokio::spawn(async move { fhir_push::run(name, &cfg, &env, &client, control).await });
    (handle, task)
}

/// Catch-up reads connector `name` started (each counts the one uncovered topic once).
fn catch_ups(name: &str) -> u64 {
    let prefix = format!("athena_connect_push_catch_up_uncovered_total{{connector=\"{name}\"}} ");
    connector_core::metrics::global()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Per member of `group`: whether its assignment names `topic` (it holds partitions of it).
fn members_holding(kafka: &KafkaConfig, group: &str, topic: &str) -> Vec<bool> {
    let c: BaseConsumer = kafka
        .consumer_config(&athena_connect_tests::unique("probe"))
        .create()
        .unwrap();
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    list.groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| {
            m.assignment()
                .is_some_and(|a| a.windows(topic.len()).any(|w| w == topic.as_bytes()))
        })
        .collect()
}

/// Waits until both members of `group` hold partitions of `topic`.
async fn both_holding(kafka: &KafkaConfig, group: &str, topic: &str) {
    wait_for(
        "both inflaters holding partitions",
        Duration::from_secs(90),
        || members_holding(kafka, group, topic) == [true, true],
    )
    .await;
}

/// Posts one notification per patient, alternately to the receivers on `ports`; each gets 200.
async fn post_alternately(
    http: &reqwest::Client,
    ports: [u16; 2],
    patients: &[String],
    prefix: &str,
) {
    for (i, p) in patients.iter().enumerate() {
        let port = ports[i % 2];
        let body = patient_bundle(&format!("{prefix}-{i}"), p);
        assert_eq!(post(http, port, &body).await, 200, "receiver on {port}");
    }
}

/// Whether `group` committed every partition of `topic` up to its end.
fn all_committed(kafka: &KafkaConfig, group: &str, topic: &str) -> bool {
    use rdkafka::{Offset, TopicPartitionList};
    // Not subscribed: it only reads the group's offsets, it never joins.
    let c: BaseConsumer = kafka.consumer_config(group).create().unwrap();
    let timeout = Duration::from_secs(10);
    let md = c.fetch_metadata(Some(topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, timeout).unwrap();
    committed.elements().iter().all(|e| {
        let (_, high) = c.fetch_watermarks(topic, e.partition(), timeout).unwrap();
        high == 0 || e.offset() == Offset::Offset(high)
    })
}

/// Patient id -> the event ids of its `PatientChanged` events (one per event), once `n` arrived.
async fn inflated_ids(stack: &Stack, topic: &str, n: usize) -> BTreeMap<String, Vec<String>> {
    let mut by_patient: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in stack.consume(topic, n, Duration::from_secs(60)).await {
        let ev: PatientChanged = stack.codec().decode(m.payload().unwrap()).await.unwrap();
        by_patient
            .entry(ev.payload.patient_id)
            .or_default()
            .push(ev.envelope.event_id);
    }
    by_patient
}

/// Patient id -> how many `PatientChanged` events, once `n` arrived.
async fn inflated(stack: &Stack, topic: &str, n: usize) -> BTreeMap<String, usize> {
    inflated_ids(stack, topic, n)
        .await
        .into_iter()
        .map(|(p, ids)| (p, ids.len()))
        .collect()
}

/// `n` synthetic patients in the simulator.
fn add_patients(sim: &RunningSim, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            sim.state.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Synth",
                    &format!("Scale{i}"),
                    chrono::NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
                ),
            )
        })
        .collect()
}

/// One `athena-connect run` process of the push connector `cfg` (`role = "all"`), listening on
/// `port`, with the broker's minimum session timeout (a SIGKILLed replica's partitions move
/// after 6 s).
fn start_replica(
    stack: &Stack,
    sim: &RunningSim,
    cfg: &fhir_push::Config,
    port: u16,
) -> RunProcess {
    let toml = run_toml(
        &stack.bootstrap,
        "[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"",
        &stack.registry_url,
        &sim.base_url,
        &format!(
            r#"[sources.fhir_push.push]
practice_id = {PRACTICE}
secret = "${{FHIR_PUSH_SECRET}}"
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
notifications_topic = "{notifications}"
notifications_partitions = {partitions}
patients_topic = "{patients}"
appointments_topic = "{appointments}"
fhir_resources_topic = "{fhir}"
group_id = "{group}"
subscription_topics = ["Encounter.check-in"]
catch_up = false"#,
            public_url = cfg.public_url,
            notifications = cfg.notifications_topic,
            partitions = cfg.notifications_partitions,
            patients = cfg.patients_topic(),
            appointments = cfg.appointments_topic(),
            fhir = cfg.fhir_resources_topic(),
            group = cfg.group_id("push"),
        ),
    );
    RunProcess::spawn(&toml, &[], &[])
}

/// A simulator, its client, two receiver ports and a push config on fresh topics (4
/// notifications partitions) whose public URL is the first port's: the load balancer's.
async fn setup(
    stack: &Stack,
) -> (
    RunningSim,
    athena_client::AthenaClient,
    [u16; 2],
    fhir_push::Config,
    RunEnv,
) {
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let client = athena(&sim);
    let ports = [free_port(), free_port()];
    let (mut cfg, env) = config(stack, ports[0]);
    cfg.notifications_partitions = 4;
    (sim, client, ports, cfg, env)
}

/// The same connector config for a replica listening on `port`.
fn listening_on(cfg: &fhir_push::Config, port: u16) -> fhir_push::Config {
    let mut c = cfg.clone();
    c.listen = format!("127.0.0.1:{port}");
    c
}

#[tokio::test]
async fn two_receivers_and_two_inflaters_share_the_push_path() {
    let stack = Stack::get().await;
    let (sim, client, [port_a, port_b], mut cfg_a, env) = setup(&stack).await;
    // No catch-up reads: they would add `replayed` copies of these patients to the count. And
    // Subscriptions to topics the test's patients do not trigger, so the only notifications are
    // the ones the test posts.
    cfg_a.catch_up = false;
    cfg_a.subscription_topics = vec!["Appointment.check-in".into(), "Encounter.check-in".into()];
    let mut cfg_b = cfg_a.clone();
    cfg_b.listen = format!("127.0.0.1:{port_b}");
    let patients = add_patients(&sim, 14);

    let a = start(&cfg_a, &env, &client);
    let b = start(&cfg_b, &env, &client);
    wait_listening(port_a).await;
    wait_listening(port_b).await;
    wait_for("both replicas running", Duration::from_secs(60), || {
        [&a.0, &b.0]
            .iter()
            .all(|h| h.status().state == TaskState::Running)
    })
    .await;
    // Both reconciled the Subscriptions concurrently: one per configured topic is left.
    let mut topics: Vec<String> = sim
        .state
        .push()
        .subscriptions
        .lock()
        .values()
        .map(|s| s.topic.clone())
        .collect();
    topics.sort();
    assert_eq!(topics.len(), cfg_a.subscription_topics.len(), "{topics:?}");
    topics.dedup();
    assert_eq!(topics.len(), cfg_a.subscription_topics.len(), "{topics:?}");

    let group = cfg_a.group_id("push");
    let topic = cfg_a.notifications_topic.clone();
    both_holding(&env.kafka, &group, &topic).await;

    // Phase 1: notifications alternately to both receivers.
    let http = reqwest::Client::new();
    post_alternately(&http, [port_a, port_b], &patients[..8], "scale").await;
    let got = inflated(&stack, &cfg_a.patients_topic(), 8).await;
    assert_eq!(got.len(), 8, "every notification inflated: {got:?}");
    assert!(got.values().all(|n| *n == 1), "exactly once: {got:?}");

    // Phase 2: replica B stops (its receiver and inflater); A takes every partition.
    common::stop(b.0, b.1).await;
    wait_for("A holding every partition", Duration::from_secs(60), || {
        members_holding(&env.kafka, &group, &topic) == [true]
    })
    .await;
    for (i, p) in patients[8..].iter().enumerate() {
        let status = post(&http, port_a, &patient_bundle(&format!("scale-b-{i}"), p)).await;
        assert_eq!(status, 200);
    }
    let got = inflated(&stack, &cfg_a.patients_topic(), patients.len()).await;
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        {
            let mut all = patients.clone();
            all.sort();
            all
        },
        "every notification inflated, on whichever partition it landed"
    );
    assert!(got.values().all(|n| *n == 1), "exactly once: {got:?}");
    assert_eq!(
        common::high_watermark(&env.kafka, &cfg_a.patients_topic()),
        patients.len() as i64,
        "no duplicate behind the ones read"
    );
    common::stop(a.0, a.1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sigkilled_replica_s_partitions_are_inflated_by_the_other() {
    let stack = Stack::get().await;
    let (sim, _, [port_a, port_b], cfg, env) = setup(&stack).await;
    let patients = add_patients(&sim, 12);
    let a = start_replica(&stack, &sim, &cfg, port_a);
    let mut b = start_replica(&stack, &sim, &cfg, port_b);
    wait_listening(port_a).await;
    wait_listening(port_b).await;
    let (group, topic) = (cfg.group_id("push"), cfg.notifications_topic.clone());
    both_holding(&env.kafka, &group, &topic).await;

    let http = reqwest::Client::new();
    post_alternately(&http, [port_a, port_b], &patients[..6], "kill").await;
    // B dies without leaving the group; its partitions stay its own until the session expires,
    // and what lands there meanwhile waits, durable, for A.
    b.0.kill().unwrap();
    b.0.wait().unwrap();
    for (i, p) in patients[6..].iter().enumerate() {
        let body = patient_bundle(&format!("kill-a-{i}"), p);
        assert_eq!(post(&http, port_a, &body).await, 200);
    }
    // Every notification handled (offsets committed up to the end), then every event read.
    wait_for(
        "every notification inflated",
        Duration::from_secs(90),
        || all_committed(&env.kafka, &group, &topic),
    )
    .await;
    let n = common::high_watermark(&env.kafka, &cfg.patients_topic()) as usize;
    let got = inflated_ids(&stack, &cfg.patients_topic(), n).await;
    let expected: BTreeSet<&String> = patients.iter().collect();
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        expected,
        "every notification inflated"
    );
    for (patient, ids) in &got {
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            1,
            "a repeat of patient {patient} carries the same event id: {ids:?}"
        );
    }
    assert_eq!(members_holding(&env.kafka, &group, &topic), [true]);
    drop(a);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_gap_is_caught_up_by_the_leader_alone() {
    let stack = Stack::get().await;
    let (sim, client, [_, port_b], mut cfg_a, env) = setup(&stack).await;
    // Silence beyond 1 s is a gap; the one subscribed topic has no feed, so every catch-up read
    // only counts it as uncovered (`push_catch_up_uncovered_total{connector}`), per replica.
    cfg_a.heartbeat_period = Duration::from_secs(1);
    cfg_a.catch_up = true;
    cfg_a.manage_subscriptions = false;
    cfg_a.subscription_topics = vec!["Encounter.check-in".into()];
    let cfg_b = listening_on(&cfg_a, port_b);
    let a = start_named("push-lead-a", &cfg_a, &env, &client);
    let b = start_named("push-lead-b", &cfg_b, &env, &client);
    both_holding(
        &env.kafka,
        &cfg_a.group_id("push"),
        &cfg_a.notifications_topic,
    )
    .await;

    // From a settled group on, the catch-ups of a few gaps all come from one replica.
    let before = [catch_ups("push-lead-a"), catch_ups("push-lead-b")];
    wait_for("three catch-up reads", Duration::from_secs(60), || {
        catch_ups("push-lead-a") + catch_ups("push-lead-b") >= before[0] + before[1] + 3
    })
    .await;
    let ran = [
        catch_ups("push-lead-a") - before[0],
        catch_ups("push-lead-b") - before[1],
    ];
    assert!(
        ran.contains(&0),
        "only the leader catches up, the other replica does not: {ran:?}"
    );
    common::stop(b.0, b.1).await;
    common::stop(a.0, a.1).await;
    sim.shutdown().await;
}

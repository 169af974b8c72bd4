//! Shared setup of the sink's integration tests: the real broker and registry (fail loudly when
//! absent), an in-process simulator, unique topics and group, command production, result
//! collection.
#![allow(dead_code)] // Each test binary uses a different part.

pub mod chart_run;
pub mod kill_run;
pub mod lifecycle;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{Stack, unique};
use athena_contracts::commands::{ClaimCharge, CreateClaim};
use athena_contracts::{BookAppointment, CommandResult};
use athena_sim::{RunningSim, SimConfig};
use connector_core::avro::{AvroCodec, AvroRecord, RegistryConfig, SubjectStrategy};
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::{RunEnv, TaskHandle, task};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use secrecy::SecretString;
use write_back_sink::Config;

/// The simulated practice.
pub const PRACTICE: u64 = 195_900;

/// Topics and names of one test.
#[derive(Debug, Clone)]
pub struct Names {
    pub patients: String,
    pub appointments: String,
    pub billing: String,
    pub results: String,
    pub ledger: String,
    pub group: String,
}

impl Names {
    pub fn new() -> Self {
        let base = unique("wb");
        Names {
            patients: format!("{base}.cmd.patients"),
            appointments: format!("{base}.cmd.appointments"),
            billing: format!("{base}.cmd.billing"),
            results: format!("{base}.results"),
            ledger: format!("{base}.ledger"),
            group: format!("{base}.group"),
        }
    }
}

/// Registry settings of the tests: several record types per topic, registered on first use.
pub fn registry(stack: &Stack) -> RegistryConfig {
    let mut r = stack.registry();
    r.subject_strategy = SubjectStrategy::TopicRecordName;
    r.auto_register = true;
    r
}

pub fn codec(stack: &Stack) -> AvroCodec {
    AvroCodec::new(registry(stack)).expect("codec")
}

/// A sink config over `names`, tuned for fast tests.
pub fn sink_config(n: &Names) -> Config {
    Config {
        topics: vec![
            n.patients.clone(),
            n.appointments.clone(),
            n.billing.clone(),
        ],
        results_topic: n.results.clone(),
        ledger_topic: n.ledger.clone(),
        group_id: Some(n.group.clone()),
        transactional_id: Some(format!("{}.tx", n.group)),
        max_in_flight: 16,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(500),
        commit_interval: Duration::from_millis(50),
        topic_partitions: 3,
        ..Default::default()
    }
}

/// An athena client config for the simulator at `base_url`.
pub fn athena_config(base_url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        Environment::Custom(base_url.parse().expect("sim url")),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    c.request_timeout = Duration::from_secs(2);
    c.retry.base = Duration::from_millis(20);
    c.retry.cap = Duration::from_millis(200);
    c.rate_limit.qps = 1000.0;
    c.rate_limit.burst = 100;
    c.rate_limit.token_requests_per_minute = 600;
    c.rate_limit.quota_pause_cap = Duration::from_secs(1);
    c.rate_limit.max_retry_after = Duration::from_secs(1);
    c
}

/// A running sink task.
pub struct RunningSink {
    pub handle: TaskHandle,
    pub join: tokio::task::JoinHandle<Result<(), write_back_sink::Error>>,
}

impl RunningSink {
    pub async fn stop(self) {
        self.handle.shutdown();
        let r = tokio::time::timeout(Duration::from_secs(60), self.join)
            .await
            .expect("sink stops within 60 s")
            .expect("sink task");
        r.expect("sink stopped cleanly");
    }
}

pub fn start_sink(stack: &Stack, config: Config, athena: AthenaClient) -> RunningSink {
    start_sink_named(stack, "test", config, athena)
}

/// Like [`start_sink`], under connector name `name` (its metric label), for several instances.
pub fn start_sink_named(
    stack: &Stack,
    name: &str,
    config: Config,
    athena: AthenaClient,
) -> RunningSink {
    let name = name.to_string();
    let env = RunEnv {
        kafka: stack.kafka(),
        registry: registry(stack),
    };
    let (control, handle) = task(&name, write_back_sink::KIND);
    let join =
        tokio::spawn(
            async move { write_back_sink::run(&name, &config, &env, &athena, control).await },
        );
    RunningSink { handle, join }
}

pub async fn start_sim(config: SimConfig) -> (RunningSim, AthenaClient) {
    let sim = RunningSim::start(config).await.expect("simulator starts");
    let athena = AthenaClient::new(athena_config(&sim.base_url)).expect("client");
    (sim, athena)
}

pub async fn create_topics(stack: &Stack, n: &Names) {
    create_topics_with(stack, n, 3).await;
}

/// The three command topics with `partitions` partitions each.
pub async fn create_topics_with(stack: &Stack, n: &Names, partitions: i32) {
    for t in [&n.patients, &n.appointments, &n.billing] {
        stack.create_topic(t, partitions).await;
    }
}

/// Produces Avro commands: key, encoded value.
pub struct Producer {
    pub producer: FutureProducer,
    pub codec: AvroCodec,
}

impl Producer {
    pub fn new(stack: &Stack) -> Self {
        Producer {
            producer: stack.kafka().build_producer().expect("producer"),
            codec: codec(stack),
        }
    }

    pub async fn encode<T: AvroRecord>(&self, topic: &str, value: &T) -> Vec<u8> {
        self.codec
            .encoder::<T>(topic)
            .await
            .expect("encoder")
            .encode(value)
            .expect("encode")
    }

    pub async fn send_raw(&self, topic: &str, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .expect("produce");
    }

    pub async fn send<T: AvroRecord>(&self, topic: &str, key: &str, value: &T) {
        let bytes = self.encode(topic, value).await;
        self.send_raw(topic, key, &bytes).await;
    }
}

/// Reads `topic` from the start until `want` distinct keys were seen or `timeout` passes;
/// returns every message (so duplicates are visible).
pub async fn read_until(
    kafka: &KafkaConfig,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = kafka.build_consumer(&unique("reader")).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while keys.len() < want {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => {
                let m = m.detach();
                keys.insert(m.key().map(<[u8]>::to_vec));
                out.push(m);
            }
            // The sink creates the results topic; the reader may subscribe first.
            Ok(Err(e)) if e.to_string().contains("UnknownTopicOrPartition") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(e)) => panic!("consume {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Reads a little longer to catch late duplicates.
pub async fn drain_more(
    kafka: &KafkaConfig,
    topic: &str,
    known: usize,
    settle: Duration,
) -> Vec<OwnedMessage> {
    read_until(kafka, topic, known + 1, settle).await
}

/// Decodes results and checks there is exactly one per command id; returns them by id.
pub async fn results_by_id(
    codec: &AvroCodec,
    msgs: &[OwnedMessage],
) -> HashMap<String, CommandResult> {
    let mut by_id: HashMap<String, CommandResult> = HashMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in msgs {
        let r: CommandResult = codec
            .decode(m.payload().expect("payload"))
            .await
            .expect("result decodes");
        assert_eq!(
            m.key(),
            Some(r.command_id.as_bytes()),
            "results are keyed by command_id"
        );
        *counts.entry(r.command_id.clone()).or_default() += 1;
        by_id.insert(r.command_id.clone(), r);
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "more than one result for: {dups:?}");
    by_id
}

/// A booking command.
pub fn book(command_id: &str, appointment_id: &str, patient_id: &str) -> BookAppointment {
    BookAppointment {
        command_id: command_id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: Some(format!("corr-{command_id}")),
        issued_at: None,
        appointment_id: appointment_id.into(),
        patient_id: patient_id.into(),
        department_id: Some("1".into()),
        appointment_type_id: Some("82".into()),
        reason_id: None,
        booking_note: None,
        ignore_schedulable_permission: true,
        no_patient_case: false,
    }
}

/// A stand-alone claim (`POST /claims`) for one office visit.
pub fn standalone_claim(
    command_id: &str,
    patient_id: &str,
    service_date: chrono::NaiveDate,
) -> CreateClaim {
    CreateClaim {
        command_id: command_id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        appointment_id: None,
        patient_id: Some(patient_id.into()),
        department_id: Some("1".into()),
        supervising_provider_id: Some("71".into()),
        rendering_provider_id: None,
        service_date: Some(service_date.into()),
        primary_patient_insurance_id: None,
        charges: vec![ClaimCharge {
            procedure_code: "99213".into(),
            icd10_codes: vec!["Z0000".into()],
            units: None,
            unit_amount: None,
            line_note: None,
        }],
    }
}

/// The synthetic patient most tests book for ("Testa Testperson", born 1980-02-03); its id.
pub fn test_patient(sim: &RunningSim) -> String {
    sim.state.add_patient(
        PRACTICE,
        athena_sim::NewPatient::new(
            "Testa",
            "Testperson",
            chrono::NaiveDate::from_ymd_opt(1980, 2, 3).expect("date"),
        ),
    )
}

/// `n` fresh open slots (several dates and providers).
pub fn open_slots(sim: &RunningSim, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let base = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
    let times: Vec<String> = (0..96)
        .map(|i| format!("{:02}:{:02}", i / 4, (i % 4) * 15))
        .collect();
    let times: Vec<&str> = times.iter().map(String::as_str).collect();
    let mut day = 0;
    while out.len() < n {
        for provider in ["71", "72", "73", "74"] {
            let date = base + chrono::Duration::days(day);
            out.extend(
                sim.state
                    .add_open_slots(PRACTICE, "1", provider, date, &times),
            );
        }
        day += 1;
    }
    out.truncate(n);
    out
}

/// Ledger entries of the simulator by (operation, entity id).
pub fn sim_writes(sim: &RunningSim) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for e in sim.state.ledger() {
        *m.entry((e.operation.clone(), e.entity_id.clone()))
            .or_default() += 1;
    }
    m
}

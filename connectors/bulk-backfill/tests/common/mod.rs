//! Helpers shared by the backfill's integration tests: the simulator client, the run
//! environment on the local stack, seeded patients and reading the snapshot topics back.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{Stack, unique};
use athena_contracts::PatientChanged;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use bulk_backfill::Config;
use connector_core::avro::AvroCodec;
use connector_core::runtime::RunEnv;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use secrecy::SecretString;

/// The simulator's practice.
pub const PRACTICE: u64 = 195_900;

/// A client of `sim` whose own limiter allows `qps` (the simulator does not throttle).
pub fn athena_at(sim: &RunningSim, qps: f64) -> AthenaClient {
    let mut c = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().unwrap()),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    c.rate_limit.qps = qps;
    c.rate_limit.burst = 50;
    c.rate_limit.token_requests_per_minute = 60;
    // The simulator enforces scopes per route: `$export` and reads need a FHIR read scope per
    // type, the patient lookups the proprietary API.
    c.scopes = athena_client::scopes::with_fhir_reads(
        &[athena_client::scopes::MDP],
        &[athena_contracts::events::FHIR_RESOURCE_TYPES, &["Patient"]].concat(),
    );
    AthenaClient::new(c).unwrap()
}

/// A client of `sim` at 200 QPS.
pub fn athena(sim: &RunningSim) -> AthenaClient {
    athena_at(sim, 200.0)
}

/// A simulator whose export files hold at most `lines_per_file` lines, with `extra` synthetic
/// patients on top of the seeded ones.
pub async fn sim_with_patients(extra: usize, lines_per_file: usize) -> RunningSim {
    sim_with(
        SimConfig {
            export_max_lines: lines_per_file,
            ..SimConfig::default()
        },
        extra,
    )
    .await
}

/// A simulator started with `config`, with `extra` synthetic patients on top of the seeded ones.
pub async fn sim_with(config: SimConfig, extra: usize) -> RunningSim {
    let sim = RunningSim::start(config).await.unwrap();
    for i in 0..extra {
        sim.state.add_patient(
            PRACTICE,
            NewPatient::new(
                "Synth",
                &format!("Bulktest{i}"),
                chrono::NaiveDate::from_ymd_opt(
                    1960 + (i % 40) as i32,
                    1 + (i % 12) as u32,
                    1 + (i % 28) as u32,
                )
                .unwrap(),
            ),
        );
    }
    sim
}

/// The run environment on the local stack (schemas auto-registered).
pub fn env(stack: &Stack) -> RunEnv {
    let mut registry = stack.registry();
    registry.auto_register = true;
    RunEnv {
        kafka: stack.kafka(),
        registry,
    }
}

/// Messages in `topic` (sum of the partitions' high watermarks).
pub fn high_watermark(env: &RunEnv, topic: &str) -> i64 {
    let c: BaseConsumer = env.kafka.consumer_config(&unique("wm")).create().unwrap();
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

/// Creates the snapshot topics of `cfg` (patients, untyped resources, each typed type's).
pub async fn create_topics(stack: &Stack, cfg: &Config) {
    stack.create_topic(&cfg.patients_topic(), 2).await;
    stack.create_topic(&cfg.fhir_resources_topic(), 2).await;
    for ty in cfg.typed_types() {
        stack
            .create_topic(&cfg.typed_topic(ty).expect("typed"), 2)
            .await;
    }
}

/// Every `PatientChanged` on the patients topic of `cfg`.
pub async fn patient_events(stack: &Stack, env: &RunEnv, cfg: &Config) -> Vec<PatientChanged> {
    let codec = AvroCodec::new(env.registry.clone()).unwrap();
    let n = high_watermark(env, &cfg.patients_topic()) as usize;
    let mut out = Vec::with_capacity(n);
    for m in stack
        .consume(&cfg.patients_topic(), n, Duration::from_secs(60))
        .await
    {
        let ev: PatientChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        assert_eq!(
            connector_core::headers::get_str(m.headers().unwrap(), "event_id"),
            Some(ev.envelope.event_id.as_str()),
            "the event_id header matches the envelope"
        );
        // The CloudEvents binding: the writer schema of these very bytes.
        let h = m.headers().unwrap();
        let id = connector_core::headers::wire_schema_id(m.payload().unwrap()).unwrap();
        assert_eq!(
            connector_core::headers::get_str(h, "content-type"),
            Some("application/avro")
        );
        let schema = connector_core::headers::get_str(h, "ce_dataschema").unwrap_or_default();
        assert!(
            schema.ends_with(&format!("/schemas/ids/{id}")),
            "ce_dataschema {schema:?} names schema {id}"
        );
        out.push(ev);
    }
    out
}

//! PHI never leaves through the side channels: the real binary runs a realistic flow against the
//! simulator (changed-data source streaming synthetic patients and appointments, a write-back
//! sink filing a clinical document and booking, a poison command dead-lettered) with JSON logs at
//! debug level and a log line per closed span (so every span attribute is printed). None of the
//! synthetic names, birth dates, phone numbers or the document's content may appear in the logs,
//! in `/metrics`, or in the dead-letter headers. The captures are checked to be substantial so the
//! test cannot pass vacuously.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::BookAppointment;
use athena_contracts::commands::UploadClinicalDocument;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use chrono::NaiveDate;
use common::*;
use connector_core::avro::{AvroCodec, AvroRecord, SubjectStrategy};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

const FIRST: &str = "Zorbleqfirst";
const LAST: &str = "Quillonlast";
const PHONE: &str = "6175550143";
const DOC: &str = "Zorbleq discharge summary: synthetic findings";
const NOTE: &str = "Quillon booking note";

/// Whether `needle` occurs in `hay` as a whole token (not inside a longer word or number), so
/// short synthetic values cannot match unrelated text by accident.
fn contains_token(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Every PHI value the simulator holds (names, birth dates in athena's and ISO form, phones,
/// emails) plus the values this test wrote.
fn phi_values(sim: &RunningSim) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = [FIRST, LAST, PHONE, DOC, NOTE, "Zorbleq", "Quillon"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sim.state.with_practice(PRACTICE, |p| {
        for pat in p.patients.values() {
            for (k, v) in &pat.fields {
                let phi = matches!(
                    k.as_str(),
                    "firstname"
                        | "lastname"
                        | "middlename"
                        | "dob"
                        | "mobilephone"
                        | "homephone"
                        | "workphone"
                        | "email"
                        | "address1"
                        | "ssn"
                );
                if phi && v.len() >= 4 {
                    out.insert(v.clone());
                    if k == "dob"
                        && let Ok(d) = NaiveDate::parse_from_str(v, "%m/%d/%Y")
                    {
                        out.insert(d.format("%Y-%m-%d").to_string());
                    }
                }
            }
        }
    });
    out
}

async fn send<T: AvroRecord>(
    producer: &FutureProducer,
    codec: &AvroCodec,
    topic: &str,
    key: &str,
    value: &T,
) {
    let bytes = codec
        .encoder::<T>(topic)
        .await
        .unwrap()
        .encode(value)
        .unwrap();
    send_raw(producer, topic, key, &bytes).await;
}

async fn send_raw(producer: &FutureProducer, topic: &str, key: &str, bytes: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(bytes),
            Duration::from_secs(30),
        )
        .await
        .expect("produce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phi_in_logs_metrics_spans_or_dlq_headers() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let prefix = format!("{}.", unique("phi"));
    let names = SinkNames::new();
    for t in [&names.patients, &names.appointments, &names.billing] {
        stack.create_topic(t, 3).await;
    }
    let source = source_section("src", &prefix, "patients = {}\nappointments = {}");
    let config = base_config(
        &stack,
        &sim.base_url,
        "json",
        &format!("{source}\n{}", names.section("wb")),
    );
    let mut proc = Proc::start(
        &config,
        &[
            ("ATHENA_CONNECT__TELEMETRY__LOG_SPAN_EVENTS", "true"),
            (
                "ATHENA_CONNECT__TELEMETRY__LOG_LEVEL",
                "info,athena_client=trace,athena_connect=debug,connector_core=debug,\
                 changed_data_source=debug,write_back_sink=debug",
            ),
        ],
    );
    wait_state(&proc.admin, "src", "RUNNING", Duration::from_secs(60)).await;
    wait_state(&proc.admin, "wb", "RUNNING", Duration::from_secs(60)).await;
    // Seeded after the source subscribed, so the changes are queued on its feeds.
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            firstname: FIRST.into(),
            lastname: LAST.into(),
            dob: NaiveDate::from_ymd_opt(1961, 3, 17).unwrap(),
            mobilephone: Some(PHONE.into()),
            email: Some("zorbleq@example.invalid".into()),
            ..NewPatient::default()
        },
    );
    // Synthetic patients, appointments and updates (phones) from the simulator's generator.
    sim.state.generate(150);
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(45);
    let slots = sim
        .state
        .add_open_slots(PRACTICE, "1", "71", date, &["10:00", "10:15"]);

    let mut registry = stack.registry();
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    registry.auto_register = true;
    let codec = AvroCodec::new(registry).unwrap();
    let producer = stack.kafka().build_producer().unwrap();
    let doc = UploadClinicalDocument {
        command_id: "phi-doc".into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.clone(),
        department_id: "1".into(),
        document_subclass: "CLINICALDOCUMENT".into(),
        attachment: format!("%PDF-1.4\n% {DOC}\n%%EOF\n").into_bytes(),
        attachment_type: "PDF".into(),
        original_filename: None,
        document_type_id: None,
        autoclose: false,
        observation_date: None,
        provider_id: None,
        internal_note: Some(DOC.into()),
    };
    let key = format!("{PRACTICE}/{patient}");
    send(&producer, &codec, &names.patients, &key, &doc).await;
    let book = BookAppointment {
        command_id: "phi-book".into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        appointment_id: slots[0].clone(),
        patient_id: patient.clone(),
        department_id: Some("1".into()),
        appointment_type_id: Some("82".into()),
        reason_id: None,
        booking_note: Some(NOTE.into()),
        ignore_schedulable_permission: true,
        no_patient_case: false,
    };
    send(
        &producer,
        &codec,
        &names.appointments,
        &format!("{PRACTICE}/{}", slots[0]),
        &book,
    )
    .await;
    // A poison command whose bytes are patient data: it must be dead-lettered, and the
    // dead-letter headers (error message included) must not quote it.
    let poison = format!("{FIRST} {LAST} {PHONE} {DOC}");
    send_raw(&producer, &names.patients, &key, poison.as_bytes()).await;

    let kafka = stack.kafka();
    let results = read_topic(&kafka, &names.results, Duration::from_secs(90), |m| {
        has_key(m, "phi-doc") && has_key(m, "phi-book")
    })
    .await;
    assert!(
        has_key(&results, "phi-doc") && has_key(&results, "phi-book"),
        "commands were not answered:\n{}",
        proc.output()
    );
    let dlq = read_topic(
        &kafka,
        &format!("{}.dlq", names.patients),
        Duration::from_secs(60),
        |m| !m.is_empty(),
    )
    .await;
    assert_eq!(dlq.len(), 1, "the poison command was not dead-lettered");
    let events = read_topic(
        &kafka,
        &format!("{prefix}athena.patients.v1"),
        Duration::from_secs(90),
        |m| has_key(m, &key),
    )
    .await;
    assert!(
        has_key(&events, &key),
        "the seeded patient was not streamed"
    );

    let mut seen = Vec::new();
    let metrics = admin_call(&proc.admin, "GET", "/metrics", Some(ADMIN_TOKEN), &mut seen).await;
    assert_eq!(metrics.status, 200);
    let status = admin_call(
        &proc.admin,
        "GET",
        "/connectors?expand=status",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    proc.sigterm();
    assert_eq!(proc.wait_exit(Duration::from_secs(90)).await, 0);
    let logs = proc.output();

    let mut dlq_headers = String::new();
    if let Some(h) = dlq[0].headers() {
        for hd in h.iter() {
            dlq_headers.push_str(hd.key);
            dlq_headers.push('=');
            dlq_headers.push_str(&String::from_utf8_lossy(hd.value.unwrap_or_default()));
            dlq_headers.push('\n');
        }
    }

    // Not vacuous: the captures hold what they should.
    assert!(logs.lines().count() > 30, "too few log lines:\n{logs}");
    assert!(
        logs.contains("athena_request"),
        "no athena spans were logged"
    );
    assert!(
        logs.contains("\"connector\":\"wb\"") || logs.contains("connector"),
        "{logs}"
    );
    assert!(
        metrics
            .text
            .contains("athena_connect_source_records_produced_total")
    );
    assert!(metrics.text.contains("athena_connect_sink_commands_total"));
    assert!(dlq_headers.contains("__connect.errors"), "{dlq_headers}");
    // ...and the DLQ copy is byte for byte (so the check below is about headers, not luck).
    assert_eq!(dlq[0].payload(), Some(poison.as_bytes()));

    let phi = phi_values(&sim);
    eprintln!(
        "checked {} PHI values against {} log lines, {} metric bytes, {} DLQ header bytes",
        phi.len(),
        logs.lines().count(),
        metrics.text.len(),
        dlq_headers.len()
    );
    assert!(phi.len() > 20, "too few synthetic PHI values: {phi:?}");
    for (what, text) in [
        ("logs and span attributes", &logs),
        ("metrics", &metrics.text),
        ("admin status", &status.text),
        ("DLQ headers", &dlq_headers),
    ] {
        let leaked: Vec<&String> = phi.iter().filter(|v| contains_token(text, v)).collect();
        assert!(
            leaked.is_empty(),
            "PHI in {what}: {leaked:?}\n---\n{}",
            text.lines()
                .filter(|l| leaked.iter().any(|v| l.contains(v.as_str())))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

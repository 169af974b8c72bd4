//! The admin API of the real binary, with a write-back sink on the real broker: unauthenticated
//! requests get 401, pause stops consumption (a command produced while paused is not applied),
//! resume continues (it is), no answer ever contains a secret, and the W3C trace context of a
//! command continues into its result's headers.

mod common;

use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::BookAppointment;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use common::*;
use connector_core::avro::{AvroCodec, SubjectStrategy};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn book(command_id: &str, appointment_id: &str, patient_id: &str) -> BookAppointment {
    BookAppointment {
        command_id: command_id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
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

fn booked(sim: &RunningSim, appointment_id: &str) -> bool {
    sim.state
        .ledger()
        .iter()
        .any(|e| e.entity_id == appointment_id && e.operation.to_lowercase().contains("book"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_auth_and_no_secrets() {
    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let names = SinkNames::new();
    for t in [&names.patients, &names.appointments, &names.billing] {
        stack.create_topic(t, 3).await;
    }
    let config = base_config(&stack, &sim.base_url, "pretty", &names.section("wb"));
    let mut proc = Proc::start(&config, &[]);
    let admin = proc.admin.clone();
    let mut seen = Vec::new();

    // Authentication: everything but health and readiness needs the token.
    for (m, p) in [
        ("GET", "/connectors"),
        ("GET", "/connectors/wb/status"),
        ("PUT", "/connectors/wb/pause"),
        ("GET", "/connectors/wb/offsets"),
        ("GET", "/metrics"),
    ] {
        assert_eq!(
            admin_call(&admin, m, p, None, &mut seen).await.status,
            401,
            "{m} {p}"
        );
        let wrong = admin_call(&admin, m, p, Some("not-the-token-123456"), &mut seen).await;
        assert_eq!(wrong.status, 401, "{m} {p}");
    }
    assert_eq!(
        admin_call(&admin, "GET", "/healthz", None, &mut seen)
            .await
            .status,
        200
    );

    wait_state(&admin, "wb", "RUNNING", Duration::from_secs(60)).await;

    // `check` reaches all three dependencies and prints one line each.
    let (code, out) = cli(&["check"], &proc.config_path);
    assert_eq!(code, 0, "{out}");
    for line in ["ok    kafka", "ok    schema_registry", "ok    athena"] {
        assert!(out.contains(line), "{out}");
    }
    assert!(
        !out.contains(ATHENA_SECRET) && !out.contains(ADMIN_TOKEN),
        "{out}"
    );
    let a = admin_call(&admin, "GET", "/connectors", Some(ADMIN_TOKEN), &mut seen).await;
    assert_eq!((a.status, a.text.as_str()), (200, "[\"wb\"]"));

    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            firstname: "Admintest".into(),
            lastname: "Patient".into(),
            ..NewPatient::default()
        },
    );
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(40);
    let slots = sim
        .state
        .add_open_slots(PRACTICE, "1", "71", date, &["09:00", "09:15", "09:30"]);

    let mut registry = stack.registry();
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    registry.auto_register = true;
    let codec = AvroCodec::new(registry).unwrap();
    let encoder = codec
        .encoder::<BookAppointment>(&names.appointments)
        .await
        .unwrap();
    let producer = stack.kafka().build_producer().unwrap();
    let send = |cmd: BookAppointment| {
        let bytes = encoder.encode(&cmd).unwrap();
        let key = format!("{PRACTICE}/{}", cmd.appointment_id);
        let producer = producer.clone();
        let topic = names.appointments.clone();
        // The caller's trace: it must continue into the command's result.
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01").as_bytes()),
        });
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&bytes)
                        .headers(headers),
                    Duration::from_secs(30),
                )
                .await
                .expect("produce command");
        }
    };
    let kafka = stack.kafka();

    // Running: a command is applied and answered.
    send(book("cmd-1", &slots[0], &patient)).await;
    let r = read_topic(&kafka, &names.results, Duration::from_secs(90), |m| {
        has_key(m, "cmd-1")
    })
    .await;
    assert!(
        has_key(&r, "cmd-1"),
        "no result for cmd-1:\n{}",
        proc.output()
    );
    assert!(booked(&sim, &slots[0]));

    // Paused: a command produced now is neither applied nor answered.
    let a = admin_call(
        &admin,
        "PUT",
        "/connectors/wb/pause",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert_eq!(a.status, 202);
    wait_state(&admin, "wb", "PAUSED", Duration::from_secs(10)).await;
    // Pause is asynchronous, as in Kafka Connect: the sink's loop wakes on the change and pauses
    // its partitions; a message already fetched may still be handled. Give it ample time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(book("cmd-2", &slots[1], &patient)).await;
    let r = read_topic(&kafka, &names.results, Duration::from_secs(6), |m| {
        has_key(m, "cmd-2")
    })
    .await;
    assert!(!has_key(&r, "cmd-2"), "paused sink answered cmd-2");
    assert!(!booked(&sim, &slots[1]), "paused sink applied cmd-2");

    // Resumed: it continues with the waiting command.
    let a = admin_call(
        &admin,
        "PUT",
        "/connectors/wb/resume",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert_eq!(a.status, 202);
    let r = read_topic(&kafka, &names.results, Duration::from_secs(90), |m| {
        has_key(m, "cmd-2")
    })
    .await;
    assert!(
        has_key(&r, "cmd-2"),
        "no result for cmd-2 after resume:\n{}",
        proc.output()
    );
    assert!(booked(&sim, &slots[1]));

    // Everything else an operator looks at.
    for (m, p) in [
        ("GET", "/connectors?expand=status"),
        ("GET", "/connectors/wb"),
        ("GET", "/connectors/wb/status"),
        ("GET", "/connectors/wb/offsets"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("DELETE", "/connectors/wb/offsets"),
    ] {
        let a = admin_call(&admin, m, p, Some(ADMIN_TOKEN), &mut seen).await;
        match (m, p) {
            // Kafka Connect (KIP-875) answers 400 to a reset of a connector that is not
            // STOPPED (this test asserted our former 409).
            ("DELETE", _) => assert_eq!(a.status, 400, "reset while running: {}", a.text),
            (_, "/connectors/wb/offsets") => {
                assert_eq!(a.status, 200, "{}", a.text);
                assert!(a.text.contains(&names.appointments), "{}", a.text);
            }
            _ => assert_eq!(a.status, 200, "{m} {p}: {}", a.text),
        }
    }
    // The CLI refuses to reset the offsets of a sink whose consumer group still has members.
    let (code, out) = cli(
        &["offsets", "reset", "--connector", "wb"],
        &proc.config_path,
    );
    assert_eq!(code, 4, "{out}");
    let (code, out) = cli(&["offsets", "show", "--connector", "wb"], &proc.config_path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kafka_offset"), "{out}");
    let a = admin_call(
        &admin,
        "PUT",
        "/connectors/wb/stop",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text);
    let a = admin_call(
        &admin,
        "DELETE",
        "/connectors/wb/offsets",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert_eq!(a.status, 200, "reset while stopped: {}", a.text);
    let a = admin_call(
        &admin,
        "GET",
        "/connectors/wb/offsets",
        Some(ADMIN_TOKEN),
        &mut seen,
    )
    .await;
    assert_eq!(a.text, "{\"offsets\":[]}");

    let all = seen.join("\n");
    assert!(all.len() > 1000, "the answers were captured");
    for secret in [ADMIN_TOKEN, ATHENA_SECRET] {
        assert!(
            !all.contains(secret),
            "a response contains a secret:\n{all}"
        );
    }

    proc.sigterm();
    let code = proc.wait_exit(Duration::from_secs(60)).await;
    let out = proc.output();
    assert_eq!(code, 0, "{out}");
    for secret in [ADMIN_TOKEN, ATHENA_SECRET] {
        assert!(!out.contains(secret), "the log contains a secret:\n{out}");
    }
}

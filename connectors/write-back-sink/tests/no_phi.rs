//! No patient data in the sink's logs, span fields, results or dead-letter headers.
//!
//! Captures everything `write_back_sink` and `athena_client` emit at TRACE while the sink
//! creates, updates, books with a note, files a document, refuses a card payment, answers a
//! validation failure and dead-letters a poison message, all carrying distinctive synthetic
//! values, and proves none of them appear. The capture is checked to be non-empty so the test
//! cannot pass vacuously.

mod common;

use std::time::Duration;

use athena_connect_tests::{LogCapture, Stack};
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, Date};
use athena_sim::SimConfig;
use chrono::NaiveDate;
use common::*;
use rdkafka::message::{Headers, Message};
use tracing_subscriber::fmt::format::FmtSpan;

const FIRST: &str = "Zyxwfirst";
const LAST: &str = "Qwvlast";
const EMAIL: &str = "zyxwq@example.invalid";
const NOTE: &str = "Qwvnote chest pain";
const PAN: &str = "4111111111111111";

fn patient(id: &str, email: Option<&str>) -> CreatePatient {
    CreatePatient {
        command_id: id.into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        department_id: "1".into(),
        first_name: FIRST.into(),
        last_name: LAST.into(),
        dob: Date::from(NaiveDate::from_ymd_opt(1977, 7, 17).unwrap()),
        sex: None,
        email: email.map(str::to_owned),
        home_phone: None,
        mobile_phone: None,
        address1: None,
        city: None,
        state: None,
        zip: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_results_and_dead_letters_carry_no_phi() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "write_back_sink=trace,athena_client=trace",
        ))
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    // Global: the sink's work runs on spawned tasks on every runtime thread.
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");

    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let sink = start_sink(&stack, sink_config(&n), athena);
    let p = Producer::new(&stack);

    p.send(
        &n.patients,
        "195900/new",
        &patient("phi-create", Some(EMAIL)),
    )
    .await;
    // No contact field at all: athena refuses (validation), the result says why without values.
    p.send(&n.patients, "195900/new2", &patient("phi-invalid", None))
        .await;
    let slots = open_slots(&sim, 1);
    let other = sim.state.add_patient(
        PRACTICE,
        athena_sim::NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
        ),
    );
    let mut b = book("phi-book", &slots[0], &other);
    b.booking_note = Some(NOTE.into());
    p.send(&n.appointments, &format!("195900/{}", slots[0]), &b)
        .await;
    let card = RecordPayment {
        command_id: "phi-card".into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        patient_id: other.clone(),
        department_id: "1".into(),
        payment_method: "CARD".into(),
        check_number: None,
        card_number_last4: None,
        copay_amount: None,
        appointment_id: None,
        other_amount: Some("10.00".into()),
        post_date: None,
        card: Some(CardDetails {
            account_number: PAN.into(),
            expiration_month: "12".into(),
            expiration_year: "2030".into(),
            name_on_card: format!("{FIRST} {LAST}"),
            billing_address: "1 Qwvstreet".into(),
            billing_zip: "02139".into(),
            security_code: None,
        }),
    };
    p.send(&n.billing, &format!("195900/{other}"), &card).await;
    let poison = format!("not avro: {FIRST} {LAST} 07/17/1977");
    p.send_raw(&n.patients, "195900/poison", poison.as_bytes())
        .await;

    let msgs = read_until(&stack.kafka(), &n.results, 4, Duration::from_secs(60)).await;
    let mut texts = Vec::new();
    for m in &msgs {
        let r: CommandResult = p.codec.decode(m.payload().unwrap()).await.unwrap();
        texts.push(format!("{r:?}"));
    }
    assert_eq!(texts.len(), 4, "{texts:?}");
    let joined = texts.join("\n");
    assert!(
        joined.contains("VALIDATION"),
        "the refused create is in: {joined}"
    );
    assert!(joined.contains("CARD_PAYMENTS_DISABLED"), "{joined}");
    let dead = read_until(
        &stack.kafka(),
        &format!("{}.dlq", n.patients),
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(dead.len(), 1);
    let mut dlq_headers = String::new();
    if let Some(h) = dead[0].headers() {
        for x in h.iter().filter(|x| x.key.starts_with("__connect.errors")) {
            dlq_headers.push_str(&String::from_utf8_lossy(x.value.unwrap_or_default()));
            dlq_headers.push('\n');
        }
    }
    sink.stop().await;
    sim.shutdown().await;

    let logs = capture.text();
    assert!(
        logs.contains("Command finished"),
        "capture is not empty: {logs}"
    );
    assert!(logs.contains("phi-create"), "ids are logged");
    for (what, text) in [
        ("logs", &logs),
        ("results", &texts.join("\n")),
        ("dlq headers", &dlq_headers),
    ] {
        for phi in [
            FIRST,
            LAST,
            EMAIL,
            "Qwvnote",
            PAN,
            "07/17/1977",
            "1977-07-17",
            "Qwvstreet",
        ] {
            assert!(!text.contains(phi), "{what} contain {phi:?}: {text}");
        }
    }
}

//! Every command type against the simulator through the real broker and registry, and poison
//! messages to the dead-letter queue. Needs the local stack (`./dev up`); fails loudly without.

mod common;

use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus, Date, TimestampMillis};
use athena_sim::{NewPatient, SimConfig};
use chrono::NaiveDate;
use common::*;
use connector_core::avro::frame;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use write_back_sink::Config;

fn pid() -> String {
    PRACTICE.to_string()
}

fn d(y: i32, m: u32, day: u32) -> Date {
    NaiveDate::from_ymd_opt(y, m, day).unwrap().into()
}

async fn decode_all(
    codec: &connector_core::avro::AvroCodec,
    msgs: &[rdkafka::message::OwnedMessage],
) -> Vec<CommandResult> {
    let mut v = Vec::new();
    for m in msgs {
        v.push(
            codec
                .decode(m.payload().expect("payload"))
                .await
                .expect("result decodes"),
        );
    }
    v
}

fn last_by_id(all: &[CommandResult]) -> std::collections::HashMap<String, CommandResult> {
    all.iter()
        .map(|r| (r.command_id.clone(), r.clone()))
        .collect()
}

fn status_of(
    results: &std::collections::HashMap<String, CommandResult>,
    id: &str,
) -> CommandStatus {
    results
        .get(id)
        .unwrap_or_else(|| panic!("no result for {id}"))
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_type_is_applied_with_its_athena_ids() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let sink = start_sink(&stack, sink_config(&n), athena);
    let p = Producer::new(&stack);

    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    let slots = open_slots(&sim, 4);
    let yesterday = chrono::Utc::now().date_naive() - chrono::Duration::days(2);

    // Phase 1: independent commands.
    let create = CreatePatient {
        command_id: "c-create".into(),
        practice_id: pid(),
        correlation_id: Some("corr-1".into()),
        issued_at: Some(TimestampMillis::now()),
        department_id: "1".into(),
        first_name: "Sampla".into(),
        last_name: "Sampleton".into(),
        dob: d(1991, 4, 5),
        sex: Some("F".into()),
        email: Some("sampla@example.invalid".into()),
        home_phone: None,
        mobile_phone: None,
        address1: None,
        city: None,
        state: None,
        zip: Some("02139".into()),
    };
    p.send(&n.patients, "195900/new-1", &create).await;
    let update = UpdatePatient {
        command_id: "c-update".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.clone(),
        department_id: None,
        first_name: None,
        last_name: None,
        dob: None,
        sex: None,
        email: Some("new@example.invalid".into()),
        home_phone: None,
        mobile_phone: None,
        address1: None,
        city: Some("Boston".into()),
        state: None,
        zip: None,
        status: None,
    };
    p.send(&n.patients, &format!("195900/{patient}"), &update)
        .await;
    for (i, slot) in slots.iter().take(3).enumerate() {
        p.send(
            &n.appointments,
            &format!("195900/{slot}"),
            &book(&format!("c-book-{i}"), slot, &patient),
        )
        .await;
    }
    let doc = UploadClinicalDocument {
        command_id: "c-doc".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.clone(),
        department_id: "1".into(),
        document_subclass: "CLINICALDOCUMENT".into(),
        attachment: b"%PDF-1.4\n% synthetic test document\n%%EOF\n".to_vec(),
        attachment_type: "PDF".into(),
        original_filename: None,
        document_type_id: None,
        autoclose: false,
        observation_date: None,
        provider_id: None,
        internal_note: None,
    };
    p.send(&n.patients, &format!("195900/{patient}"), &doc)
        .await;
    let ins = AddInsurance {
        command_id: "c-ins".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.clone(),
        insurance_package_id: "100".into(),
        sequence_number: 1,
        insurance_id_number: Some("SYN123".into()),
        policyholder_first_name: Some("Testa".into()),
        policyholder_last_name: Some("Testperson".into()),
        policyholder_dob: Some(d(1980, 2, 3)),
        policyholder_sex: Some("F".into()),
        relationship_to_insured_id: Some("1".into()),
    };
    p.send(&n.patients, &format!("195900/{patient}"), &ins)
        .await;
    let pay = RecordPayment {
        command_id: "c-pay".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.clone(),
        department_id: "1".into(),
        payment_method: "CASH".into(),
        check_number: None,
        card_number_last4: None,
        copay_amount: None,
        appointment_id: None,
        other_amount: Some("25.00".into()),
        post_date: None,
        card: None,
    };
    p.send(&n.billing, &format!("195900/{patient}"), &pay).await;
    let card_pay = RecordPayment {
        command_id: "c-card".into(),
        other_amount: Some("30.00".into()),
        card: Some(CardDetails {
            account_number: "4111111111111111".into(),
            expiration_month: "12".into(),
            expiration_year: "2030".into(),
            name_on_card: "Testa Testperson".into(),
            billing_address: "1 Test St".into(),
            billing_zip: "02139".into(),
            security_code: None,
        }),
        ..pay.clone()
    };
    p.send(&n.billing, &format!("195900/{patient}"), &card_pay)
        .await;
    let mut claim = standalone_claim("c-claim", &patient, yesterday);
    claim.charges[0].units = Some("1".into());
    p.send(&n.billing, &format!("195900/{patient}"), &claim)
        .await;

    let msgs = read_until(&stack.kafka(), &n.results, 10, Duration::from_secs(90)).await;
    let r = results_by_id(&p.codec, &msgs).await;
    assert_eq!(r.len(), 10, "results: {:?}", r.keys());
    for id in [
        "c-create", "c-update", "c-book-0", "c-book-1", "c-book-2", "c-doc", "c-ins", "c-pay",
        "c-claim",
    ] {
        assert_eq!(
            status_of(&r, id),
            CommandStatus::Applied,
            "{id}: {:?}",
            r[id]
        );
    }
    let new_patient = &r["c-create"].athena_ids["patient_id"];
    assert!(!new_patient.is_empty());
    assert_eq!(r["c-create"].correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(r["c-book-0"].athena_ids["appointment_id"], slots[0]);
    assert!(!r["c-doc"].athena_ids["clinical_document_id"].is_empty());
    assert!(!r["c-ins"].athena_ids["insurance_id"].is_empty());
    assert!(!r["c-claim"].athena_ids["claim_id"].is_empty());
    assert!(!r["c-pay"].athena_ids["payment_batch_id"].is_empty());
    let card = &r["c-card"];
    assert_eq!(card.status, CommandStatus::Rejected);
    assert_eq!(card.error.as_ref().unwrap().code, "CARD_PAYMENTS_DISABLED");
    assert_eq!(card.attempts, 0);

    // Phase 2: commands on what phase 1 created.
    let checkin = CheckInAppointment {
        command_id: "c-checkin".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: slots[0].clone(),
        patient_id: Some(patient.clone()),
    };
    p.send(&n.appointments, &format!("195900/{}", slots[0]), &checkin)
        .await;
    let cancel = CancelAppointment {
        command_id: "c-cancel".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: slots[1].clone(),
        patient_id: patient.clone(),
        cancel_reason_id: None,
        cancellation_reason: None,
    };
    p.send(&n.appointments, &format!("195900/{}", slots[1]), &cancel)
        .await;
    let resched = RescheduleAppointment {
        command_id: "c-resched".into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: slots[2].clone(),
        new_appointment_id: slots[3].clone(),
        patient_id: patient.clone(),
        cancel_reason_id: None,
        reason_id: None,
        reschedule_reason: None,
    };
    p.send(&n.appointments, &format!("195900/{}", slots[2]), &resched)
        .await;
    // Same slot booked by another command: the slot is ours already -> DUPLICATE? No: a new
    // command id for another patient is REJECTED (slot taken).
    let other = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testo",
            "Sandboxtest",
            NaiveDate::from_ymd_opt(1975, 1, 1).unwrap(),
        ),
    );
    p.send(
        &n.appointments,
        &format!("195900/{}", slots[0]),
        &book("c-book-taken", &slots[0], &other),
    )
    .await;
    // A repeated command id: answered from the ledger without calling athena.
    p.send(&n.patients, "195900/new-1", &create).await;

    let all = decode_all(
        &p.codec,
        &stack.consume(&n.results, 15, Duration::from_secs(90)).await,
    )
    .await;
    let r2 = last_by_id(&all);
    for id in ["c-checkin", "c-cancel", "c-resched"] {
        assert_eq!(
            status_of(&r2, id),
            CommandStatus::Applied,
            "{id}: {:?}",
            r2[id]
        );
    }
    assert_eq!(r2["c-resched"].athena_ids["appointment_id"], slots[3]);
    let taken = &r2["c-book-taken"];
    assert_eq!(taken.status, CommandStatus::Rejected, "{taken:?}");
    assert_eq!(taken.error.as_ref().unwrap().code, "SLOT_TAKEN");
    let creates: Vec<&CommandResult> = all.iter().filter(|r| r.command_id == "c-create").collect();
    assert_eq!(
        creates.len(),
        2,
        "the original and the repeated command each get one result"
    );
    let dup = creates
        .iter()
        .find(|r| r.status == CommandStatus::Duplicate)
        .expect("the repeat is answered DUPLICATE");
    assert_eq!(dup.attempts, 0);
    assert_eq!(&dup.athena_ids["patient_id"], new_patient);

    // Phase 3: the appointment-based claim after the check-in.
    let appt_claim = CreateClaim {
        command_id: "c-appt-claim".into(),
        appointment_id: Some(slots[0].clone()),
        service_date: None,
        ..claim.clone()
    };
    p.send(
        &n.appointments,
        &format!("195900/{}", slots[0]),
        &appt_claim,
    )
    .await;
    let all = decode_all(
        &p.codec,
        &stack.consume(&n.results, 16, Duration::from_secs(60)).await,
    )
    .await;
    let r3 = last_by_id(&all);
    let claim_result = &r3["c-appt-claim"];
    assert_eq!(
        claim_result.status,
        CommandStatus::Applied,
        "{claim_result:?}"
    );
    assert!(!claim_result.athena_ids["claim_id"].is_empty());
    for id in r3.keys().filter(|k| *k != "c-create") {
        assert_eq!(
            all.iter().filter(|r| &r.command_id == id).count(),
            1,
            "one result for {id}"
        );
    }

    // athena saw each write once.
    let writes = sim_writes(&sim);
    let count = |op: &str| {
        writes
            .iter()
            .filter(|((o, _), _)| o == op)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert_eq!(count("CreatePatient"), 1, "{writes:?}");
    assert_eq!(count("UpdatePatient"), 1);
    assert_eq!(count("BookAppointment"), 3);
    assert_eq!(count("CancelAppointment"), 1);
    assert_eq!(count("RescheduleAppointment"), 1);
    assert_eq!(count("CheckIn"), 1);
    assert_eq!(count("CreateClaim"), 1);
    assert_eq!(count("CreateAppointmentClaim"), 1);
    assert_eq!(count("RecordPayment"), 1);
    assert_eq!(count("CollectPayment"), 0);
    assert_eq!(count("UploadClinicalDocument"), 1);
    assert_eq!(count("AddInsurance"), 1);

    sink.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dlq_byte_for_byte_and_the_partition_moves_on() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    // One partition, so the valid commands sit behind the poison on the same partition.
    for t in [&n.patients, &n.appointments, &n.billing] {
        stack.create_topic(t, 1).await;
    }
    let sink = start_sink(&stack, sink_config(&n), athena);
    let p = Producer::new(&stack);
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient::new(
            "Testa",
            "Testperson",
            NaiveDate::from_ymd_opt(1980, 2, 3).unwrap(),
        ),
    );
    let slots = open_slots(&sim, 2);

    let garbage = b"\x07not avro at all, \"quoted\" 1234567".to_vec();
    let unknown_id = frame(987_654_321, b"\x02ab");
    // A valid Avro record of the wrong type: a CommandResult on a command topic.
    let wrong = CommandResult {
        command_id: "x".into(),
        command_type: "BookAppointment".into(),
        practice_id: pid(),
        correlation_id: None,
        status: CommandStatus::Applied,
        athena_ids: Default::default(),
        error: None,
        attempts: 1,
        received_at: TimestampMillis(1),
        completed_at: TimestampMillis(2),
    };
    let wrong = p.encode(&n.appointments, &wrong).await;
    let poison = [
        ("k-garbage", garbage),
        ("k-unknown", unknown_id),
        ("k-wrong", wrong),
    ];

    p.send(
        &n.appointments,
        "195900/a",
        &book("c-before", &slots[0], &patient),
    )
    .await;
    for (key, bytes) in &poison {
        let headers = OwnedHeaders::new().insert(Header {
            key: "x-origin",
            value: Some("test".as_bytes()),
        });
        p.producer
            .send(
                FutureRecord::to(&n.appointments)
                    .key(*key)
                    .payload(&bytes[..])
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .expect("produce poison");
    }
    p.send(
        &n.appointments,
        "195900/b",
        &book("c-after", &slots[1], &patient),
    )
    .await;

    let dlq_topic = format!("{}.dlq", n.appointments);
    let dead = read_until(&stack.kafka(), &dlq_topic, 3, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 3, "three dead letters");
    for (key, bytes) in &poison {
        let m = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("dead letter {key}"));
        assert_eq!(m.payload(), Some(&bytes[..]), "{key}: value byte for byte");
        let h = m.headers().expect("headers");
        let get = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(
            get("x-origin").as_deref(),
            Some("test"),
            "original header kept"
        );
        assert_eq!(
            get("__connect.errors.topic").as_deref(),
            Some(n.appointments.as_str())
        );
        assert_eq!(
            get("__connect.errors.stage").as_deref(),
            Some("VALUE_CONVERTER")
        );
        assert!(get("__connect.errors.offset").is_some());
        let msg = get("__connect.errors.exception.message").unwrap_or_default();
        assert!(
            !msg.contains("quoted") && !msg.contains("1234567"),
            "redacted: {msg}"
        );
    }
    let msgs = read_until(&stack.kafka(), &n.results, 2, Duration::from_secs(60)).await;
    let r = results_by_id(&p.codec, &msgs).await;
    assert_eq!(status_of(&r, "c-before"), CommandStatus::Applied);
    assert_eq!(status_of(&r, "c-after"), CommandStatus::Applied);

    sink.stop().await;
    sim.shutdown().await;
}

/// A dead letter that cannot be written (here: the DLQ topic refuses records that large) is
/// retried a bounded number of times, then the sink stops with an error naming the message;
/// the message's offset is not committed, so nothing after it is published and, once the DLQ
/// accepts it, a restart dead-letters it and answers every command exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_stops_the_sink_without_committing_its_offset() {
    use rdkafka::admin::{
        AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };

    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics_with(&stack, &n, 1).await;
    let dlq_topic = format!("{}.dlq", n.appointments);
    let admin = stack.kafka().build_admin().expect("admin");
    let opts = AdminOptions::new();
    let small =
        NewTopic::new(&dlq_topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "512");
    for r in admin
        .create_topics([&small], &opts)
        .await
        .expect("create dlq")
    {
        r.expect("dlq topic created");
    }

    let p = Producer::new(&stack);
    let patient = test_patient(&sim);
    let slots = open_slots(&sim, 2);
    p.send(
        &n.appointments,
        "195900/a",
        &book("c-before", &slots[0], &patient),
    )
    .await;
    // Incompressible (the producer compresses with lz4), and not Confluent-framed.
    let mut poison = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::rng(), &mut poison[..]);
    poison[0] = 7;
    p.send_raw(&n.appointments, "k-poison", &poison).await;
    p.send(
        &n.appointments,
        "195900/b",
        &book("c-after", &slots[1], &patient),
    )
    .await;

    let config = Config {
        dlq_retry_timeout: Duration::from_secs(3),
        ..sink_config(&n)
    };
    let sink = start_sink(&stack, config, athena.clone());
    let ended = tokio::time::timeout(Duration::from_secs(60), sink.join)
        .await
        .expect("the sink stops within 60 s")
        .expect("sink task");
    let err = ended.expect_err("the sink fails");
    assert!(
        matches!(
            &err,
            write_back_sink::Error::DeadLetter { topic, offset: 1, .. } if *topic == n.appointments
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not committed"), "{err}");
    // Only the command before the poison has a (committed) result.
    let msgs = drain_more(&stack.kafka(), &n.results, 1, Duration::from_secs(5)).await;
    let r = results_by_id(&p.codec, &msgs).await;
    assert_eq!(r.len(), 1, "{:?}", r.keys().collect::<Vec<_>>());
    assert_eq!(status_of(&r, "c-before"), CommandStatus::Applied);

    // The DLQ is fixed; a restart reads the poison again and moves on.
    let fix =
        AlterConfig::new(ResourceSpecifier::Topic(&dlq_topic)).set("max.message.bytes", "1048588");
    for r in admin.alter_configs([&fix], &opts).await.expect("alter dlq") {
        r.expect("dlq config altered");
    }
    let sink = start_sink(&stack, sink_config(&n), athena);
    let dead = read_until(&stack.kafka(), &dlq_topic, 1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload(), Some(&poison[..]));
    let msgs = read_until(&stack.kafka(), &n.results, 2, Duration::from_secs(60)).await;
    let msgs = drain_more(
        &stack.kafka(),
        &n.results,
        msgs.len(),
        Duration::from_secs(3),
    )
    .await;
    let r = results_by_id(&p.codec, &msgs).await;
    assert_eq!(status_of(&r, "c-before"), CommandStatus::Applied);
    assert_eq!(status_of(&r, "c-after"), CommandStatus::Applied);
    let writes = sim_writes(&sim);
    for slot in &slots {
        let n = writes
            .iter()
            .filter(|((_, id), _)| id == slot)
            .map(|(_, n)| *n)
            .sum::<usize>();
        assert_eq!(n, 1, "slot {slot} written once");
    }
    sink.stop().await;
    sim.shutdown().await;
}

//! The appointment lifecycle, insurance changes and C-CDA uploads (issue 14) end to end through
//! the real broker and registry against the simulator: each command applied with its athena ids
//! and the state it asked for, and a wrong variant of each (validation failure or wrong state)
//! answered REJECTED with athena's reason, free of PHI. Needs the local stack (`./dev up`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use athena_client::api::appointments::{
    BookAppointment as BookReq, CancelAppointment as CancelReq,
};
use athena_connect_tests::Stack;
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::SimConfig;
use common::lifecycle::{add_insurance, check_in, insurance_fields};
use common::*;

const CCDA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:sdtc="urn:hl7-org:sdtc"><realmCode code="US"/><title>Synthetic care summary</title></ClinicalDocument>"#;
const NOTE: &str = "Synthetic note: bring the referral letter";

fn pid() -> String {
    PRACTICE.to_string()
}

fn update(id: &str, appt: &str) -> UpdateAppointment {
    UpdateAppointment {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: Some(format!("corr-{id}")),
        issued_at: None,
        appointment_id: appt.into(),
        patient_id: None,
        appointment_type_id: Some("2".into()),
        department_id: None,
        provider_id: Some("72".into()),
        supervising_provider_id: Some("73".into()),
    }
}

fn note(id: &str, appt: &str) -> AddAppointmentNote {
    AddAppointmentNote {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: appt.into(),
        note_text: NOTE.into(),
        display_on_schedule: true,
        patient_id: None,
    }
}

fn checkout(id: &str, appt: &str) -> CheckOutAppointment {
    CheckOutAppointment {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: appt.into(),
        patient_id: None,
    }
}

fn freeze(id: &str, appt: &str) -> FreezeAppointment {
    FreezeAppointment {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: appt.into(),
    }
}

fn unfreeze(id: &str, appt: &str) -> UnfreezeAppointment {
    UnfreezeAppointment {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        appointment_id: appt.into(),
    }
}

fn ins_update(id: &str, patient: &str, ins: &str, seq: Option<i32>) -> UpdateInsurance {
    UpdateInsurance {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.into(),
        insurance_id: ins.into(),
        insurance_package_id: None,
        sequence_number: seq,
        insurance_id_number: Some("SYNCHANGED1".into()),
        policyholder_first_name: None,
        policyholder_last_name: None,
        policyholder_dob: None,
        policyholder_sex: None,
        relationship_to_insured_id: None,
    }
}

fn ins_remove(id: &str, patient: &str, ins: &str) -> RemoveInsurance {
    RemoveInsurance {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.into(),
        insurance_id: ins.into(),
    }
}

fn upload(id: &str, patient: &str, ty: &str, bytes: &[u8]) -> UploadClinicalDocument {
    UploadClinicalDocument {
        command_id: id.into(),
        practice_id: pid(),
        correlation_id: None,
        issued_at: None,
        patient_id: patient.into(),
        department_id: "1".into(),
        document_subclass: "CLINICALDOCUMENT".into(),
        attachment: bytes.to_vec(),
        attachment_type: ty.into(),
        original_filename: Some(format!("summary-{id}")),
        document_type_id: None,
        autoclose: false,
        observation_date: None,
        provider_id: None,
        internal_note: None,
    }
}

fn rejected<'a>(
    results: &'a HashMap<String, CommandResult>,
    id: &str,
    code: &str,
    says: &str,
) -> &'a CommandResult {
    let r = &results[id];
    assert_eq!(r.status, CommandStatus::Rejected, "{r:?}");
    let e = r.error.as_ref().expect("a reason");
    assert_eq!(e.code, code, "{r:?}");
    assert!(
        e.message.contains(says),
        "{id}: {:?} does not say {says:?}",
        e.message
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_insurance_and_ccda_commands_apply_and_wrong_ones_are_rejected() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);
    let practice = athena.practice(PRACTICE);

    // State the commands need, made through athena's API: A checked in, B booked, C and E open,
    // D cancelled; patient `pat` with one primary package, patient `other` with a primary and a
    // secondary.
    let pat = test_patient(&sim);
    let slots = open_slots(&sim, 5);
    let (a, b, c, d, e) = (&slots[0], &slots[1], &slots[2], &slots[3], &slots[4]);
    check_in(&athena, a, &pat).await;
    let booking = BookReq {
        patient_id: pat.clone(),
        appointment_type_id: Some("82".into()),
        ignore_schedulable_permission: true,
        ..Default::default()
    };
    for s in [b, d] {
        practice.book_appointment(s, &booking).await.expect("book");
    }
    let cancel = CancelReq {
        patient_id: pat.clone(),
        ..Default::default()
    };
    practice
        .cancel_appointment(d, &cancel)
        .await
        .expect("cancel");
    let ins = add_insurance(&athena, &pat, &insurance_fields(1)).await;
    let other = test_patient(&sim);
    let primary = add_insurance(&athena, &other, &insurance_fields(2)).await;
    let mut secondary = insurance_fields(3);
    secondary.sequence_number = Some(2);
    add_insurance(&athena, &other, &secondary).await;

    let sink = start_sink(&stack, sink_config(&n), athena.clone());
    let ap = &n.appointments;
    let key = |s: &str| format!("195900/{s}");
    // Applied: one chain per key, in the order athena allows.
    p.send(ap, &key(a), &update("ok-update", a)).await;
    p.send(ap, &key(a), &note("ok-note", a)).await;
    p.send(ap, &key(a), &checkout("ok-checkout", a)).await;
    p.send(ap, &key(c), &freeze("ok-freeze", c)).await;
    p.send(ap, &key(c), &unfreeze("ok-unfreeze", c)).await;
    p.send(
        &n.patients,
        &key(&pat),
        &ins_update("ok-insupdate", &pat, &ins, None),
    )
    .await;
    p.send(
        &n.patients,
        &key(&pat),
        &ins_remove("ok-insremove", &pat, &ins),
    )
    .await;
    p.send(
        &n.patients,
        &key(&pat),
        &upload("ok-ccda", &pat, "XML", CCDA.as_bytes()),
    )
    .await;
    // Rejected: a wrong state or a failed validation each.
    p.send(ap, &key(d), &update("no-update", d)).await;
    p.send(ap, &key(d), &note("no-note", d)).await;
    p.send(ap, &key(b), &checkout("no-checkout", b)).await;
    p.send(ap, &key(b), &freeze("no-freeze", b)).await;
    p.send(ap, &key(b), &unfreeze("no-unfreeze", b)).await;
    // Releasing a slot nobody froze: athena refuses, the read-back finds it as asked.
    p.send(ap, &key(e), &unfreeze("dup-unfreeze", e)).await;
    let mut empty = update("no-update-empty", b);
    (
        empty.appointment_type_id,
        empty.provider_id,
        empty.supervising_provider_id,
    ) = (None, None, None);
    p.send(ap, &key(b), &empty).await;
    p.send(
        &n.patients,
        &key(&other),
        &ins_update("no-insupdate", &other, &primary, Some(3)),
    )
    .await;
    p.send(
        &n.patients,
        &key(&other),
        &ins_remove("no-insremove", &other, &primary),
    )
    .await;
    p.send(
        &n.patients,
        &key(&other),
        &ins_remove("no-insremove-unknown", &other, "999999"),
    )
    .await;
    p.send(
        &n.patients,
        &key(&pat),
        &upload("no-ccda-pdf", &pat, "XML", b"%PDF-1.7 synthetic"),
    )
    .await;
    p.send(
        &n.patients,
        &key(&pat),
        &upload("no-pdf-ccda", &pat, "PDF", CCDA.as_bytes()),
    )
    .await;

    let total = 20;
    let msgs = read_until(&stack.kafka(), &n.results, total, Duration::from_secs(60)).await;
    let results = results_by_id(&p.codec, &msgs).await;
    assert_eq!(
        results.len(),
        total,
        "{:?}",
        results.keys().collect::<Vec<_>>()
    );
    sink.stop().await;

    // Applied, with athena's ids, and athena holds what was asked.
    for id in [
        "ok-update",
        "ok-note",
        "ok-checkout",
        "ok-freeze",
        "ok-unfreeze",
        "ok-insupdate",
        "ok-insremove",
        "ok-ccda",
    ] {
        assert_eq!(
            results[id].status,
            CommandStatus::Applied,
            "{:?}",
            results[id]
        );
    }
    assert_eq!(
        results["ok-update"].correlation_id.as_deref(),
        Some("corr-ok-update")
    );
    for id in [
        "ok-update",
        "ok-note",
        "ok-checkout",
        "ok-freeze",
        "ok-unfreeze",
    ] {
        let want = if id.ends_with("freeze") { c } else { a };
        assert_eq!(
            results[id].athena_ids.get("appointment_id"),
            Some(want),
            "{id}"
        );
    }
    let after = practice.get_appointment(a).await.unwrap();
    assert_eq!(after.appointmentstatus.as_deref(), Some("3"), "checked out");
    assert_eq!(after.providerid.as_deref(), Some("72"));
    assert_eq!(after.appointmenttypeid.as_deref(), Some("2"));
    assert_eq!(after.raw["supervisingproviderid"], "73");
    let notes = practice.appointment_notes(a).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        results["ok-note"]
            .athena_ids
            .get("appointment_note_id")
            .map(String::as_str),
        notes[0]["noteid"].as_str(),
        "the note id athena gave"
    );
    let slot_c = practice.get_appointment(c).await.unwrap();
    assert!(
        slot_c.raw.get("frozenyn").is_none(),
        "unfrozen again: {:?}",
        slot_c.raw
    );
    assert_eq!(
        results["ok-insupdate"].athena_ids.get("insurance_id"),
        Some(&ins)
    );
    assert!(
        practice
            .insurances(&pat)
            .await
            .unwrap()
            .iter()
            .all(|i| i.insuranceid.as_deref() != Some(ins.as_str())),
        "removed"
    );
    let docs = practice.clinical_documents(&pat).await.unwrap();
    let ccda_id = results["ok-ccda"]
        .athena_ids
        .get("clinical_document_id")
        .expect("document id");
    assert!(
        docs.iter()
            .any(|d| d["clinicaldocumentid"].as_str() == Some(ccda_id.as_str())),
        "{docs:?}"
    );
    let ledger = sim_writes(&sim);
    for (op, entity) in [
        ("UpdateAppointment", a),
        ("AddAppointmentNote", a),
        ("CheckOutAppointment", a),
        ("FreezeAppointment", c),
        ("UnfreezeAppointment", c),
        ("UpdateInsurance", &ins),
        ("RemoveInsurance", &ins),
    ] {
        assert_eq!(
            ledger.get(&(op.to_string(), entity.clone())),
            Some(&1),
            "{op} {entity}"
        );
    }

    // Rejected with athena's reason (or the sink's own check, before any call).
    rejected(
        &results,
        "no-update",
        "BUSINESS_RULE",
        "Only a booked or checked-in appointment",
    );
    rejected(
        &results,
        "no-note",
        "BUSINESS_RULE",
        "cancelled appointment",
    );
    rejected(
        &results,
        "no-checkout",
        "BUSINESS_RULE",
        "must be checked in",
    );
    rejected(
        &results,
        "no-freeze",
        "BUSINESS_RULE",
        "Only an open appointment slot",
    );
    rejected(
        &results,
        "no-unfreeze",
        "BUSINESS_RULE",
        "Only an open appointment slot",
    );
    assert_eq!(
        results["dup-unfreeze"].status,
        CommandStatus::Duplicate,
        "{:?}",
        results["dup-unfreeze"]
    );
    rejected(
        &results,
        "no-update-empty",
        "INVALID_COMMAND",
        "sets none of",
    );
    rejected(&results, "no-insupdate", "VALIDATION", "sequencenumber");
    rejected(
        &results,
        "no-insremove",
        "BUSINESS_RULE",
        "secondary insurance exists",
    );
    rejected(
        &results,
        "no-insremove-unknown",
        "NOT_FOUND",
        "insurance does not exist",
    );
    rejected(&results, "no-ccda-pdf", "INVALID_COMMAND", "is not XML");
    rejected(&results, "no-pdf-ccda", "INVALID_COMMAND", "%PDF-");
    // Nothing of a rejected command reached athena's records...
    for (op, entity) in [
        ("UpdateAppointment", d),
        ("AddAppointmentNote", d),
        ("CheckOutAppointment", b),
        ("FreezeAppointment", b),
        ("UnfreezeAppointment", b),
        ("UnfreezeAppointment", e),
        ("UpdateAppointment", b),
        ("UpdateInsurance", &primary),
        ("RemoveInsurance", &primary),
    ] {
        assert_eq!(
            ledger.get(&(op.to_string(), entity.clone())),
            None,
            "{op} {entity}"
        );
    }
    assert_eq!(
        practice.clinical_documents(&pat).await.unwrap().len(),
        1,
        "only the C-CDA filed"
    );
    // ...and no reason carries PHI: names, birth date, member ids, the note, the document.
    let phi = [
        "Testa",
        "Testperson",
        "1980",
        "SYN",
        NOTE,
        "Synthetic care summary",
    ];
    for r in results
        .values()
        .filter(|r| r.status == CommandStatus::Rejected)
    {
        let text = format!("{:?}", r.error);
        for v in phi {
            assert!(!text.contains(v), "{}: {text} contains {v}", r.command_id);
        }
    }
    sim.shutdown().await;
}

/// The read side closes the loop: commands applied by the sink come back as the matching events
/// of the changed-data source (UpdateAppointment → `UpdateAppointment` row → AppointmentChanged
/// with the new provider; CheckOutAppointment → `CheckOut` row with status 3; FreezeAppointment →
/// `FreezeAppointment` row with the slot frozen; UpdateInsurance → the patient's `UpdatePatient`
/// row → PatientChanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_commands_come_back_as_changed_data_events() {
    use athena_connect_tests::unique;
    use athena_contracts::{AppointmentChanged, PatientChanged};
    use rdkafka::message::Message;

    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);
    let pat = test_patient(&sim);
    let slots = open_slots(&sim, 2);
    let (a, c) = (&slots[0], &slots[1]);
    check_in(&athena, a, &pat).await;
    let ins = add_insurance(&athena, &pat, &insurance_fields(1)).await;

    // The changed-data source on the appointments and patients feeds.
    let prefix = unique("loop");
    let toml = format!(
        "practices = [\"{PRACTICE}\"]\ntopic_prefix = \"{prefix}.\"\nstate_topic = \"{prefix}.state\"\n\
         topic_partitions = 1\npoll_interval = \"100ms\"\nmax_poll_interval = \"400ms\"\n\
         [feeds.appointments]\n[feeds.patients]\n"
    );
    let config: changed_data_source::Config =
        connector_core::config::load_str(&toml, &Default::default(), "X").expect("source config");
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = connector_core::runtime::RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let (control, handle) = connector_core::runtime::task("loop", changed_data_source::KIND);
    let runner = {
        let (config, env, athena) = (config.clone(), env.clone(), athena.clone());
        tokio::spawn(async move {
            changed_data_source::run("loop", &config, &env, &athena, control).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !sim
        .state
        .with_practice(PRACTICE, |pr| {
            // Active, not merely requested: athena records no row for a pending subscription.
            ["appointments", "patients"]
                .iter()
                .all(|f| pr.feeds.get(f).is_some_and(|s| s.active.is_some()))
        })
        .unwrap_or(false)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sink = start_sink(&stack, sink_config(&n), athena.clone());
    let ap = &n.appointments;
    p.send(ap, &format!("195900/{a}"), &update("loop-update", a))
        .await;
    p.send(ap, &format!("195900/{a}"), &checkout("loop-checkout", a))
        .await;
    p.send(ap, &format!("195900/{c}"), &freeze("loop-freeze", c))
        .await;
    p.send(
        &n.patients,
        &format!("195900/{pat}"),
        &ins_update("loop-ins", &pat, &ins, None),
    )
    .await;
    let msgs = read_until(&stack.kafka(), &n.results, 4, Duration::from_secs(60)).await;
    let results = results_by_id(&p.codec, &msgs).await;
    assert!(
        results.values().all(|r| r.status == CommandStatus::Applied),
        "{results:?}"
    );
    sink.stop().await;

    // Read the source's topics (from the start, every partition) until each write's event is
    // there.
    let codec = stack.codec();
    let (appt_topic, patient_topic) = (
        config.topic(athena_client::api::changed::Feed::Appointments),
        config.topic(athena_client::api::changed::Feed::Patients),
    );
    let mut want: std::collections::BTreeSet<&str> = [
        "UpdateAppointment",
        "CheckOut",
        "FreezeAppointment",
        "UpdatePatient",
    ]
    .into();
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never seen: {want:?}; seen: {seen:?}; source {:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        seen.clear();
        for m in read_topic_to_end(&stack, &appt_topic) {
            let e: AppointmentChanged = codec
                .decode(m.payload().expect("payload"))
                .await
                .expect("AppointmentChanged");
            let id = e.payload.appointment_id.as_str();
            let status = e.payload.status.as_deref();
            seen.push(format!("{id} {status:?}"));
            // The feed's rows carry the snapshot, not athena's event name, and a poll may see
            // only an entity's latest row: tell the writes apart by what each changed.
            if id == a && e.payload.provider_id.as_deref() == Some("72") {
                want.remove("UpdateAppointment");
            }
            if id == a && status == Some("3") {
                want.remove("CheckOut");
            }
            let original = e.original.as_deref().unwrap_or_default();
            if id == c && original.contains("\"frozenyn\":\"Y\"") {
                want.remove("FreezeAppointment");
            }
        }
        for m in read_topic_to_end(&stack, &patient_topic) {
            let e: PatientChanged = codec
                .decode(m.payload().expect("payload"))
                .await
                .expect("PatientChanged");
            // The patient existed before the source subscribed: its only row is the insurance
            // change.
            if e.payload.patient_id == pat {
                want.remove("UpdatePatient");
            }
        }
    }
    handle.shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("source stops")
        .expect("no panic");
    assert!(stopped.is_ok(), "{stopped:?}");
    sim.shutdown().await;
}

/// Every message on `topic` from the start of each partition to its current end (none when the
/// topic does not exist yet).
fn read_topic_to_end(stack: &Stack, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let mut cfg = stack
        .kafka()
        .consumer_config(&athena_connect_tests::unique("loop-reader"));
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cfg.create().expect("consumer");
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("assign");
        }
    }
    let parts = tpl.count();
    if parts == 0 {
        return Vec::new();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while eof.len() < parts && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(m.detach()),
        }
    }
    out
}

/// `schemas/examples/<name>.json` as its mirror (a `bytes` field given as text becomes its bytes).
fn example<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/../../schemas/examples/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("JSON");
    if let Some(text) = v
        .get("attachment")
        .and_then(|a| a.as_str())
        .map(str::to_string)
    {
        v["attachment"] = serde_json::json!(text.into_bytes());
    }
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The examples of the appointment-lifecycle, insurance and C-CDA commands name ids the
/// simulator seeds: produced as they are, in their chain order (book → check in → update →
/// note → check out; freeze → unfreeze; add → update → remove insurance), each is APPLIED
/// against a freshly seeded simulator (what `./dev demo` starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_apply_in_order_against_the_seeded_simulator() {
    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics(&stack, &n).await;
    let p = Producer::new(&stack);
    let sink = start_sink(&stack, sink_config(&n), athena);
    let (ap, pp) = (&n.appointments, &n.patients);
    let book: athena_contracts::BookAppointment = example("BookAppointment");
    let key = format!("195900/{}", book.appointment_id);
    p.send(ap, &key, &book).await;
    let checkin: CheckInAppointment = example("CheckInAppointment");
    p.send(ap, &key, &checkin).await;
    let update: UpdateAppointment = example("UpdateAppointment");
    p.send(ap, &key, &update).await;
    let note: AddAppointmentNote = example("AddAppointmentNote");
    p.send(ap, &key, &note).await;
    let checkout: CheckOutAppointment = example("CheckOutAppointment");
    p.send(ap, &key, &checkout).await;
    let freeze: FreezeAppointment = example("FreezeAppointment");
    let fkey = format!("195900/{}", freeze.appointment_id);
    p.send(ap, &fkey, &freeze).await;
    let unfreeze: UnfreezeAppointment = example("UnfreezeAppointment");
    p.send(ap, &fkey, &unfreeze).await;
    let add: AddInsurance = example("AddInsurance");
    let pkey = format!("195900/{}", add.patient_id);
    p.send(pp, &pkey, &add).await;
    let ins_update: UpdateInsurance = example("UpdateInsurance");
    p.send(pp, &pkey, &ins_update).await;
    let remove: RemoveInsurance = example("RemoveInsurance");
    p.send(pp, &pkey, &remove).await;
    let ccda: UploadClinicalDocument = example("UploadClinicalDocument.ccda");
    p.send(pp, &pkey, &ccda).await;
    let ids = [
        book.command_id,
        checkin.command_id,
        update.command_id,
        note.command_id,
        checkout.command_id,
        freeze.command_id,
        unfreeze.command_id,
        add.command_id,
        ins_update.command_id,
        remove.command_id,
        ccda.command_id,
    ];
    let msgs = read_until(
        &stack.kafka(),
        &n.results,
        ids.len(),
        Duration::from_secs(60),
    )
    .await;
    let results = results_by_id(&p.codec, &msgs).await;
    sink.stop().await;
    for id in &ids {
        let r = results
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r.status, CommandStatus::Applied, "{r:?}");
    }
    sim.shutdown().await;
}

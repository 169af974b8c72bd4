//! Producing each issue-14 command with Confluent's own Avro serializer (confluent-kafka for
//! Python, `schemas/clients/confluent_produce.py`) against the subjects `athena-connect schemas
//! register` creates (the same `default_bindings` + `register_bindings`, TopicRecordNameStrategy,
//! on a test topic prefix), and the sink applying every one against the simulator.
//!
//! Needs the local stack (`./dev up`) and Confluent's Python client:
//! `pip install 'confluent-kafka[avro,schemaregistry]'` (`ATHENA_CONNECT_PYTHON` names the
//! interpreter that has it; default `python3`). Ignored by default because CI has no such
//! Python package; run with `cargo test -p write-back-sink --test confluent_python -- --ignored`.

mod common;

use std::process::Command;
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::CommandStatus;
use athena_sim::SimConfig;
use common::lifecycle::{add_insurance, check_in, insurance_fields};
use common::*;
use connector_core::avro::{SubjectStrategy, default_bindings, register_bindings};
use serde_json::json;

fn python() -> String {
    std::env::var("ATHENA_CONNECT_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Confluent's Python client (pip install 'confluent-kafka[avro,schemaregistry]'); run with --ignored"]
async fn commands_produced_with_confluents_serializer_are_applied() {
    let py = python();
    let probe = Command::new(&py)
        .args([
            "-c",
            "import confluent_kafka.schema_registry.avro, fastavro",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}; set ATHENA_CONNECT_PYTHON"));
    assert!(
        probe.status.success(),
        "{py} lacks Confluent's client: pip install 'confluent-kafka[avro,schemaregistry]' (or set ATHENA_CONNECT_PYTHON): {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let stack = Stack::get().await;
    let (sim, athena) = start_sim(SimConfig::default()).await;
    // Topics as a deployment names them, under a prefix (`schemas register --topic-prefix`).
    let prefix = format!("{}.", unique("cf"));
    let topic = |t: &str| format!("{prefix}{t}");
    let n = Names {
        patients: topic("athena.cmd.patients.v1"),
        appointments: topic("athena.cmd.appointments.v1"),
        billing: topic("athena.cmd.billing.v1"),
        results: topic("athena.cmd.results.v1"),
        ledger: topic("athena.cmd.ledger.v1"),
        group: topic("group"),
    };
    create_topics(&stack, &n).await;
    let bindings: Vec<_> = default_bindings(SubjectStrategy::TopicRecordName, &prefix)
        .into_iter()
        .filter(|b| b.schema.starts_with("com.athenaconnect.commands."))
        .collect();
    register_bindings(&stack.registry_client(), &bindings, "BACKWARD_TRANSITIVE")
        .await
        .expect("register the command subjects");

    // State: A checked in, C open, one insurance package.
    let pat = test_patient(&sim);
    let slots = open_slots(&sim, 2);
    let (a, c) = (&slots[0], &slots[1]);
    check_in(&athena, a, &pat).await;
    let ins = add_insurance(&athena, &pat, &insurance_fields(1)).await;

    let env = |id: &str| {
        json!({"command_id": id, "practice_id": PRACTICE.to_string(), "correlation_id": null,
               "issued_at": 1764000000000i64})
    };
    let with = |id: &str, extra: serde_json::Value| {
        let mut v = env(id);
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let (ap, pp) = (&n.appointments, &n.patients);
    let ka = format!("195900/{a}");
    let kc = format!("195900/{c}");
    let kp = format!("195900/{pat}");
    let records = vec![
        (
            ap,
            &ka,
            "UpdateAppointment",
            with(
                "cf-update",
                json!({"appointment_id": a, "patient_id": null,
            "appointment_type_id": null, "department_id": null, "provider_id": "72", "supervising_provider_id": "73"}),
            ),
        ),
        (
            ap,
            &ka,
            "AddAppointmentNote",
            with(
                "cf-note",
                json!({"appointment_id": a, "note_text": "synthetic note",
            "display_on_schedule": false, "patient_id": null}),
            ),
        ),
        (
            ap,
            &ka,
            "CheckOutAppointment",
            with(
                "cf-checkout",
                json!({"appointment_id": a, "patient_id": null}),
            ),
        ),
        (
            ap,
            &kc,
            "FreezeAppointment",
            with("cf-freeze", json!({"appointment_id": c})),
        ),
        (
            ap,
            &kc,
            "UnfreezeAppointment",
            with("cf-unfreeze", json!({"appointment_id": c})),
        ),
        (
            pp,
            &kp,
            "UpdateInsurance",
            with(
                "cf-insupdate",
                json!({"patient_id": pat, "insurance_id": ins,
            "insurance_package_id": null, "sequence_number": null, "insurance_id_number": "SYNCF1",
            "policyholder_first_name": null, "policyholder_last_name": null, "policyholder_dob": null,
            "policyholder_sex": null, "relationship_to_insured_id": null}),
            ),
        ),
        (
            pp,
            &kp,
            "RemoveInsurance",
            with(
                "cf-insremove",
                json!({"patient_id": pat, "insurance_id": ins}),
            ),
        ),
        (
            pp,
            &kp,
            "UploadClinicalDocument",
            with(
                "cf-ccda",
                json!({"patient_id": pat, "department_id": "1",
            "document_subclass": "CLINICALDOCUMENT",
            "attachment": "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>synthetic</title></ClinicalDocument>",
            "attachment_type": "XML", "original_filename": "cf-summary", "document_type_id": null,
            "autoclose": false, "observation_date": null, "provider_id": null, "internal_note": null}),
            ),
        ),
    ];
    let job = json!({
        "bootstrap": stack.bootstrap,
        "registry": stack.registry_url,
        "schemas_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/commands"),
        "records": records.iter().map(|(t, k, s, v)| json!({"topic": t, "key": k, "schema": s, "value": v})).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let job_path = dir.path().join("job.json");
    std::fs::write(&job_path, job.to_string()).expect("write job");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/clients/confluent_produce.py"
    );
    let out = Command::new(&py)
        .arg(script)
        .arg(&job_path)
        .output()
        .expect("run the Confluent producer");
    assert!(
        out.status.success(),
        "Confluent producer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let sink = start_sink(&stack, sink_config(&n), athena.clone());
    let msgs = read_until(
        &stack.kafka(),
        &n.results,
        records.len(),
        Duration::from_secs(60),
    )
    .await;
    let p = Producer::new(&stack);
    let results = results_by_id(&p.codec, &msgs).await;
    sink.stop().await;
    assert_eq!(results.len(), records.len(), "{results:?}");
    for (_, _, schema, v) in &records {
        let r = &results[v["command_id"].as_str().unwrap()];
        assert_eq!(r.command_type, *schema);
        assert_eq!(r.status, CommandStatus::Applied, "{r:?}");
    }
    let writes = sim_writes(&sim);
    for op in [
        "UpdateAppointment",
        "AddAppointmentNote",
        "CheckOutAppointment",
        "FreezeAppointment",
        "UnfreezeAppointment",
        "UpdateInsurance",
        "RemoveInsurance",
    ] {
        assert_eq!(
            writes
                .iter()
                .filter(|((o, _), _)| o == op)
                .map(|(_, n)| n)
                .sum::<usize>(),
            1,
            "{op} written once"
        );
    }
    sim.shutdown().await;
}

//! Schema contract tests against the real registry: every contract struct round-trips through
//! its schema and the Confluent wire format, every example under `schemas/examples/` is a valid
//! instance, registration sets BACKWARD_TRANSITIVE, and the registry refuses an incompatible
//! change.

use athena_connect_tests::{Stack, unique};
use athena_contracts::*;
use connector_core::avro::{
    AvroRecord, Catalog, SubjectStrategy, default_bindings, incompatible_bindings,
    register_bindings, unframe,
};

async fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(
    stack: &Stack,
    value: &T,
) -> Vec<u8> {
    let codec = stack.codec();
    let topic = unique("contract");
    let id = codec
        .registry()
        .register(
            &Catalog::global().subject(SubjectStrategy::TopicName, &topic, T::SCHEMA_NAME),
            &T::bundled().json,
        )
        .await
        .expect("register");
    let encoder = codec.encoder::<T>(&topic).await.expect("encoder");
    let bytes = encoder.encode(value).expect("encode");
    let (wire_id, _) = unframe(&bytes).expect("framing");
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(wire_id, id, "big-endian schema id");
    let back: T = codec.decode(&bytes).await.expect("decode");
    assert_eq!(&back, value);
    bytes
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/../schemas/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The structs deny unknown fields, so a typo in an example fails here.
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn every_contract_and_example_round_trips() {
    let stack = Stack::get().await;
    let p: PatientChanged = example("PatientChanged.json");
    round_trip(&stack, &p).await;
    let a: AppointmentChanged = example("AppointmentChanged.json");
    round_trip(&stack, &a).await;
    let b: BookAppointment = example("BookAppointment.json");
    round_trip(&stack, &b).await;
    let r: CommandResult = example("CommandResult.json");
    round_trip(&stack, &r).await;
    let r: CommandResult = example("CommandResult.rejected.json");
    round_trip(&stack, &r).await;
}

#[tokio::test]
async fn minimal_values_round_trip() {
    // All optional fields absent: unions take their null branch.
    let stack = Stack::get().await;
    let minimal = AppointmentChanged {
        envelope: EventEnvelope {
            event_id: "e".into(),
            source: SourceKind::BulkExport,
            practice_id: "1".into(),
            department_id: None,
            entity_type: "appointment".into(),
            entity_id: "2".into(),
            event_name: None,
            changed_at: None,
            observed_at: TimestampMillis(0),
            snapshot: true,
            replayed: false,
        },
        payload: Appointment {
            appointment_id: "2".into(),
            ..Default::default()
        },
        original: None,
    };
    round_trip(&stack, &minimal).await;
}

#[tokio::test]
async fn registration_sets_backward_transitive_and_refuses_incompatible_changes() {
    let stack = Stack::get().await;
    let registry = stack.registry_client();
    let prefix = format!("{}.", unique("reg"));
    let bindings = default_bindings(SubjectStrategy::TopicName, &prefix);
    let registered = register_bindings(&registry, &bindings, "BACKWARD_TRANSITIVE")
        .await
        .expect("register all");
    assert_eq!(registered.len(), bindings.len());
    for r in &registered {
        assert_eq!(
            registry
                .compatibility(&r.binding.subject)
                .await
                .unwrap()
                .as_deref(),
            Some("BACKWARD_TRANSITIVE"),
            "{}",
            r.binding.subject
        );
        // Registering the same schema again is idempotent: same id.
        let again = register_bindings(
            &registry,
            std::slice::from_ref(&r.binding),
            "BACKWARD_TRANSITIVE",
        )
        .await
        .unwrap();
        assert_eq!(again[0].id, r.id);
    }
    assert!(
        incompatible_bindings(&registry, &bindings)
            .await
            .unwrap()
            .is_empty()
    );

    // A new required field without a default cannot read old data: BACKWARD must refuse it.
    let subject = &bindings
        .iter()
        .find(|b| b.schema == PatientChanged::SCHEMA_NAME)
        .expect("PatientChanged is bundled")
        .subject;
    let mut schema: serde_json::Value =
        serde_json::from_str(&PatientChanged::bundled().json).unwrap();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "mandatory_new", "type": "string"}));
    let incompatible = schema.to_string();
    assert!(
        !registry
            .is_compatible(subject, &incompatible)
            .await
            .unwrap()
    );
    let err = registry.register(subject, &incompatible).await.unwrap_err();
    assert!(
        matches!(err, connector_core::CoreError::RegistryRejected(_)),
        "{err:?}"
    );

    // The same field with a default is a compatible evolution.
    let last = schema["fields"].as_array_mut().unwrap().last_mut().unwrap();
    last["default"] = serde_json::json!("");
    assert!(
        registry
            .is_compatible(subject, &schema.to_string())
            .await
            .unwrap()
    );
}

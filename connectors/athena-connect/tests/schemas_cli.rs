//! `athena-connect schemas` as a user runs it: the real binary against the real registry.

use std::process::Command;

use athena_connect_tests::{Stack, unique};

fn cli(args: &[&str], registry: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_athena-connect"))
        .args(args)
        .env("SCHEMA_REGISTRY_URL", registry)
        .output()
        .expect("run athena-connect");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn register_check_and_refuse_incompatible() {
    let stack = Stack::get().await;
    let prefix = format!("{}.", unique("cli"));

    let (code, out) = cli(
        &["schemas", "check", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out}");
    // Every top-level bundled schema, and nothing else, is registered.
    let top_level: Vec<_> = connector_core::avro::Catalog::global()
        .iter()
        .filter(|s| s.default_topic.is_some())
        .collect();
    assert!(top_level.len() >= 4);
    for s in &top_level {
        let subject = connector_core::avro::Catalog::global().subject(
            connector_core::avro::SubjectStrategy::TopicName,
            &format!("{prefix}{}", s.default_topic.as_deref().unwrap()),
            &s.name,
        );
        assert!(out.contains(&subject), "{subject} missing from: {out}");
    }
    assert_eq!(out.matches("registered").count(), top_level.len(), "{out}");
    // Idempotent.
    let (code, out2) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out2}");

    // Make the registry hold a version our bundled schema cannot be BACKWARD-compatible with:
    // a version with a required field we lack that has no default is fine for BACKWARD (we
    // would just ignore it), so instead register a version whose field type differs.
    let registry = stack.registry_client();
    let subject = format!("{prefix}athena.cmd.results.v1-value"); // the results topic holds one type
    registry.set_compatibility(&subject, "NONE").await.unwrap();
    let foreign = serde_json::json!({
        "type": "record", "name": "CommandResult", "namespace": "com.athenaconnect.commands",
        "fields": [{"name": "command_id", "type": "long"}]
    });
    registry
        .register(&subject, &foreign.to_string())
        .await
        .unwrap();
    registry
        .set_compatibility(&subject, "BACKWARD_TRANSITIVE")
        .await
        .unwrap();
    let (code, out) = cli(
        &["schemas", "check", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("INCOMPATIBLE") && out.contains(&subject),
        "{out}"
    );
    let (code, out) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 3, "{out}");
}

#[test]
fn bad_usage_names_the_problem() {
    let (code, out) = cli(
        &["schemas", "register", "--compatibility", "SOMETIMES"],
        "http://127.0.0.1:1/apis/ccompat/v7",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--compatibility") && out.contains("BACKWARD_TRANSITIVE"),
        "{out}"
    );
}

#[test]
fn list_names_every_schema() {
    let (code, out) = cli(&["schemas", "list"], "http://unused");
    assert_eq!(code, 0, "{out}");
    for name in [
        "PatientChanged",
        "AppointmentChanged",
        "BookAppointment",
        "CommandResult",
        "EventEnvelope",
    ] {
        assert!(out.contains(name), "{out}");
    }
}

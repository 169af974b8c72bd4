//! The example configs in `deploy/` are what newcomers copy: each must load, validate and type
//! every connector section with this build (the one-connector files as well as the whole-stack
//! one), and the CLI must say what is wrong with a broken one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use athena_connect::config::RootConfig;
use athena_connect::connectors;
use connector_core::config::Validate;

fn example() -> (PathBuf, String) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/athena-connect.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example config");
    (path, text)
}

#[test]
fn example_config_loads_validates_and_types_every_connector() {
    let (_, text) = example();
    let env: BTreeMap<String, String> = [
        ("ATHENA_CONNECT_ADMIN_TOKEN", "example-admin-token-0123"),
        ("FHIR_PUSH_SECRET", "example-push-secret-0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = RootConfig::load_str(&text, &env).expect("example loads");
    config.validate().expect("example validates");
    connectors::validate_all(&config).expect("every connector section types");
    let names: Vec<&str> = config.instances().iter().map(|i| i.name).collect();
    assert_eq!(names, ["changes", "push", "commands"]);
    assert!(config.backfill.is_some());
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9400");

    // Without the admin token the error names the key and the variable.
    let only_push: BTreeMap<String, String> = [(
        "FHIR_PUSH_SECRET".to_string(),
        "example-push-secret-0123".to_string(),
    )]
    .into();
    let err = RootConfig::load_str(&text, &only_push)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin.token") && err.contains("ATHENA_CONNECT_ADMIN_TOKEN"),
        "{err}"
    );
}

#[test]
fn check_names_the_bad_key_with_exit_2() {
    let (_, text) = example();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("page_size = 1000", "page_size = 1000\npage_sise = 5"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_athena-connect"))
        .args(["check", "--config"])
        .arg(&bad)
        .env("ATHENA_CONNECT_ADMIN_TOKEN", "example-admin-token-0123")
        .env("FHIR_PUSH_SECRET", "example-push-secret-0123")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("sources.changed_data.changes"), "{text}");
    assert!(text.contains("page_sise"), "{text}");
}

#[test]
fn help_lists_the_subcommands_and_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_athena-connect"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "run",
        "check",
        "schemas",
        "offsets",
        "backfill",
        "sim",
        "subscriptions",
        "Exit codes",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
}

/// Loads `deploy/<file>` as `run` does (with the admin token and secrets from `env`).
fn load_example(text: &str) -> Result<RootConfig, connector_core::CoreError> {
    let env: BTreeMap<String, String> = [
        ("ATHENA_CONNECT_ADMIN_TOKEN", "example-admin-token-0123"),
        ("ATHENA_CLIENT_ID", "id"),
        ("ATHENA_CLIENT_SECRET", "secret"),
        // No deploy file ships a push secret any more (issue 17): the runner supplies one.
        ("FHIR_PUSH_SECRET", "example-push-secret-0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = RootConfig::load_str(text, &env)?;
    c.validate()?;
    connectors::validate_all(&c)?;
    Ok(c)
}

fn deploy_file(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn section<T: serde::de::DeserializeOwned>(c: &RootConfig, name: &str) -> T {
    let i = c.instance(name).expect("the example's connector");
    athena_connect::config::typed(i.kind.section(), i.table).expect("types")
}

#[test]
fn changed_data_source_example_loads_and_covers_every_feed() {
    use athena_client::api::changed::Feed;
    let file = "changed-data-source.example.toml";
    let text = deploy_file(file);
    let c = load_example(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let s: changed_data_source::Config = section(&c, "changes");
    for f in Feed::ALL {
        assert!(s.feeds.contains_key(&f), "the example leaves out {f:?}");
        assert!(s.topic(f).starts_with("athena."), "{f:?}");
    }
    assert_eq!(s.topic(Feed::LabResults), "athena.labresults.v1");
    assert!(s.budget_interval().is_some());
    // A typo in a connector key is an error naming it.
    let e = load_example(&text.replace("page_size", "page_sise"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("page_sise"), "{e}");
}

#[test]
fn fhir_push_example_loads_and_validates() {
    let file = "fhir-push.example.toml";
    let text = deploy_file(file);
    let c = load_example(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let s: fhir_push::Config = section(&c, "events");
    assert_eq!(s.practice_id, 195900);
    assert!(
        s.subscription_topics
            .contains(&"Encounter.check-in".to_string())
    );
    assert_eq!(s.patients_topic(), "athena.patients.v1");
    let e = load_example(&text.replace("ack_budget", "ack_budjet"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ack_budjet"), "{e}");
    // Validation names the connector.
    let e = load_example(&text.replace("ack_budget = \"1500ms\"", "ack_budget = \"5s\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sources.fhir_push.events.ack_budget"), "{e}");
}

#[test]
fn write_back_sink_example_loads_and_validates() {
    let file = "write-back-sink.example.toml";
    let c = load_example(&deploy_file(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(c.instance("main").is_some());
    let _: write_back_sink::Config = section(&c, "main");
}

#[test]
fn bulk_backfill_example_loads_and_validates() {
    use std::time::Duration;
    let file = "bulk-backfill.example.toml";
    let text = deploy_file(file);
    // `backfill` serves no admin API: its file needs no [admin] token.
    let load = |text: &str| -> Result<bulk_backfill::Config, connector_core::CoreError> {
        let c = RootConfig::load_str(text, &BTreeMap::new())?;
        c.validate_without_admin()?;
        let bf: bulk_backfill::Config =
            athena_connect::config::typed("backfill", c.backfill.as_ref().expect("[backfill]"))?;
        bf.validate()?;
        Ok(bf)
    };
    let bf = load(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(bf.practice_id, 195900);
    assert_eq!(bf.poll_min_interval, Duration::from_secs(60));
    assert_eq!(bf.patients_topic(), "athena.patients.v1");
    assert_eq!(bf.patient_source, bulk_backfill::PatientSource::Athena);
    assert_eq!(bf.patient_lookup_concurrency, 8);
    let e = load(&text.replace("checkpoint_every", "checkpoint_evry"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint_evry"), "{e}");
}

#[test]
fn run_only_names_an_unknown_connector_with_exit_2() {
    let (path, _) = example();
    let out = Command::new(env!("CARGO_BIN_EXE_athena-connect"))
        .args(["run", "--only", "changes,nope", "--config"])
        .arg(&path)
        .env("ATHENA_CONNECT_ADMIN_TOKEN", "example-admin-token-0123")
        .env("FHIR_PUSH_SECRET", "example-push-secret-0123")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--only") && text.contains("nope"), "{text}");
    assert!(
        text.contains("changes, push, commands"),
        "lists the names: {text}"
    );
}

/// Issue 17: the example falls back to the local simulator only while it points at loopback; a
/// real athena needs https and its own secret, and the file requests the scopes its paths need.
#[test]
fn example_refuses_simulator_defaults_for_a_real_athena_and_derives_scopes() {
    let (_, text) = example();
    let with = |extra: &[(&str, &str)]| {
        let env: BTreeMap<String, String> = [
            ("ATHENA_CONNECT_ADMIN_TOKEN", "example-admin-token-0123"),
            ("FHIR_PUSH_SECRET", "example-push-secret-0123"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        RootConfig::load_str(&text, &env).and_then(|c| c.validate().map(|()| c))
    };
    let local = with(&[]).expect("the simulator on loopback needs nothing set");
    assert_eq!(
        local.athena.scopes,
        [
            "athena/service/Athenanet.MDP.*",
            "system/AllergyIntolerance.read",
            "system/Condition.read",
            // Read by enrichment: patients → Coverage, lab and imaging results → DiagnosticReport,
            // visits → DocumentReference, orders → ServiceRequest.
            "system/Coverage.read",
            "system/DiagnosticReport.read",
            "system/DocumentReference.read",
            "system/Encounter.read",
            "system/Immunization.read",
            "system/MedicationRequest.read",
            "system/Observation.read",
            "system/Patient.read",
            "system/ServiceRequest.read",
            "system/Subscription.read",
            "system/Subscription.write",
        ]
    );
    assert!(!local.athena_scopes_explicit);
    let preview = [("ATHENA_BASE_URL", athena_client::config::PREVIEW_BASE_URL)];
    let err = with(&preview).unwrap_err().to_string();
    assert!(err.contains("client_secret"), "{err}");
    let err = with(&[
        ("ATHENA_BASE_URL", "http://athena.example.invalid"),
        ("ATHENA_CLIENT_SECRET", "real-secret"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("base_url") && err.contains("https"), "{err}");
    with(&[
        ("ATHENA_BASE_URL", athena_client::config::PREVIEW_BASE_URL),
        ("ATHENA_CLIENT_SECRET", "real-secret"),
        (
            "FHIR_PUSH_PUBLIC_URL",
            "https://push.example.invalid/notifications",
        ),
    ])
    .expect("a real athena with its own secret");
    let err = with(&[("FHIR_PUSH_PUBLIC_URL", "http://push.example.invalid/n")])
        .and_then(|c| connectors::validate_all(&c).map(|()| c))
        .unwrap_err()
        .to_string();
    assert!(err.contains("public_url"), "{err}");
}

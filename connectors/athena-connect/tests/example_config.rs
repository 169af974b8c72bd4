//! The example config in `deploy/` is what newcomers copy: it must load, validate and type every
//! connector section with this build, and the CLI must say what is wrong with a broken one.

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
        "Exit codes",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
}

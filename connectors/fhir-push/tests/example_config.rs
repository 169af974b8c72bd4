//! `deploy/fhir-push.example.toml` loads and validates; a typo in a connector key is an error
//! naming it.

use std::path::PathBuf;

use fhir_push::standalone::StandaloneConfig;

#[test]
fn example_config_loads_and_validates() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/fhir-push.example.toml");
    let c = StandaloneConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = &c.sources.fhir_push["events"];
    assert_eq!(s.practice_id, 195900);
    assert!(
        s.subscription_topics
            .contains(&"Encounter.check-in".to_string())
    );
    assert_eq!(s.patients_topic(), "athena.patients.v1");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("ack_budget", "ack_budjet");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let e = StandaloneConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("ack_budjet"), "{e}");
    // Validation names the connector.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("ack_budget = \"1500ms\"", "ack_budget = \"5s\"");
    std::fs::write(&bad, text).unwrap();
    let e = StandaloneConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("sources.fhir_push.events.ack_budget"), "{e}");
}

//! `deploy/bulk-backfill.example.toml` loads and validates; a typo is an error naming the key.

use std::path::PathBuf;
use std::time::Duration;

use bulk_backfill::standalone::StandaloneConfig;

#[test]
fn example_config_loads_and_validates() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/bulk-backfill.example.toml");
    let c = StandaloneConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(c.backfill.practice_id, 195900);
    assert_eq!(c.backfill.poll_min_interval, Duration::from_secs(60));
    assert_eq!(c.backfill.patients_topic(), "athena.patients.v1");
    assert_eq!(
        c.backfill.patient_source,
        bulk_backfill::PatientSource::Athena
    );
    assert_eq!(c.backfill.patient_lookup_concurrency, 8);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("checkpoint_every", "checkpoint_evry");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let e = StandaloneConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("checkpoint_evry"), "{e}");
}

//! `deploy/changed-data-source.example.toml` loads, validates, names every feed, and maps each
//! feed to its default topic.

use std::path::PathBuf;

use athena_client::api::changed::Feed;
use changed_data_source::standalone::StandaloneConfig;

#[test]
fn example_config_loads_and_covers_every_feed() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/changed-data-source.example.toml");
    let c = StandaloneConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = &c.sources.changed_data["changes"];
    for f in Feed::ALL {
        assert!(s.feeds.contains_key(&f), "the example leaves out {f:?}");
        assert!(s.topic(f).starts_with("athena."), "{f:?}");
    }
    assert_eq!(s.topic(Feed::LabResults), "athena.labresults.v1");
    assert!(s.budget_interval().is_some());
    // A typo in a connector key is an error naming it.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("page_size", "page_sise");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let e = StandaloneConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("page_sise"), "{e}");
}

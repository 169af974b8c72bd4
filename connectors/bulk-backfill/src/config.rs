//! `[backfill]`: one practice's FHIR Bulk `$export` backfill. Field docs are the user docs.

use std::collections::BTreeMap;
use std::time::Duration;

use athena_contracts::{FhirResourceChanged, PatientChanged};
use chrono::{DateTime, Utc};
use connector_core::CoreError;
use connector_core::avro::AvroRecord;
use connector_core::config::Validate;
use serde::Deserialize;

/// How progress is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// A progress bar on a terminal, periodic log lines otherwise.
    #[default]
    Auto,
    /// Always the progress bar.
    Bar,
    /// Always log lines.
    Log,
    /// Nothing but the final summary.
    Off,
}

/// Where `Patient` snapshot events come from (decision record 0010).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatientSource {
    /// Read each exported patient's proprietary record (`GET /patients/{id}`, one call per
    /// patient) and map it like the push path does, so the event id equals the changed-data and
    /// push id of the patient's current state. A patient gone since the export (404) falls back
    /// to the FHIR mapping.
    #[default]
    Athena,
    /// Map the exported FHIR `Patient` itself: no extra calls, but the event id (FHIR
    /// `meta.lastUpdated`) differs from the changed-data and push ids of the same state.
    Fhir,
}

/// The backfill of one practice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// athenaOne practice id (the export group is `a-1.C-{practice_id}`).
    pub practice_id: u64,
    /// `_type`: resource types to export; empty = the server's default set.
    #[serde(default)]
    pub types: Vec<String>,
    /// `_since` for the first run; later runs use the previous run's `transactionTime` from the
    /// checkpoint. Set it to force a window.
    pub since: Option<DateTime<Utc>>,
    /// Never poll the export status faster than this, whatever `Retry-After` says.
    #[serde(default = "default_poll_min", with = "humantime_serde")]
    pub poll_min_interval: Duration,
    /// Never wait longer than this between status polls.
    #[serde(default = "default_poll_max", with = "humantime_serde")]
    pub poll_max_interval: Duration,
    /// Give up on an export that is not complete after this long.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub export_timeout: Duration,
    /// Compacted topic holding the manifest and per-file progress.
    #[serde(default = "default_checkpoint_topic")]
    pub checkpoint_topic: String,
    /// Topic for `PatientChanged` snapshots (default: the schema's default topic).
    pub patients_topic: Option<String>,
    /// Create the missing event topics at start with this many partitions (0 = do not create).
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// Topic for resource types without a typed event (`FhirResourceChanged`).
    pub fhir_resources_topic: Option<String>,
    /// Topic per resource type with a typed event (Observation, Condition, Encounter, ... as
    /// listed by `athena_contracts::events::FHIR_RESOURCE_TYPES`), e.g.
    /// `typed_topics = { Observation = "athena.observations.v1" }`; a type not listed goes to
    /// its schema's default topic.
    #[serde(default)]
    pub typed_topics: BTreeMap<String, String>,
    /// Keep the original resource JSON in events (`false` = PHI minimisation).
    #[serde(default = "yes")]
    pub include_original: bool,
    /// `athena` (default): patient snapshots from `GET /patients/{id}`, with the changed-data
    /// source's event ids, one proprietary call per patient; `fhir`: from the export's FHIR
    /// `Patient` (no extra calls, different event ids).
    #[serde(default)]
    pub patient_source: PatientSource,
    /// Patient reads in flight at once with `patient_source = "athena"` (1..=64); events keep
    /// the NDJSON line order whatever the concurrency.
    #[serde(default = "default_patient_lookup_concurrency")]
    pub patient_lookup_concurrency: usize,
    /// Records between two per-file progress checkpoints (the most a restart can re-emit).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// `auto`, `bar`, `log` or `off`.
    #[serde(default)]
    pub progress: ProgressMode,
    /// Interval of the progress log lines when there is no terminal.
    #[serde(default = "default_log_interval", with = "humantime_serde")]
    pub log_interval: Duration,
}

fn yes() -> bool {
    true
}
fn default_poll_min() -> Duration {
    Duration::from_secs(60)
}
fn default_poll_max() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_checkpoint_topic() -> String {
    "athena-connect.backfill.state".into()
}
fn default_checkpoint_every() -> usize {
    500
}
fn default_patient_lookup_concurrency() -> usize {
    8
}
fn default_topic_partitions() -> i32 {
    6
}
fn default_log_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_topic<T: AvroRecord>() -> String {
    T::bundled()
        .default_topic
        .clone()
        .unwrap_or_else(|| T::SCHEMA_NAME.to_string())
}

impl Config {
    /// Defaults for everything optional.
    pub fn new(practice_id: u64) -> Self {
        Config {
            practice_id,
            types: Vec::new(),
            since: None,
            poll_min_interval: default_poll_min(),
            poll_max_interval: default_poll_max(),
            export_timeout: default_timeout(),
            checkpoint_topic: default_checkpoint_topic(),
            patients_topic: None,
            topic_partitions: default_topic_partitions(),
            fhir_resources_topic: None,
            typed_topics: BTreeMap::new(),
            include_original: true,
            patient_source: PatientSource::Athena,
            patient_lookup_concurrency: default_patient_lookup_concurrency(),
            checkpoint_every: default_checkpoint_every(),
            progress: ProgressMode::Auto,
            log_interval: default_log_interval(),
        }
    }
    /// Topic of `PatientChanged`.
    pub fn patients_topic(&self) -> String {
        self.patients_topic
            .clone()
            .unwrap_or_else(default_topic::<PatientChanged>)
    }
    /// Topic of `FhirResourceChanged`.
    pub fn fhir_resources_topic(&self) -> String {
        self.fhir_resources_topic
            .clone()
            .unwrap_or_else(default_topic::<FhirResourceChanged>)
    }
    /// Topic of the typed event of `resource_type` (`None`: the type has no typed event).
    pub fn typed_topic(&self, resource_type: &str) -> Option<String> {
        athena_contracts::mapping::typed_topic(&self.typed_topics, resource_type)
    }
    /// The exported resource types with a typed event (all of them when `types` is empty, the
    /// server's default set).
    pub fn typed_types(&self) -> Vec<&'static str> {
        athena_contracts::events::FHIR_RESOURCE_TYPES
            .iter()
            .copied()
            .filter(|t| self.types.is_empty() || self.types.iter().any(|x| x == t))
            .collect()
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), CoreError> {
        if self.topic_partitions < 0 {
            return Err(CoreError::config(
                "backfill.topic_partitions",
                "must be 0 (do not create) or more",
            ));
        }
        if self.poll_min_interval < Duration::from_millis(100) {
            return Err(CoreError::config(
                "backfill.poll_min_interval",
                "must be at least 100ms",
            ));
        }
        if self.poll_max_interval < self.poll_min_interval {
            return Err(CoreError::config(
                "backfill.poll_max_interval",
                "must not be below poll_min_interval",
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(CoreError::config(
                "backfill.checkpoint_every",
                "must be at least 1",
            ));
        }
        if !(1..=64).contains(&self.patient_lookup_concurrency) {
            return Err(CoreError::config(
                "backfill.patient_lookup_concurrency",
                "must be between 1 and 64",
            ));
        }
        if let Some(t) = self
            .types
            .iter()
            .find(|t| t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(CoreError::config(
                "backfill.types",
                format!("`{t}` is not a FHIR resource type"),
            ));
        }
        if let Some(t) = athena_contracts::mapping::invalid_typed_topic(&self.typed_topics) {
            return Err(CoreError::config(
                format!("backfill.typed_topics.{t}"),
                format!(
                    "must be a non-empty topic of one of {}",
                    athena_contracts::events::FHIR_RESOURCE_TYPES.join(", ")
                ),
            ));
        }
        if self.checkpoint_topic.trim().is_empty() {
            return Err(CoreError::config(
                "backfill.checkpoint_topic",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_source_parses_and_env_overrides_it() {
        let c: Config = connector_core::config::load_str(
            "practice_id = 1\npatient_source = \"fhir\"\npatient_lookup_concurrency = 3\n",
            &Default::default(),
            "ATHENA_CONNECT_TEST",
        )
        .unwrap();
        assert_eq!(c.patient_source, PatientSource::Fhir);
        assert_eq!(c.patient_lookup_concurrency, 3);
        let bad = connector_core::config::load_str::<Config>(
            "practice_id = 1\npatient_source = \"proprietary\"\n",
            &Default::default(),
            "ATHENA_CONNECT_TEST",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("patient_source"), "{bad}");
        // `ATHENA_CONNECT__BACKFILL__PATIENT_SOURCE=fhir` in the real files.
        let env = [(
            "ATHENA_CONNECT_TEST__PATIENT_SOURCE".to_string(),
            "fhir".to_string(),
        )]
        .into_iter()
        .collect();
        let c: Config =
            connector_core::config::load_str("practice_id = 1\n", &env, "ATHENA_CONNECT_TEST")
                .unwrap();
        assert_eq!(c.patient_source, PatientSource::Fhir);
    }

    #[test]
    fn defaults_and_validation() {
        let c: Config = connector_core::config::load_str(
            "practice_id = 195900\ntypes = [\"Patient\"]\npoll_min_interval = \"2s\"\n",
            &Default::default(),
            "ATHENA_CONNECT_TEST",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.poll_min_interval, Duration::from_secs(2));
        assert_eq!(c.patients_topic(), "athena.patients.v1");
        assert_eq!(Config::new(1).poll_min_interval, Duration::from_secs(60));
        let mut bad = c.clone();
        bad.types = vec!["Patient,Condition".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("backfill.types")
        );
        // Typed topics: the schema default unless overridden; unknown types name the key.
        assert_eq!(
            c.typed_topic("Observation").as_deref(),
            Some("athena.observations.v1")
        );
        assert_eq!(c.typed_topic("Patient"), None);
        assert!(c.typed_types().is_empty(), "types = [Patient]");
        assert_eq!(
            Config::new(1).typed_types(),
            athena_contracts::events::FHIR_RESOURCE_TYPES,
            "the default set"
        );
        let mut t = c.clone();
        t.typed_topics
            .insert("Condition".into(), "x.conditions".into());
        assert_eq!(t.typed_topic("Condition").as_deref(), Some("x.conditions"));
        t.validate().unwrap();
        t.typed_topics.insert("Patient".into(), "x.p".into());
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("backfill.typed_topics.Patient")
        );
        assert_eq!(c.patient_source, PatientSource::Athena);
        assert_eq!(c.patient_lookup_concurrency, 8);
        for (n, ok) in [(0, false), (1, true), (64, true), (65, false)] {
            let mut x = c.clone();
            x.patient_lookup_concurrency = n;
            match x.validate() {
                Ok(()) => assert!(ok, "{n} accepted"),
                Err(e) => {
                    assert!(!ok, "{n} rejected: {e}");
                    assert!(
                        e.to_string()
                            .contains("backfill.patient_lookup_concurrency")
                    );
                }
            }
        }
        let mut bad = c;
        bad.poll_max_interval = Duration::from_millis(500);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("backfill.poll_max_interval")
        );
    }
}

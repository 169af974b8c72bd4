//! `[sources.fhir_push.<name>]`: one push connector (receiver + inflation + subscription
//! management) for one practice. Field docs are the user docs.

use std::collections::BTreeMap;
use std::time::Duration;

use athena_contracts::{AppointmentChanged, FhirResourceChanged, PatientChanged};
use connector_core::CoreError;
use connector_core::Secret;
use connector_core::avro::AvroRecord;
use connector_core::config::Validate;
use connector_core::dlq::DlqConfig;
use connector_core::http_server::HttpServerConfig;
use serde::Deserialize;

/// Which subscription dialect the other side speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// athenahealth's Event Subscription Platform (HMAC `X-Hub-Signature`).
    #[default]
    Athena,
    /// A plain HL7 R4 backport server (bearer token in `channel.header`).
    R4Backport,
}

/// Which parts of the push connector a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushRole {
    /// Receiver, subscription management, gap detection, catch-up and inflation.
    #[default]
    All,
    /// The webhook receiver only (durable on Kafka before 2xx), to scale it apart from
    /// inflation; another process with `role = "all"` inflates the notifications topic.
    Receiver,
}

/// One FHIR push connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which parts this process runs: `all` (default) or `receiver`.
    #[serde(default)]
    pub role: PushRole,
    /// Subscription dialect: `athena` (default) or `r4-backport`.
    #[serde(default)]
    pub adapter: AdapterKind,
    /// athenaOne practice id the subscriptions filter on.
    pub practice_id: u64,
    /// Shared secret: the `X-Hub-Secret` athena signs with, or the r4-backport bearer token.
    pub secret: Secret,
    /// Address the webhook receiver listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Public URL of the receiver, registered as the subscription endpoint. athena requires
    /// public HTTPS on 443 with a publicly trusted certificate: set `tls`, or terminate TLS in
    /// front of the receiver (ingress, load balancer).
    pub public_url: String,
    /// Accept a plain-`http` `public_url` on a host other than loopback: only for a simulator
    /// on a container network (docker compose). athena delivers to HTTPS only.
    #[serde(default)]
    pub allow_insecure_public_url: bool,
    /// Serve HTTPS with these PEM files; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Largest accepted notification body; larger requests get 413. athena's notifications are
    /// id-only and a few KB, so the default is 64 KiB.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Connection limits of the receiver (`[sources.fhir_push.<name>.http]`): header-read, body
    /// and request timeouts, connection and TLS-handshake caps, shutdown deadline. See
    /// [`HttpServerConfig`] for the keys and defaults. (Boxed: it is large and rarely read, and
    /// this config sits in an enum beside the other connectors' configs.)
    #[serde(default)]
    pub http: Box<HttpServerConfig>,
    /// How long an accepted notification event id is remembered: a copy within this window is
    /// answered 200 without a new record. Rebuilt from the notifications topic at start. Must
    /// be at least `max_event_age`. Default 3 h.
    #[serde(default = "default_replay_window", with = "humantime_serde")]
    pub replay_window: Duration,
    /// Most event ids replay protection remembers (about 150 bytes each). Default 100,000.
    #[serde(default = "default_replay_max_entries")]
    pub replay_max_entries: usize,
    /// A notification whose every event is older than this (by `notificationEvent.timestamp`)
    /// is refused with 422: athena retries for 1 h, so the default 2 h covers its retries plus
    /// a margin. Raise it (and `replay_window`) before replaying athena's dead-letter queue,
    /// which keeps notifications for 7 days.
    #[serde(default = "default_max_event_age", with = "humantime_serde")]
    pub max_event_age: Duration,
    /// How long the receiver waits for Kafka to acknowledge a notification before answering
    /// 503 (athena allows 2 s in total).
    #[serde(default = "default_ack_budget", with = "humantime_serde")]
    pub ack_budget: Duration,
    /// Topic codes to subscribe to, one Subscription each (e.g. `Patient.update`).
    #[serde(default)]
    pub subscription_topics: Vec<String>,
    /// Create missing and delete stale Subscriptions at start.
    #[serde(default = "yes")]
    pub manage_subscriptions: bool,
    /// SubscriptionTopic canonical base (r4-backport only; athena's is built in).
    pub topic_base: Option<String>,
    /// Topic holding the raw notifications (the durable inbox).
    #[serde(default = "default_notifications_topic")]
    pub notifications_topic: String,
    /// Partitions of the notifications topic when it is created.
    #[serde(default = "default_partitions")]
    pub notifications_partitions: i32,
    /// Create the missing event topics (patients, appointments, FHIR resources) at start with
    /// this many partitions (0 = do not create). The dead-letter topic is created with them.
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// Topic for `PatientChanged` events (default: the schema's default topic).
    pub patients_topic: Option<String>,
    /// Topic for `AppointmentChanged` events.
    pub appointments_topic: Option<String>,
    /// Topic for `FhirResourceChanged` events (FHIR resources without a typed event).
    pub fhir_resources_topic: Option<String>,
    /// Topic per resource type with a typed event (Observation, Condition, Encounter, ... as
    /// listed by `athena_contracts::events::FHIR_RESOURCE_TYPES`), e.g.
    /// `typed_topics = { Encounter = "athena.encounters.v1" }`; a type not listed goes to its
    /// schema's default topic.
    #[serde(default)]
    pub typed_topics: BTreeMap<String, String>,
    /// Topic per changed-data feed name for the records push names only by athena identifier
    /// (`claims`, `lab_results`, `imaging_results`, `orders`, `patient_cases`, `providers`,
    /// `referring_providers`), e.g. `record_topics = { claims = "athena.claims.v1" }`; a feed
    /// not listed goes to its schema's default topic (the changed-data source's topic).
    #[serde(default)]
    pub record_topics: BTreeMap<String, String>,
    /// Consumer group of the inflation stage (default `athena-connect.fhir-push.<name>`).
    pub group_id: Option<String>,
    /// Silence longer than this raises the gap signal and triggers a catch-up read.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_period: Duration,
    /// On a gap (and at start when the notifications topic is older than `heartbeat_period`),
    /// read the missed patient and appointment changes from the changed-data feeds,
    /// non-destructively (needs a changed-data subscription for `patients` / `appointments`).
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// How far before the last notification (or the previous catch-up) a catch-up looks back.
    #[serde(default = "default_catch_up_margin", with = "humantime_serde")]
    pub catch_up_margin: Duration,
    /// Longest look-back of a catch-up; an older last notification is capped (with a warning).
    #[serde(default = "default_catch_up_max_window", with = "humantime_serde")]
    pub catch_up_max_window: Duration,
    /// Most rows one catch-up reads per feed; the rest is read at the next check.
    #[serde(default = "default_catch_up_max_rows")]
    pub catch_up_max_rows: usize,
    /// How many recent `notificationEvent.id`s the inflation stage remembers for deduplication.
    #[serde(default = "default_dedup")]
    pub dedup_capacity: usize,
    /// Keep the original record JSON in events (`false` = PHI minimisation).
    #[serde(default = "yes")]
    pub include_original: bool,
    /// Dead-letter queue for notifications that can never be inflated.
    #[serde(default)]
    pub dlq: DlqConfig,
}

/// Receiver TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert_path: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: std::path::PathBuf,
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    "0.0.0.0:8088".into()
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_replay_window() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_replay_max_entries() -> usize {
    100_000
}
fn default_max_event_age() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_ack_budget() -> Duration {
    Duration::from_millis(1500)
}
fn default_notifications_topic() -> String {
    "athena.push.notifications.v1".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_topic_partitions() -> i32 {
    6
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(600)
}
fn default_catch_up_margin() -> Duration {
    Duration::from_secs(120)
}
fn default_catch_up_max_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_catch_up_max_rows() -> usize {
    50_000
}
fn default_dedup() -> usize {
    100_000
}

fn default_topic<T: AvroRecord>() -> String {
    T::bundled()
        .default_topic
        .clone()
        .unwrap_or_else(|| T::SCHEMA_NAME.to_string())
}

impl Config {
    /// A config with defaults for everything optional (tests, examples).
    pub fn new(practice_id: u64, secret: Secret, public_url: impl Into<String>) -> Self {
        Config {
            role: PushRole::All,
            adapter: AdapterKind::Athena,
            practice_id,
            secret,
            listen: default_listen(),
            public_url: public_url.into(),
            tls: None,
            body_limit_bytes: default_body_limit(),
            http: Box::default(),
            replay_window: default_replay_window(),
            replay_max_entries: default_replay_max_entries(),
            max_event_age: default_max_event_age(),
            ack_budget: default_ack_budget(),
            subscription_topics: Vec::new(),
            allow_insecure_public_url: false,
            manage_subscriptions: true,
            topic_base: None,
            notifications_topic: default_notifications_topic(),
            notifications_partitions: default_partitions(),
            topic_partitions: default_topic_partitions(),
            patients_topic: None,
            appointments_topic: None,
            fhir_resources_topic: None,
            typed_topics: BTreeMap::new(),
            record_topics: BTreeMap::new(),
            group_id: None,
            heartbeat_period: default_heartbeat(),
            catch_up: true,
            catch_up_margin: default_catch_up_margin(),
            catch_up_max_window: default_catch_up_max_window(),
            catch_up_max_rows: default_catch_up_max_rows(),
            dedup_capacity: default_dedup(),
            include_original: true,
            dlq: DlqConfig::default(),
        }
    }
    /// Topic of `PatientChanged`.
    pub fn patients_topic(&self) -> String {
        self.patients_topic
            .clone()
            .unwrap_or_else(default_topic::<PatientChanged>)
    }
    /// Topic of `AppointmentChanged`.
    pub fn appointments_topic(&self) -> String {
        self.appointments_topic
            .clone()
            .unwrap_or_else(default_topic::<AppointmentChanged>)
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
    /// Topic of the proprietary-record events of `feed`.
    pub fn record_topic(&self, feed: athena_client::api::changed::Feed) -> String {
        let name = athena_contracts::events::feed_name(feed);
        serde_json::to_value(feed)
            .ok()
            .and_then(|v| v.as_str().and_then(|k| self.record_topics.get(k).cloned()))
            .or_else(|| self.record_topics.get(name).cloned())
            .unwrap_or_else(|| {
                athena_contracts::events::spec(feed)
                    .default_topic
                    .to_string()
            })
    }
    /// The inflation consumer group for connector `name`.
    pub fn group_id(&self, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("athena-connect.fhir-push.{name}"))
    }
}

impl Config {
    /// [`Validate::validate`] with the connector's name in the dotted key.
    pub fn validate_named(&self, name: &str) -> Result<(), CoreError> {
        self.validate().map_err(|e| match e {
            CoreError::Config { key, message } => CoreError::Config {
                key: key.replace("<name>", name),
                message,
            },
            other => other,
        })
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), CoreError> {
        const P: &str = "sources.fhir_push.<name>";
        let key = |k: &str| format!("{P}.{k}");
        self.secret.validate_shared(&key("secret"))?;
        if let Some(t) = athena_contracts::mapping::invalid_typed_topic(&self.typed_topics) {
            return Err(CoreError::config(
                key(&format!("typed_topics.{t}")),
                format!(
                    "must be a non-empty topic of one of {}",
                    athena_contracts::events::FHIR_RESOURCE_TYPES.join(", ")
                ),
            ));
        }
        self.http.validate(&key("http"))?;
        if self.max_event_age < Duration::from_secs(3600) {
            return Err(CoreError::config(
                key("max_event_age"),
                "must be at least 1h (athena retries a notification for up to an hour)",
            ));
        }
        if self.replay_window < self.max_event_age {
            return Err(CoreError::config(
                key("replay_window"),
                "must be at least max_event_age (else an old copy could be accepted twice)",
            ));
        }
        if self.replay_max_entries == 0 {
            return Err(CoreError::config(
                key("replay_max_entries"),
                "must be at least 1",
            ));
        }
        if self.topic_partitions < 0 {
            return Err(CoreError::config(
                key("topic_partitions"),
                "must be 0 (do not create) or more",
            ));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(CoreError::config(
                key("listen"),
                "must be host:port, e.g. 0.0.0.0:8088",
            ));
        }
        match url::Url::parse(&self.public_url) {
            Ok(u)
                if u.scheme() == "http"
                    && !self.allow_insecure_public_url
                    && !athena_client::config::is_loopback(&u) =>
            {
                return Err(CoreError::config(
                    key("public_url"),
                    "must be https for any host but loopback (athena delivers to HTTPS only; \
                     allow_insecure_public_url = true only for a simulator on a container network)",
                ));
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(CoreError::config(
                    key("public_url"),
                    "must be an http(s) URL",
                ));
            }
        }
        if self.ack_budget < Duration::from_millis(100) || self.ack_budget >= Duration::from_secs(2)
        {
            return Err(CoreError::config(
                key("ack_budget"),
                "must be between 100ms and 2s (athena's hard limit is 2s)",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(CoreError::config(
                key("body_limit_bytes"),
                "must be between 1024 and 16777216",
            ));
        }
        if self.heartbeat_period < Duration::from_secs(1) {
            return Err(CoreError::config(
                key("heartbeat_period"),
                "must be at least 1s",
            ));
        }
        // athena's replay window has whole seconds, so a margin under 1s covers nothing.
        if self.catch_up_margin < Duration::from_secs(1) {
            return Err(CoreError::config(
                key("catch_up_margin"),
                "must be at least 1s",
            ));
        }
        if self.catch_up_max_window <= self.catch_up_margin {
            return Err(CoreError::config(
                key("catch_up_max_window"),
                "must be longer than catch_up_margin",
            ));
        }
        if self.catch_up_max_rows == 0 {
            return Err(CoreError::config(
                key("catch_up_max_rows"),
                "must be at least 1",
            ));
        }
        if self.dedup_capacity == 0 {
            return Err(CoreError::config(
                key("dedup_capacity"),
                "must be at least 1",
            ));
        }
        if self.notifications_topic.trim().is_empty() {
            return Err(CoreError::config(
                key("notifications_topic"),
                "must not be empty",
            ));
        }
        if self.adapter == AdapterKind::R4Backport && self.topic_base.is_none() {
            return Err(CoreError::config(
                key("topic_base"),
                "is required with adapter = \"r4-backport\"",
            ));
        }
        if let Some(t) = self
            .subscription_topics
            .iter()
            .find(|t| !t.contains('.') && self.adapter == AdapterKind::Athena)
        {
            return Err(CoreError::config(
                key("subscription_topics"),
                format!("`{t}` is not an athena topic code like Patient.update"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let ok = Config::new(
            195900,
            Secret::new("0123456789abcdef"),
            "https://h.example.invalid/hook",
        );
        ok.validate().unwrap();
        // athena delivers to HTTPS only: plain http only on loopback or when allowed.
        let mut c = ok.clone();
        c.public_url = "http://push.example.invalid/hook".into();
        assert!(c.validate().unwrap_err().to_string().contains("public_url"));
        c.allow_insecure_public_url = true;
        c.validate().unwrap();
        c.allow_insecure_public_url = false;
        c.public_url = "http://127.0.0.1:8088/hook".into();
        c.validate().unwrap();
        let mut c = ok.clone();
        c.secret = Secret::new("short");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("fhir_push.<name>.secret")
        );
        let mut c = ok.clone();
        c.replay_window = Duration::from_secs(3600);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("replay_window")
        );
        let mut c = ok.clone();
        c.max_event_age = Duration::from_secs(60);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_event_age")
        );
        let mut c = ok.clone();
        c.http.max_connections = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("fhir_push.<name>.http.max_connections")
        );
        let mut c = ok.clone();
        c.ack_budget = Duration::from_secs(3);
        assert!(c.validate().unwrap_err().to_string().contains("ack_budget"));
        let mut c = ok.clone();
        c.adapter = AdapterKind::R4Backport;
        assert!(c.validate().unwrap_err().to_string().contains("topic_base"));
        let mut c = ok.clone();
        c.catch_up_margin = Duration::from_millis(500);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("catch_up_margin")
        );
        let mut c = ok.clone();
        c.catch_up_max_window = Duration::from_secs(60);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("catch_up_max_window")
        );
        let mut c = ok.clone();
        c.catch_up_max_rows = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("catch_up_max_rows")
        );
        let toml_text = r#"
            practice_id = 195900
            secret = "0123456789abcdef"
            public_url = "https://h.example.invalid/hook"
            subscription_topics = ["Patient.update"]
            ack_budget = "1200ms"
        "#;
        let c: Config = toml_parse(toml_text);
        assert_eq!(c.ack_budget, Duration::from_millis(1200));
        assert!(c.catch_up);
        assert_eq!(c.catch_up_margin, Duration::from_secs(120));
        assert_eq!(c.catch_up_max_window, Duration::from_secs(86_400));
        assert_eq!(c.catch_up_max_rows, 50_000);
        assert_eq!(c.body_limit_bytes, 64 * 1024);
        assert_eq!(*c.http, HttpServerConfig::default());
        assert_eq!(c.replay_window, Duration::from_secs(3 * 3600));
        assert_eq!(c.max_event_age, Duration::from_secs(2 * 3600));
        assert_eq!(c.patients_topic(), "athena.patients.v1");
        assert_eq!(c.fhir_resources_topic(), "athena.fhir.resources.v1");
    }

    fn toml_parse(s: &str) -> Config {
        connector_core::config::load_str(s, &Default::default(), "ATHENA_CONNECT_TEST").unwrap()
    }
}

//! The `[sinks.write_back.<name>]` section of the `athena-connect` config (field docs are the
//! user docs). Validation is pure and names the dotted key; topics are created (when allowed) by
//! [`crate::run`], not here.

use std::time::Duration;

use connector_core::CoreError;
use connector_core::config::Validate;
use connector_core::dlq::DlqConfig;
use serde::Deserialize;

/// One write-back sink instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Command topics to consume. One topic per command family, several record types per topic
    /// (TopicRecordNameStrategy subjects); producers key each command by the entity it touches
    /// (`<practice_id>/<appointment_id or patient_id>`), which is the ordering key.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Where exactly one `CommandResult` per command is written, keyed by `command_id`.
    #[serde(default = "default_results_topic")]
    pub results_topic: String,
    /// Compacted ledger topic: command outcomes and in-flight intents, keyed by `command_id`.
    #[serde(default = "default_ledger_topic")]
    pub ledger_topic: String,
    /// How long the ledger remembers a command (its dedup horizon): a command re-sent with the
    /// same `command_id` later than this is treated as new. Set as `retention.ms` (with
    /// `cleanup.policy=compact,delete`) when the sink creates the ledger topic, so the ledger
    /// and its load time stay bounded; `0s` keeps every entry forever (compaction only).
    /// An existing topic keeps its own settings.
    #[serde(default = "default_ledger_retention", with = "humantime_serde")]
    pub ledger_retention: Duration,
    /// Consumer group; default `athena-connect-write-back-<name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Kafka `transactional.id` of the result producer; default the group id. Give every
    /// replica of the same sink its own (e.g. `write-back-${HOSTNAME}`).
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Commands performed against athena at the same time (different keys only: one key is
    /// always one at a time, in order).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Commands read but not yet answered above which the sink pauses its partitions (instead
    /// of stopping to poll, which would exceed `max.poll.interval.ms`); resumes at half.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Bytes of commands read but not yet committed (their Kafka key and payload until they
    /// finish, then their result records) above which the sink pauses its partitions, like
    /// `max_buffered`; resumes once both are at half. Default 64 MiB, at least 1 MiB. A single
    /// larger message is still read (alone), so the bound is exceeded by at most one message.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
    /// athena attempts per command for transient failures (5xx, timeouts on reads) before the
    /// command is answered FAILED. Throttling does not count: see `max_throttled_wait`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long an undecodable message's dead letter is retried (at most 8 attempts, backoff
    /// 0.5 s doubling to 8 s) before the sink stops with an error, leaving that message's offset
    /// uncommitted so a restart reads it again. Default 60 s, at least 1 s.
    #[serde(default = "default_dlq_retry_timeout", with = "humantime_serde")]
    pub dlq_retry_timeout: Duration,
    /// First backoff between attempts (full jitter, doubling).
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest backoff between attempts.
    #[serde(default = "default_backoff_cap", with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// How long one command may keep waiting out athena throttling (403/429) before it is
    /// answered FAILED with `RATE_LIMITED`.
    #[serde(default = "default_max_throttled_wait", with = "humantime_serde")]
    pub max_throttled_wait: Duration,
    /// The least time between the starts of two result transactions (results, ledger `done`
    /// records and offsets, one Kafka transaction each time). A finished command starts a
    /// transaction at once when none is running and the last one started longer ago than this;
    /// otherwise its result joins the next one. So a result waits at most this long plus one
    /// transaction, and the sink runs at most one transaction per interval: larger values mean
    /// fewer, bigger transactions (less broker work per command) and more latency. Default 10ms;
    /// `0s` commits back to back. At most 10s.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Static consumer-group membership (Kafka's `group.instance.id`, KIP-345): a restarted
    /// replica (after a crash, SIGKILL, OOM or a rolling restart) takes its partitions back at
    /// once instead of waiting for its predecessor's session to expire. The cost: a replica that
    /// stops and does not come back (scale-down, lost node) hands its partitions over only after
    /// `session_timeout`, not at once. Default true.
    #[serde(default = "yes")]
    pub static_membership: bool,
    /// The `group.instance.id` of this replica when `static_membership` is on; default the
    /// `transactional_id`, which every replica needs unique anyway (e.g.
    /// `write-back-${HOSTNAME}` or the pod name of a StatefulSet). Two live replicas with the
    /// same id fence each other.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// The consumer's session timeout (`session.timeout.ms`): how long the group waits for a
    /// silent member before its partitions go to the others. Default 10s (librdkafka: 45s), at
    /// least 6s (the broker's default `group.min.session.timeout.ms`); a process stalled longer
    /// than this loses its partitions to a rebalance. `kafka.consumer."session.timeout.ms"`
    /// wins when set.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// On shutdown, how long to let commands already at athena finish before stopping (the
    /// rest is reconciled on restart).
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Dead-letter queue for undecodable messages (Kafka Connect's `errors.deadletterqueue.*`).
    #[serde(default)]
    pub dlq: DlqConfig,
    /// Create missing topics (commands, results, ledger, DLQ) at start.
    #[serde(default = "yes")]
    pub create_topics: bool,
    /// Partitions for topics this sink creates.
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
    /// Card payments through athena (`collectpayment`).
    #[serde(default)]
    pub card_payments: CardPaymentsConfig,
}

/// Card capture through athena. **Turning this on puts this deployment in PCI DSS scope**: card
/// numbers then travel through the command topics, this process and its hosts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardPaymentsConfig {
    /// Accept `RecordPayment` commands carrying `card` (default false: they are REJECTED with
    /// `CARD_PAYMENTS_DISABLED` and no call is made).
    #[serde(default)]
    pub enabled: bool,
}

fn default_topics() -> Vec<String> {
    vec![
        "athena.cmd.patients.v1".into(),
        "athena.cmd.appointments.v1".into(),
        "athena.cmd.billing.v1".into(),
    ]
}
fn default_results_topic() -> String {
    "athena.cmd.results.v1".into()
}
fn default_ledger_topic() -> String {
    "athena.cmd.ledger.v1".into()
}
fn default_ledger_retention() -> Duration {
    // A week: far beyond any producer retry, and short enough that a busy sink's ledger loads
    // in seconds.
    Duration::from_secs(7 * 24 * 3600)
}
fn default_max_in_flight() -> usize {
    32
}
fn default_max_buffered() -> usize {
    2000
}
fn default_max_buffered_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_dlq_retry_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(200)
}
fn default_backoff_cap() -> Duration {
    Duration::from_secs(10)
}
fn default_max_throttled_wait() -> Duration {
    Duration::from_secs(600)
}
fn default_commit_interval() -> Duration {
    // Measured (docs/benchmarks.md): a transaction on a local broker takes a few ms, so at
    // 1,000 commands/s each carries about ten results and a result waits ~10 ms for Kafka.
    Duration::from_millis(10)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}
fn default_partitions() -> i32 {
    6
}
fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

impl Config {
    /// The consumer group of instance `name`.
    pub fn group_id(&self, name: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("athena-connect-write-back-{name}"))
    }
    /// The `transactional.id` of instance `name`.
    pub fn transactional_id(&self, name: &str) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| self.group_id(name))
    }
    /// The `group.instance.id` of instance `name`, or `None` without static membership.
    pub fn group_instance_id(&self, name: &str) -> Option<String> {
        self.static_membership.then(|| {
            self.group_instance_id
                .clone()
                .unwrap_or_else(|| self.transactional_id(name))
        })
    }
}

/// Dotted prefix of this section for instance `name`, for error messages.
fn key(name: &str, field: &str) -> String {
    format!("sinks.write_back.{name}.{field}")
}

impl Config {
    /// Like [`Validate::validate`], naming the instance in the dotted key.
    pub fn validate_named(&self, name: &str) -> Result<(), CoreError> {
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(CoreError::config(
                key(name, "topics"),
                "must list at least one non-empty topic",
            ));
        }
        for (field, t) in [
            ("results_topic", &self.results_topic),
            ("ledger_topic", &self.ledger_topic),
        ] {
            if t.trim().is_empty() {
                return Err(CoreError::config(key(name, field), "must not be empty"));
            }
            if self.topics.contains(t) {
                return Err(CoreError::config(
                    key(name, field),
                    "must differ from the command topics",
                ));
            }
        }
        if self.results_topic == self.ledger_topic {
            return Err(CoreError::config(
                key(name, "ledger_topic"),
                "must differ from results_topic",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000 {
            return Err(CoreError::config(
                key(name, "max_in_flight"),
                "must be between 1 and 10000",
            ));
        }
        if self.max_buffered < self.max_in_flight {
            return Err(CoreError::config(
                key(name, "max_buffered"),
                "must be at least max_in_flight",
            ));
        }
        if self.max_buffered_bytes < 1024 * 1024 {
            return Err(CoreError::config(
                key(name, "max_buffered_bytes"),
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.max_attempts == 0 {
            return Err(CoreError::config(
                key(name, "max_attempts"),
                "must be at least 1",
            ));
        }
        if self.dlq_retry_timeout < Duration::from_secs(1) {
            return Err(CoreError::config(
                key(name, "dlq_retry_timeout"),
                "must be at least 1s",
            ));
        }
        if self.backoff_base.is_zero() || self.backoff_cap < self.backoff_base {
            return Err(CoreError::config(
                key(name, "backoff_cap"),
                "backoff_base must be positive and backoff_cap at least backoff_base",
            ));
        }
        if self.commit_interval > Duration::from_secs(10) {
            return Err(CoreError::config(
                key(name, "commit_interval"),
                "must be at most 10s",
            ));
        }
        if self.session_timeout < Duration::from_secs(6)
            || self.session_timeout > Duration::from_secs(1800)
        {
            return Err(CoreError::config(
                key(name, "session_timeout"),
                "must be between 6s and 30m (the broker's default group.min/max.session.timeout.ms)",
            ));
        }
        if self
            .group_instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(CoreError::config(
                key(name, "group_instance_id"),
                "must not be empty (leave it out to use the transactional_id)",
            ));
        }
        if !self.ledger_retention.is_zero() && self.ledger_retention < Duration::from_secs(3600) {
            return Err(CoreError::config(
                key(name, "ledger_retention"),
                "must be 0s (keep forever) or at least 1h: it must outlast any in-flight command and producer retry",
            ));
        }
        if self.topic_partitions < 1 {
            return Err(CoreError::config(
                key(name, "topic_partitions"),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), CoreError> {
        self.validate_named("<name>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_key() {
        let c = Config::default();
        c.validate_named("main").unwrap();
        assert_eq!(c.group_id("main"), "athena-connect-write-back-main");
        assert!(!c.card_payments.enabled);

        let bad = Config {
            max_in_flight: 0,
            ..Default::default()
        };
        let e = bad.validate_named("main").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.main.max_in_flight"), "{e}");

        let mut bad = Config::default();
        bad.results_topic = bad.topics[0].clone();
        let e = bad.validate_named("x").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.x.results_topic"), "{e}");

        let c: Config = toml::from_str("ledger_retention = \"30m\"").unwrap();
        let e = c.validate_named("x").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.x.ledger_retention"), "{e}");
        let c: Config = toml::from_str("ledger_retention = \"0s\"").unwrap();
        c.validate_named("x").unwrap();

        assert_eq!(Config::default().max_buffered_bytes, 64 * 1024 * 1024);
        let c: Config = toml::from_str("max_buffered_bytes = 1000").unwrap();
        let e = c.validate_named("x").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.x.max_buffered_bytes"), "{e}");
        let c: Config = toml::from_str("max_buffered_bytes = 1048576").unwrap();
        c.validate_named("x").unwrap();
        let c: Config = toml::from_str("dlq_retry_timeout = \"100ms\"").unwrap();
        let e = c.validate_named("x").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.x.dlq_retry_timeout"), "{e}");

        let c = Config::default();
        assert_eq!(
            c.group_instance_id("main").as_deref(),
            Some("athena-connect-write-back-main")
        );
        let c: Config = toml::from_str("transactional_id = \"wb-pod-1\"").unwrap();
        assert_eq!(c.group_instance_id("main").as_deref(), Some("wb-pod-1"));
        let c: Config = toml::from_str("static_membership = false").unwrap();
        assert_eq!(c.group_instance_id("main"), None);
        let c: Config = toml::from_str("session_timeout = \"1s\"").unwrap();
        let e = c.validate_named("x").unwrap_err().to_string();
        assert!(e.contains("sinks.write_back.x.session_timeout"), "{e}");
        let c: Config = toml::from_str("commit_interval = \"0s\"").unwrap();
        c.validate_named("x").unwrap();

        let e = toml::from_str::<Config>("nope = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}

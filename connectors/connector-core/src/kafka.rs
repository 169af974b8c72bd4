//! Kafka client settings and builders.
//!
//! The builders bake in the settings our delivery guarantees depend on, so no connector can
//! forget them:
//! - producers are idempotent with `acks=all` (a retried send never duplicates or reorders within
//!   a partition), and sources move their cursor only after every delivery future resolved;
//! - consumers never auto-commit and never auto-store offsets (`enable.auto.offset.store=false`,
//!   the rust-rdkafka at-least-once pattern): an offset is stored only after the message was
//!   fully handled, and they read only committed transactional data.
//!
//! - every client's memory is capped ([`PRODUCER_CAPS`], [`CONSUMER_CAPS`]): librdkafka's own
//!   defaults let one producer queue 1 GiB and one consumer prefetch 64 MiB plus a 50 MiB fetch,
//!   which no pod limit survives once a backlog arrives. The defaults here fit the memory budget
//!   in `docs/operations.md` ("Memory").
//!
//! Any librdkafka property can be passed through (`properties` for every client, `producer` /
//! `consumer` for one kind), except that the settings above cannot be weakened: validation
//! rejects them with the dotted key named, and a memory cap above its bound.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::config::Validate;
use crate::error::CoreError;
use crate::secret::Secret;

/// How to reach the Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// `client.id` prefix reported to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// TLS and SASL settings.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Replication factor for topics athena-connect creates (state, results, dead-letter).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// librdkafka properties applied to every client.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties applied to producers only.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// librdkafka properties applied to consumers only.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

fn default_client_id() -> String {
    "athena-connect".to_string()
}
fn default_replication() -> i32 {
    3
}

/// Security protocol, as librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL (local development only).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// TLS and SASL settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password (a secret: inline, `${VAR}`, or `{ file = "..." }`).
    pub sasl_password: Option<Secret>,
    /// CA bundle to verify the brokers.
    pub ssl_ca_location: Option<String>,
    /// Client certificate for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// Client key for mutual TLS.
    pub ssl_key_location: Option<String>,
    /// Password of the client key.
    pub ssl_key_password: Option<Secret>,
}

/// Settings the delivery guarantees depend on; pass-through may not change them.
const PINNED_PRODUCER: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];
const PINNED_CONSUMER: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

/// A librdkafka setting that bounds a client's memory: the default the builders set when the
/// config does not, and the range pass-through may set it to.
#[derive(Debug, Clone, Copy)]
pub struct MemoryCap {
    /// The librdkafka property.
    pub key: &'static str,
    /// Another name of the same property (librdkafka alias), never set by the builders.
    pub alias: Option<&'static str>,
    /// Set by the builders unless `properties` or the client's own section sets it.
    pub default: u64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted: above it one client alone would take a large share of the
    /// documented pod limit.
    pub max: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Producer queue caps. The queue holds every message not yet acknowledged; a full queue makes
/// sends wait (`produce` loops) or answer 503 (push receiver), never fail for good. 16 MiB is
/// many times the largest batch a connector hands over at once at athena's request rates.
pub const PRODUCER_CAPS: &[MemoryCap] = &[
    MemoryCap {
        key: "queue.buffering.max.kbytes",
        alias: None,
        default: 16 * KIB,
        min: 1,
        max: 64 * KIB,
    },
    MemoryCap {
        key: "queue.buffering.max.messages",
        alias: None,
        default: 10_000,
        // 0 would mean "no limit".
        min: 1,
        max: 100_000,
    },
];

/// Consumer prefetch caps. The high-level consumer keeps one prefetch queue
/// (`queued.max.messages.kbytes`, possibly overshot by one fetch) and receives fetch responses of
/// up to `fetch.max.bytes`; a message larger than `max.partition.fetch.bytes` is still fetched
/// (librdkafka grows the request), so these bound memory without refusing large messages.
pub const CONSUMER_CAPS: &[MemoryCap] = &[
    MemoryCap {
        key: "queued.max.messages.kbytes",
        alias: None,
        default: 16 * KIB,
        min: 1,
        max: 64 * KIB,
    },
    MemoryCap {
        key: "fetch.max.bytes",
        alias: None,
        default: 16 * MIB,
        min: 1,
        max: 64 * MIB,
    },
    MemoryCap {
        key: "max.partition.fetch.bytes",
        alias: Some("fetch.message.max.bytes"),
        default: MIB,
        min: 1,
        max: 16 * MIB,
    },
];

/// librdkafka's default `message.max.bytes`: the largest message a client sends or expects.
const DEFAULT_MESSAGE_MAX_BYTES: u64 = 1_000_000;

const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), CoreError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(CoreError::config(
                "kafka.bootstrap_servers",
                "must list at least one host:port",
            ));
        }
        if self.replication_factor < 1 {
            return Err(CoreError::config(
                "kafka.replication_factor",
                "must be at least 1",
            ));
        }
        for (section, map, pinned) in [
            ("properties", &self.properties, PINNED_PRODUCER),
            ("properties", &self.properties, PINNED_CONSUMER),
            ("producer", &self.producer, PINNED_PRODUCER),
            ("consumer", &self.consumer, PINNED_CONSUMER),
        ] {
            for (key, required) in pinned {
                if let Some(v) = map.get(*key)
                    && !v.eq_ignore_ascii_case(required)
                {
                    return Err(CoreError::config(
                        format!("kafka.{section}.{key}"),
                        format!("must stay {required}: the delivery guarantees depend on it"),
                    ));
                }
            }
        }
        self.validate_memory_caps()?;
        let sec = &self.security;
        if sec.protocol.uses_sasl() {
            match sec.sasl_mechanism.as_deref() {
                Some(m) if SASL_MECHANISMS.contains(&m) => {}
                Some(_) | None => {
                    return Err(CoreError::config(
                        "kafka.security.sasl_mechanism",
                        format!("required with SASL; one of {}", SASL_MECHANISMS.join(", ")),
                    ));
                }
            }
            if sec.sasl_mechanism.as_deref() != Some("OAUTHBEARER")
                && (sec.sasl_username.is_none() || sec.sasl_password.is_none())
            {
                return Err(CoreError::config(
                    "kafka.security.sasl_username",
                    "sasl_username and sasl_password are required for this mechanism",
                ));
            }
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// The caps of [`PRODUCER_CAPS`] / [`CONSUMER_CAPS`], wherever pass-through sets them, and
    /// the relations librdkafka needs: the producer queue and a consumer's fetch must each hold
    /// one message of `message.max.bytes` (else that message could never be queued or fetched).
    fn validate_memory_caps(&self) -> Result<(), CoreError> {
        for (kind, section, caps) in [
            ("producer", &self.producer, PRODUCER_CAPS),
            ("consumer", &self.consumer, CONSUMER_CAPS),
        ] {
            for (name, map) in [("properties", &self.properties), (kind, section)] {
                for cap in caps {
                    for key in std::iter::once(cap.key).chain(cap.alias) {
                        if let Some(v) = map.get(key) {
                            let ok = v
                                .trim()
                                .parse::<u64>()
                                .ok()
                                .filter(|n| (cap.min..=cap.max).contains(n));
                            if ok.is_none() {
                                return Err(CoreError::config(
                                    format!("kafka.{name}.{key}"),
                                    format!(
                                        "must be a whole number from {} to {} (default {}): it bounds this client's memory, see docs/operations.md (Memory)",
                                        cap.min, cap.max, cap.default
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            let message_max = self
                .effective(kind, section, "message.max.bytes")
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
            let (key, unit) = match kind {
                "producer" => ("queue.buffering.max.kbytes", KIB),
                _ => ("fetch.max.bytes", 1),
            };
            let (name, value) = match self.effective(kind, section, key) {
                Some((name, v)) => (name, v.trim().parse::<u64>().unwrap_or(0) * unit),
                None => (
                    kind,
                    caps.iter().find(|c| c.key == key).map_or(0, |c| c.default) * unit,
                ),
            };
            if value < message_max {
                return Err(CoreError::config(
                    format!("kafka.{name}.{key}"),
                    format!(
                        "must hold one message of message.max.bytes ({message_max} bytes): raise it or lower message.max.bytes"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Where `key` is set for a client of kind `kind` (its `section` wins over `properties`,
    /// as in the builders) and its value.
    fn effective<'a>(
        &'a self,
        kind: &'static str,
        section: &'a BTreeMap<String, String>,
        key: &str,
    ) -> Option<(&'static str, &'a String)> {
        section
            .get(key)
            .map(|v| (kind, v))
            .or_else(|| self.properties.get(key).map(|v| ("properties", v)))
    }

    /// Sets every cap of `caps` that neither `properties` nor `section` sets (by any of its
    /// names: setting both names would leave librdkafka's choice to map order).
    fn set_cap_defaults(
        &self,
        c: &mut ClientConfig,
        section: &BTreeMap<String, String>,
        caps: &[MemoryCap],
    ) {
        for cap in caps {
            let set = std::iter::once(cap.key)
                .chain(cap.alias)
                .any(|k| self.properties.contains_key(k) || section.contains_key(k));
            if !set {
                c.set(cap.key, cap.default.to_string());
            }
        }
    }

    /// A plaintext config for `bootstrap_servers` (tests, local development).
    pub fn plaintext(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: default_client_id(),
            security: KafkaSecurity::default(),
            replication_factor: 1,
            properties: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", &self.client_id);
        let s = &self.security;
        c.set("security.protocol", s.protocol.as_str());
        if let Some(m) = &s.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let Some(u) = &s.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &s.sasl_password {
            c.set("sasl.password", p.expose());
        }
        for (k, v) in [
            ("ssl.ca.location", &s.ssl_ca_location),
            ("ssl.certificate.location", &s.ssl_certificate_location),
            ("ssl.key.location", &s.ssl_key_location),
        ] {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        if let Some(p) = &s.ssl_key_password {
            c.set("ssl.key.password", p.expose());
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// librdkafka settings for a producer: idempotent, `acks=all`, small linger for batching.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("linger.ms", "5");
        c.set("compression.type", "lz4");
        c.set("message.timeout.ms", "120000");
        self.set_cap_defaults(&mut c, &self.producer, PRODUCER_CAPS);
        for (k, v) in &self.producer {
            c.set(k, v);
        }
        for (k, v) in PINNED_PRODUCER {
            c.set(*k, *v);
        }
        c
    }

    /// librdkafka settings for a consumer in `group_id`: manual offset store and commit,
    /// `read_committed`, cooperative rebalancing, earliest offset for a new group.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id);
        c.set("auto.offset.reset", "earliest");
        c.set("isolation.level", "read_committed");
        c.set("partition.assignment.strategy", "cooperative-sticky");
        self.set_cap_defaults(&mut c, &self.consumer, CONSUMER_CAPS);
        for (k, v) in &self.consumer {
            c.set(k, v);
        }
        for (k, v) in PINNED_CONSUMER {
            c.set(*k, *v);
        }
        c
    }

    /// Builds an idempotent producer.
    pub fn build_producer(&self) -> Result<FutureProducer, CoreError> {
        self.producer_config()
            .create()
            .map_err(|source| CoreError::Kafka {
                operation: "create producer",
                source,
            })
    }

    /// Builds a transactional producer with `transactional_id` (exactly-once modes). The caller
    /// runs `init_transactions` before use; a second instance with the same id fences this one.
    pub fn build_transactional_producer(
        &self,
        transactional_id: &str,
    ) -> Result<FutureProducer, CoreError> {
        let mut c = self.producer_config();
        c.set("transactional.id", transactional_id);
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        if c.get("transaction.timeout.ms").is_none() {
            let msg_timeout = c.get("message.timeout.ms").unwrap_or("120000").to_string();
            c.set("transaction.timeout.ms", msg_timeout);
        }
        c.create().map_err(|source| CoreError::Kafka {
            operation: "create transactional producer",
            source,
        })
    }

    /// Builds a stream consumer in `group_id`.
    pub fn build_consumer(&self, group_id: &str) -> Result<StreamConsumer, CoreError> {
        self.consumer_config(group_id)
            .create()
            .map_err(|source| CoreError::Kafka {
                operation: "create consumer",
                source,
            })
    }

    /// Builds an admin client.
    pub fn build_admin(&self) -> Result<AdminClient<DefaultClientContext>, CoreError> {
        self.base().create().map_err(|source| CoreError::Kafka {
            operation: "create admin client",
            source,
        })
    }

    /// Asks the cluster for its metadata; fails within `timeout` when no broker answers.
    pub async fn check_connectivity(&self, timeout: Duration) -> Result<usize, CoreError> {
        let mut c = self.base();
        c.set("group.id", "athena-connect-check");
        let consumer: rdkafka::consumer::BaseConsumer =
            c.create().map_err(|source| CoreError::Kafka {
                operation: "create client",
                source,
            })?;
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
                .map_err(|source| CoreError::Kafka {
                    operation: "fetch metadata",
                    source,
                })
        })
        .await
        .map_err(|e| CoreError::task("metadata", &e))?
    }
}

/// How often clients built with [`KafkaConfig::with_statistics`] report librdkafka statistics.
/// Statistics cost a JSON document per client per interval; 15 s matches a usual scrape.
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(15);

/// A client context that records selected librdkafka statistics of `connector`'s client into
/// the process metrics ([`crate::metrics::Metrics::record_kafka_statistics`]). Without such a
/// context, librdkafka's default would log every statistics document.
#[derive(Debug, Clone)]
pub struct StatsContext {
    /// Connector name (metric label).
    pub connector: String,
    /// `consumer` or `producer` (metric label).
    pub client: &'static str,
}

impl StatsContext {
    /// Records the statistics of a client of kind `client` of `connector`.
    pub fn new(connector: &str, client: &'static str) -> Self {
        StatsContext {
            connector: connector.to_string(),
            client,
        }
    }
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        crate::metrics::global().record_kafka_statistics(&self.connector, self.client, &statistics);
    }
}

impl ConsumerContext for StatsContext {}

impl KafkaConfig {
    /// Turns on librdkafka statistics (every [`STATISTICS_INTERVAL`]) in `c`, unless the config
    /// sets `statistics.interval.ms` itself. Only for clients whose context records them
    /// ([`StatsContext`], or a context that calls
    /// [`crate::metrics::Metrics::record_kafka_statistics`]).
    pub fn with_statistics(mut c: ClientConfig) -> ClientConfig {
        if c.get("statistics.interval.ms").is_none() {
            c.set(
                "statistics.interval.ms",
                STATISTICS_INTERVAL.as_millis().to_string(),
            );
        }
        c
    }

    /// Builds a stream consumer in `group_id` whose librdkafka statistics are recorded as
    /// `connector`'s consumer.
    pub fn build_consumer_with_stats(
        &self,
        group_id: &str,
        connector: &str,
    ) -> Result<StreamConsumer<StatsContext>, CoreError> {
        Self::with_statistics(self.consumer_config(group_id))
            .create_with_context(StatsContext::new(connector, "consumer"))
            .map_err(|source| CoreError::Kafka {
                operation: "create consumer",
                source,
            })
    }
}

/// A topic athena-connect creates when it is missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Log compaction (state and ledger topics) instead of deletion.
    pub compacted: bool,
    /// `retention.ms` at creation. On a compacted topic this adds `delete` to the cleanup
    /// policy, so keys not rewritten within the period disappear (bounded ledgers).
    pub retention: Option<Duration>,
}

impl TopicSpec {
    /// A regular (delete-retention) topic.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: false,
            retention: None,
        }
    }
    /// A compacted topic (cursors, ledgers).
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: true,
            retention: None,
        }
    }
    /// The same topic with `retention.ms` set at creation (see [`TopicSpec::retention`]).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }
}

/// Creates the topics that do not exist yet; existing topics are left as they are.
pub async fn ensure_topics(
    admin: &AdminClient<DefaultClientContext>,
    replication_factor: i32,
    topics: &[TopicSpec],
) -> Result<(), CoreError> {
    let retention_ms: Vec<Option<String>> = topics
        .iter()
        .map(|t| t.retention.map(|r| r.as_millis().to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retention_ms)
        .map(|(t, retention_ms)| {
            let nt = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(replication_factor),
            );
            let nt = match (t.compacted, retention_ms) {
                (true, Some(_)) => nt.set("cleanup.policy", "compact,delete"),
                (true, None) => nt.set("cleanup.policy", "compact"),
                (false, _) => nt,
            };
            match retention_ms {
                Some(ms) => nt.set("retention.ms", ms),
                None => nt,
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|source| CoreError::Kafka {
            operation: "create topics",
            source,
        })?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "Topic creation failed.");
                return Err(CoreError::Kafka {
                    operation: "create topics",
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_settings_cannot_be_weakened() {
        let mut k = KafkaConfig::plaintext("127.0.0.1:9092");
        k.producer.insert("acks".into(), "1".into());
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.producer.acks"), "{e}");

        let mut k = KafkaConfig::plaintext("127.0.0.1:9092");
        k.properties
            .insert("enable.auto.commit".into(), "true".into());
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.properties.enable.auto.commit"), "{e}");

        let mut k = KafkaConfig::plaintext("127.0.0.1:9092");
        k.producer.insert("linger.ms".into(), "50".into());
        k.validate().unwrap();
        let c = k.producer_config();
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        let c = k.consumer_config("g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
    }

    #[test]
    fn memory_caps_have_defaults_and_bounds() {
        let k = KafkaConfig::plaintext("127.0.0.1:9092");
        k.validate().unwrap();
        let p = k.producer_config();
        assert_eq!(p.get("queue.buffering.max.kbytes"), Some("16384"));
        assert_eq!(p.get("queue.buffering.max.messages"), Some("10000"));
        let c = k.consumer_config("g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(c.get("fetch.max.bytes"), Some("16777216"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
        // Every default lies within its own bounds.
        for cap in PRODUCER_CAPS.iter().chain(CONSUMER_CAPS) {
            assert!((cap.min..=cap.max).contains(&cap.default), "{cap:?}");
        }

        // Overridable within the bounds, from the client's section or `properties`.
        let mut k = KafkaConfig::plaintext("b:9092");
        k.producer
            .insert("queue.buffering.max.kbytes".into(), "32768".into());
        k.properties
            .insert("queued.max.messages.kbytes".into(), "4096".into());
        k.consumer
            .insert("fetch.message.max.bytes".into(), "2097152".into());
        k.validate().unwrap();
        assert_eq!(
            k.producer_config().get("queue.buffering.max.kbytes"),
            Some("32768")
        );
        let c = k.consumer_config("g");
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"));
        assert_eq!(c.get("fetch.message.max.bytes"), Some("2097152"));
        assert_eq!(
            c.get("max.partition.fetch.bytes"),
            None,
            "the alias is set: the builder sets no second name"
        );

        // Above the bound, zero or not a number: refused, naming the key.
        for (section, key, value) in [
            ("producer", "queue.buffering.max.kbytes", "1048576"),
            ("producer", "queue.buffering.max.messages", "0"),
            ("properties", "queue.buffering.max.messages", "1000000"),
            ("consumer", "queued.max.messages.kbytes", "65537"),
            ("consumer", "fetch.max.bytes", "100000000"),
            ("consumer", "max.partition.fetch.bytes", "lots"),
            ("consumer", "fetch.message.max.bytes", "104857600"),
        ] {
            let mut k = KafkaConfig::plaintext("b:9092");
            match section {
                "producer" => &mut k.producer,
                "consumer" => &mut k.consumer,
                _ => &mut k.properties,
            }
            .insert(key.into(), value.into());
            let e = k.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("kafka.{section}.{key}")), "{e}");
        }

        // The producer queue and a fetch must each hold one message of message.max.bytes.
        let mut k = KafkaConfig::plaintext("b:9092");
        k.properties
            .insert("message.max.bytes".into(), "20000000".into());
        let e = k.validate().unwrap_err().to_string();
        assert!(
            e.contains("kafka.producer.queue.buffering.max.kbytes"),
            "{e}"
        );
        k.producer
            .insert("queue.buffering.max.kbytes".into(), "20000".into());
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.consumer.fetch.max.bytes"), "{e}");
        k.consumer
            .insert("fetch.max.bytes".into(), "20000000".into());
        k.validate().unwrap();
    }

    #[test]
    fn sasl_requires_mechanism_and_credentials() {
        let mut k = KafkaConfig::plaintext("b:9092");
        k.security.protocol = SecurityProtocol::SaslSsl;
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.security.sasl_mechanism"), "{e}");
        k.security.sasl_mechanism = Some("SCRAM-SHA-512".into());
        assert!(k.validate().is_err());
        k.security.sasl_username = Some("svc".into());
        k.security.sasl_password = Some(Secret::new("pw"));
        k.validate().unwrap();
        let c = k.producer_config();
        assert_eq!(c.get("sasl.password"), Some("pw"));
        assert!(!format!("{k:?}").contains("pw\""));
    }
}

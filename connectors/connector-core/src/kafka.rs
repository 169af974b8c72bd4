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
//! Any librdkafka property can be passed through (`properties` for every client, `producer` /
//! `consumer` for one kind), except that the settings above cannot be weakened: validation
//! rejects them with the dotted key named.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
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

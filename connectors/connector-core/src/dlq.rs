//! The dead-letter queue: messages that can never be processed (not Avro, unknown schema id,
//! wrong record type, a focus athena no longer has) are copied to a DLQ topic with their key,
//! value and headers byte for byte, plus Kafka Connect's `__connect.errors.*` context headers,
//! and the consumer moves on. A source parks an event Kafka refused for good (too large, not
//! authorised) the same way with [`DeadLetterQueue::send_unwritten`].
//!
//! Every dead letter carries a [`Reason`]: the stage that failed, the error's class and a short
//! error name, and a message. The headers therefore name the real failure (an athena 404 in the
//! task is `TASK_PUT` / `athena.NotFound`, not an Avro error).
//!
//! The exception message is PHI-redacted (library errors can echo payload fragments): quoted
//! text and long digit runs are masked, and it is truncated. Kafka Connect's
//! `errors.log.include.messages=false` spirit: nothing of the payload leaves through the headers.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use std::borrow::Cow;

use crate::emit::{DeadLettered, InternalEvent};
use crate::error::{CoreError, ErrorClass};
use crate::kafka::TopicSpec;

/// Where and how dead letters are written (Kafka Connect's `errors.deadletterqueue.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqConfig {
    /// DLQ topic; default `<source topic>.dlq` when absent.
    pub topic: Option<String>,
    /// Add `__connect.errors.*` context headers (default true).
    #[serde(default = "yes")]
    pub context_headers: bool,
}

fn yes() -> bool {
    true
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            topic: None,
            context_headers: true,
        }
    }
}

impl DlqConfig {
    /// The DLQ topic for messages from `source_topic`: the configured one, else
    /// `<source topic>.dlq`.
    pub fn topic_for(&self, source_topic: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{source_topic}.dlq"))
    }

    /// The DLQ topics of `source_topics` (deduplicated), one partition each, for
    /// [`crate::kafka::ensure_topics`] at start: a dead letter must never fail because its topic
    /// is missing.
    pub fn topic_specs<'a>(
        &self,
        source_topics: impl IntoIterator<Item = &'a str>,
    ) -> Vec<TopicSpec> {
        let mut names: Vec<String> = source_topics
            .into_iter()
            .map(|t| self.topic_for(t))
            .collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| TopicSpec::new(n, 1)).collect()
    }
}

/// The processing stage that failed (`__connect.errors.stage`), in Connect's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the key.
    KeyConverter,
    /// Decoding the value.
    ValueConverter,
    /// Handling a decoded record (a sink's `put`, the push inflater's athena read).
    Task,
    /// A source reading or mapping a record from athena.
    TaskPoll,
    /// Writing a record to Kafka.
    KafkaProduce,
}

impl Stage {
    /// Kafka Connect's name of the stage.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Task => "TASK_PUT",
            Stage::TaskPoll => "TASK_POLL",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
        }
    }
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The stage that failed (`__connect.errors.stage`).
    pub stage: Stage,
    /// The class of the error (`__connect.errors.athena_connect.error.class`): `permanent`, or
    /// `retriable` for a message parked after its retries ran out.
    pub class: ErrorClass,
    /// A short, bounded name of the error (`__connect.errors.exception.class.name`), e.g.
    /// `athena.NotFound`, `kafka.MessageSizeTooLarge`, `AvroDecodeError`.
    pub error: Cow<'static, str>,
    /// What happened (`__connect.errors.exception.message`); PHI-redacted when written.
    pub message: String,
}

impl Reason {
    /// A reason from its parts.
    pub fn new(
        stage: Stage,
        class: ErrorClass,
        error: impl Into<Cow<'static, str>>,
        message: impl std::fmt::Display,
    ) -> Self {
        Reason {
            stage,
            class,
            error: error.into(),
            message: message.to_string(),
        }
    }

    /// The reason of a core error (decode failures, registry refusals, Kafka errors).
    pub fn from_core(error: &CoreError, stage: Stage) -> Self {
        let name: Cow<'static, str> = match error {
            CoreError::Kafka { source, .. } => crate::kafka_errors::error_name(source).into(),
            other => core_error_name(other).into(),
        };
        Reason::new(stage, error.class(), name, error)
    }
}

/// Writes dead letters for one connector task.
#[derive(Clone)]
pub struct DeadLetterQueue {
    producer: FutureProducer,
    config: DlqConfig,
    connector: String,
    task: String,
}

impl std::fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("config", &self.config)
            .field("connector", &self.connector)
            .finish()
    }
}

impl DeadLetterQueue {
    /// A DLQ writer for `connector` task `task`.
    pub fn new(
        producer: FutureProducer,
        config: DlqConfig,
        connector: impl Into<String>,
        task: impl Into<String>,
    ) -> Self {
        DeadLetterQueue {
            producer,
            config,
            connector: connector.into(),
            task: task.into(),
        }
    }

    /// The DLQ topic for messages from `source_topic` (see [`DlqConfig::topic_for`]).
    pub fn topic_for(&self, source_topic: &str) -> String {
        self.config.topic_for(source_topic)
    }

    /// Copies the consumed message `msg` to the DLQ with the `__connect.errors.*` context of
    /// `reason`, waits until Kafka acknowledged it (only then may the caller store the message's
    /// offset), and counts it in `dlq_produce_requests`.
    pub async fn send_reason(&self, msg: &OwnedMessage, reason: &Reason) -> Result<(), CoreError> {
        self.write_message(msg, reason).await?;
        self.count(msg.topic());
        Ok(())
    }

    /// Parks a record a source could not write to `topic` (Kafka refused it for good): the DLQ
    /// of `topic` receives its key, value and headers plus the context of `reason` (partition and
    /// offset `-1`: it never had any), acknowledged before this returns; counted in
    /// `dlq_produce_requests`.
    pub async fn send_unwritten(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
        reason: &Reason,
    ) -> Result<(), CoreError> {
        let origin = Origin {
            topic,
            partition: -1,
            offset: -1,
            headers,
        };
        self.write(&self.topic_for(topic), key, value, &origin, reason)
            .await?;
        self.count(topic);
        Ok(())
    }

    async fn write_message(&self, msg: &OwnedMessage, reason: &Reason) -> Result<(), CoreError> {
        let origin = Origin {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            headers: msg.headers(),
        };
        self.write(
            &self.topic_for(msg.topic()),
            msg.key(),
            msg.payload(),
            &origin,
            reason,
        )
        .await
    }

    async fn write(
        &self,
        dlq_topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        origin: &Origin<'_>,
        reason: &Reason,
    ) -> Result<(), CoreError> {
        let headers = self.context(origin, reason);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        crate::produce::produce_all(&self.producer, std::iter::once(record))
            .await
            .map(|_| ())
            .map_err(|f| CoreError::Kafka {
                operation: "produce dead letter",
                source: f.source,
            })
    }

    fn count(&self, topic: &str) {
        DeadLettered {
            connector: &self.connector,
            dlq_topic: &self.topic_for(topic),
        }
        .emit();
    }

    /// The original headers of `msg` followed by the `__connect.errors.*` context of `reason`.
    pub fn headers(&self, msg: &OwnedMessage, reason: &Reason) -> OwnedHeaders {
        self.context(
            &Origin {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
                headers: msg.headers(),
            },
            reason,
        )
    }

    fn context(&self, origin: &Origin<'_>, reason: &Reason) -> OwnedHeaders {
        let mut out = OwnedHeaders::new();
        if let Some(h) = origin.headers {
            for header in h.iter() {
                out = out.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        if !self.config.context_headers {
            return out;
        }
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let message = redact(&reason.message);
        let pairs: [(&str, &str); 10] = [
            ("__connect.errors.topic", origin.topic),
            ("__connect.errors.partition", &partition),
            ("__connect.errors.offset", &offset),
            ("__connect.errors.connector.name", &self.connector),
            ("__connect.errors.task.id", &self.task),
            ("__connect.errors.stage", reason.stage.as_str()),
            ("__connect.errors.class.name", "athena_connect"),
            ("__connect.errors.exception.class.name", &reason.error),
            ("__connect.errors.exception.message", &message),
            (
                "__connect.errors.athena_connect.error.class",
                reason.class.label(),
            ),
        ];
        for (k, v) in pairs {
            out = out.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        out
    }
}

/// Where a dead letter came from.
struct Origin<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    headers: Option<&'a OwnedHeaders>,
}

fn core_error_name(e: &CoreError) -> &'static str {
    match e {
        CoreError::NotWireFormat(_) => "NotWireFormat",
        CoreError::UnknownSchemaId(_) => "UnknownSchemaId",
        CoreError::Decode(_) => "AvroDecodeError",
        CoreError::Encode(_) => "AvroEncodeError",
        CoreError::RegistryUnavailable(_) => "RegistryUnavailable",
        CoreError::RegistryRejected(_) => "RegistryRejected",
        CoreError::Kafka { .. } => "KafkaError",
        CoreError::Config { .. } | CoreError::ConfigRead { .. } => "ConfigError",
        CoreError::Schema { .. } => "SchemaError",
        CoreError::Telemetry(_) => "TelemetryError",
        CoreError::Task { .. } => "TaskFailed",
    }
}

/// Masks what could be patient data in an error message: quoted text, runs of four or more
/// digits (dates, phone numbers, record numbers), and anything past 300 characters.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(320));
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // Skip to the matching quote (or the end).
                for n in chars.by_ref() {
                    if n == c {
                        break;
                    }
                }
                out.push_str("<redacted>");
            }
            d if d.is_ascii_digit() => {
                let mut run = String::from(d);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_digit() || n == '/' || n == '-' {
                        run.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if run.chars().filter(char::is_ascii_digit).count() >= 4 {
                    out.push_str("<n>");
                } else {
                    out.push_str(&run);
                }
            }
            other => out.push(other),
        }
        if out.len() > 300 {
            out.truncate(300);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DLQ writer whose producer never connects (the header tests send nothing).
    fn offline(connector: &str, task: &str) -> DeadLetterQueue {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        DeadLetterQueue::new(producer, DlqConfig::default(), connector, task)
    }

    #[test]
    fn redaction_masks_payload_fragments() {
        let r = redact(
            r#"value String("Synthia Sampleton") for field dob 01/02/1990, phone 5555550123, id 42"#,
        );
        assert!(!r.contains("Synthia"), "{r}");
        assert!(!r.contains("1990"), "{r}");
        assert!(!r.contains("5555550123"), "{r}");
        assert!(r.contains("id 42"), "{r}");
        assert!(redact(&"x".repeat(1000)).chars().count() <= 302);
    }

    #[test]
    fn context_headers_follow_original_headers() {
        let dlq = offline("sink", "0");
        let orig = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(&b"00-abc"[..]),
        });
        let msg = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "cmds".into(),
            rdkafka::Timestamp::NotAvailable,
            2,
            17,
            Some(orig),
        );
        let h = dlq.headers(
            &msg,
            &Reason::from_core(&CoreError::UnknownSchemaId(9), Stage::ValueConverter),
        );
        let get = |k: &str| crate::headers::get_str(&h, k).map(str::to_string);
        assert_eq!(get("traceparent").as_deref(), Some("00-abc"));
        assert_eq!(get("__connect.errors.topic").as_deref(), Some("cmds"));
        assert_eq!(get("__connect.errors.partition").as_deref(), Some("2"));
        assert_eq!(get("__connect.errors.offset").as_deref(), Some("17"));
        assert_eq!(
            get("__connect.errors.stage").as_deref(),
            Some("VALUE_CONVERTER")
        );
        assert_eq!(
            get("__connect.errors.exception.class.name").as_deref(),
            Some("UnknownSchemaId")
        );
        assert_eq!(dlq.topic_for("cmds"), "cmds.dlq");
        assert_eq!(
            get("__connect.errors.athena_connect.error.class").as_deref(),
            Some("permanent")
        );
    }

    #[test]
    fn a_reason_names_the_real_stage_and_error() {
        let dlq = offline("push", "inflate");
        let msg = OwnedMessage::new(
            Some(b"v".to_vec()),
            None,
            "notifications".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            3,
            None,
        );
        let reason = Reason::new(
            Stage::Task,
            ErrorClass::Permanent,
            "athena.NotFound",
            "athena: not found: patient \"Synthia\" 19900102",
        );
        let h = dlq.headers(&msg, &reason);
        let get = |k: &str| crate::headers::get_str(&h, k).map(str::to_string);
        assert_eq!(get("__connect.errors.stage").as_deref(), Some("TASK_PUT"));
        assert_eq!(
            get("__connect.errors.exception.class.name").as_deref(),
            Some("athena.NotFound")
        );
        let m = get("__connect.errors.exception.message").unwrap();
        assert!(!m.contains("Synthia") && !m.contains("1990"), "{m}");
        let too_big = CoreError::Kafka {
            operation: "produce",
            source: rdkafka::error::KafkaError::MessageProduction(
                rdkafka::error::RDKafkaErrorCode::MessageSizeTooLarge,
            ),
        };
        let r = Reason::from_core(&too_big, Stage::KafkaProduce);
        assert_eq!(r.error, "kafka.MessageSizeTooLarge");
        assert_eq!(r.class, ErrorClass::Permanent);
        assert_eq!(r.stage.as_str(), "KAFKA_PRODUCE");
    }

    #[test]
    fn dlq_topics_are_derived_and_deduplicated() {
        let specs = DlqConfig::default().topic_specs(["a", "b", "a"]);
        let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["a.dlq", "b.dlq"]);
        let fixed = DlqConfig {
            topic: Some("all.dlq".into()),
            context_headers: true,
        };
        assert_eq!(fixed.topic_specs(["a", "b"]).len(), 1);
    }
}

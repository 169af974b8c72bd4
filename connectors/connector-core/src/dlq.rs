//! The dead-letter queue: messages that can never be processed (not Avro, unknown schema id,
//! wrong record type) are copied to a DLQ topic with their key, value and headers byte for byte,
//! plus Kafka Connect's `__connect.errors.*` context headers, and the consumer moves on.
//!
//! The exception message is PHI-redacted (library errors can echo payload fragments): quoted
//! text and long digit runs are masked, and it is truncated. Kafka Connect's
//! `errors.log.include.messages=false` spirit: nothing of the payload leaves through the headers.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use std::time::Duration;

use crate::error::CoreError;

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

/// The processing stage that failed (`__connect.errors.stage`), in Connect's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the key.
    KeyConverter,
    /// Decoding the value.
    ValueConverter,
    /// Handling a decoded record.
    Task,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Task => "TASK_PUT",
        }
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

    /// The DLQ topic for messages from `source_topic`.
    pub fn topic_for(&self, source_topic: &str) -> String {
        self.config
            .topic
            .clone()
            .unwrap_or_else(|| format!("{source_topic}.dlq"))
    }

    /// Copies `msg` to the DLQ with context headers and waits until Kafka acknowledged it; only
    /// then may the caller store the message's offset.
    pub async fn send(
        &self,
        msg: &OwnedMessage,
        error: &CoreError,
        stage: Stage,
    ) -> Result<(), CoreError> {
        let topic = self.topic_for(msg.topic());
        let headers = self.headers(msg, error, stage);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(v) = msg.payload() {
            record = record.payload(v);
        }
        self.producer
            .send(record, Duration::from_secs(60))
            .await
            .map(|_| ())
            .map_err(|(source, _)| CoreError::Kafka {
                operation: "produce dead letter",
                source,
            })
    }

    /// The original headers followed by the `__connect.errors.*` context.
    pub fn headers(&self, msg: &OwnedMessage, error: &CoreError, stage: Stage) -> OwnedHeaders {
        let mut out = OwnedHeaders::new();
        if let Some(h) = msg.headers() {
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
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let class = error_class_name(error);
        let message = redact(&error.to_string());
        let pairs: [(&str, &str); 9] = [
            ("__connect.errors.topic", msg.topic()),
            ("__connect.errors.partition", &partition),
            ("__connect.errors.offset", &offset),
            ("__connect.errors.connector.name", &self.connector),
            ("__connect.errors.task.id", &self.task),
            ("__connect.errors.stage", stage.as_str()),
            ("__connect.errors.class.name", "athena_connect"),
            ("__connect.errors.exception.class.name", class),
            ("__connect.errors.exception.message", &message),
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

fn error_class_name(e: &CoreError) -> &'static str {
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
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let dlq = DeadLetterQueue::new(producer, DlqConfig::default(), "sink", "0");
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
        let h = dlq.headers(&msg, &CoreError::UnknownSchemaId(9), Stage::ValueConverter);
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
    }
}

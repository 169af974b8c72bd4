//! Writing a page of events and the cursor to Kafka, in either delivery mode.
//!
//! - At-least-once: every event of the page is handed to the idempotent producer at once, then
//!   every delivery future is awaited; events whose delivery failed are sent again (never
//!   skipped) until all are acknowledged; only then is the cursor written, and that write is
//!   awaited too.
//! - Exactly-once: one Kafka transaction per page holds the events and the cursor record; a
//!   failed transaction is aborted and the whole page is written again. The transactional id is
//!   stable per (connector, practice, feed), so a restarted instance fences its zombie.

use std::time::Duration;

use chrono::SecondsFormat;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore, checkpoint_record};
use connector_core::headers::{CloudEvent, inject_current_trace, with_cloud_event, with_str};
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::events::Mapped;

/// How long one delivery may take before it counts as failed (then it is sent again).
const SEND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a transaction commit or abort may block.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// Constant header values of one feed's events.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// `ce_type`: the event schema's full name.
    pub ce_type: &'static str,
    /// `ce_source`: `athena://<practice>/<feed path>`.
    pub ce_source: String,
}

/// The Kafka side of one (practice, feed).
#[derive(Clone)]
pub enum Writer {
    /// Idempotent producer plus the checkpoint store.
    AtLeastOnce {
        /// Shared idempotent producer.
        producer: FutureProducer,
        /// The cursor store (boxed: it is much larger than the other variant).
        store: Box<KafkaCheckpointStore>,
    },
    /// A transactional producer owned by this (practice, feed).
    ExactlyOnce {
        /// The transactional producer (transactions initialised).
        producer: FutureProducer,
        /// State topic for the cursor record.
        state_topic: String,
        /// The transactional id, for messages.
        transactional_id: String,
    },
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::AtLeastOnce { store, .. } => f
                .debug_struct("AtLeastOnce")
                .field("state_topic", &store.topic())
                .finish(),
            Writer::ExactlyOnce {
                transactional_id, ..
            } => f
                .debug_struct("ExactlyOnce")
                .field("transactional_id", transactional_id)
                .finish(),
        }
    }
}

fn headers_for(m: &Mapped, info: &HeaderInfo, trace: &OwnedHeaders) -> OwnedHeaders {
    let time = m
        .changed_at
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let mut h = with_str(OwnedHeaders::new_with_capacity(10), "event_id", &m.event_id);
    h = with_cloud_event(
        h,
        &CloudEvent {
            id: &m.event_id,
            ty: info.ce_type,
            source: &info.ce_source,
            time: time.as_deref(),
            subject: &m.entity_id,
        },
    );
    for t in trace.iter() {
        if let Some(v) = t.value {
            h = h.insert(rdkafka::message::Header {
                key: t.key,
                value: Some(v),
            });
        }
    }
    h
}

/// Whether a transactional error means this producer can never be used again.
fn fenced_or_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

impl Writer {
    /// Initialises an exactly-once writer: creates the transactional producer and runs
    /// `init_transactions`, which fences any older instance with the same id.
    pub async fn exactly_once(
        kafka: &connector_core::kafka::KafkaConfig,
        state_topic: &str,
        transactional_id: &str,
    ) -> Result<Writer, Error> {
        let producer = kafka.build_transactional_producer(transactional_id)?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(TXN_TIMEOUT))
            .await
            .map_err(|e| Error::Fenced(format!("init task failed: {e}")))?
            .map_err(|source| Error::Transaction {
                operation: "init_transactions",
                source,
            })?;
        Ok(Writer::ExactlyOnce {
            producer,
            state_topic: state_topic.to_string(),
            transactional_id: transactional_id.to_string(),
        })
    }

    /// Durably stores the cursor alone (the marker before a poll, or a cleared cursor).
    pub async fn save_cursor(&self, key: &str, cursor: &[u8]) -> Result<(), Error> {
        match self {
            Writer::AtLeastOnce { store, .. } => Ok(store.save(key, cursor).await?),
            Writer::ExactlyOnce { .. } => {
                self.transaction(&[], "", &HeaderInfo::none(), Some((key, cursor)))
                    .await
            }
        }
    }

    /// Writes `events` to `topic` and then (or atomically with them) the cursor. In
    /// at-least-once mode failed deliveries are retried here until acknowledged or `cancel`
    /// fires; an `Err` means the cursor was not written.
    pub async fn write_page(
        &self,
        topic: &str,
        events: &[Mapped],
        info: &HeaderInfo,
        cursor: Option<(&str, &[u8])>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        match self {
            Writer::AtLeastOnce { producer, store } => {
                send_all_acked(producer, topic, events, info, cancel).await?;
                if let Some((key, value)) = cursor {
                    store.save(key, value).await?;
                }
                Ok(())
            }
            Writer::ExactlyOnce { .. } => self.transaction(events, topic, info, cursor).await,
        }
    }

    async fn transaction(
        &self,
        events: &[Mapped],
        topic: &str,
        info: &HeaderInfo,
        cursor: Option<(&str, &[u8])>,
    ) -> Result<(), Error> {
        let Writer::ExactlyOnce {
            producer,
            state_topic,
            transactional_id,
        } = self
        else {
            unreachable!("transaction() is only called in exactly-once mode")
        };
        let txn_err = |operation: &'static str, source: KafkaError| {
            if fenced_or_fatal(&source) {
                Error::Fenced(transactional_id.clone())
            } else {
                Error::Transaction { operation, source }
            }
        };
        producer
            .begin_transaction()
            .map_err(|e| txn_err("begin_transaction", e))?;
        let trace = inject_current_trace(OwnedHeaders::new());
        let result: Result<(), Error> = async {
            let mut futs = Vec::with_capacity(events.len() + 1);
            for m in events {
                let rec = FutureRecord::to(topic)
                    .key(m.key.as_str())
                    .payload(m.value.as_slice())
                    .headers(headers_for(m, info, &trace));
                futs.push(producer.send(rec, Timeout::After(SEND_TIMEOUT)));
            }
            if let Some((key, value)) = cursor {
                futs.push(producer.send(
                    checkpoint_record(state_topic, key, value),
                    Timeout::After(SEND_TIMEOUT),
                ));
            }
            for r in join_all(futs).await {
                r.map_err(|(e, _)| txn_err("produce", e))?;
            }
            let p = producer.clone();
            tokio::task::spawn_blocking(move || p.commit_transaction(TXN_TIMEOUT))
                .await
                .map_err(|e| Error::Fenced(format!("commit task failed: {e}")))?
                .map_err(|e| txn_err("commit_transaction", e))
        }
        .await;
        if let Err(e) = &result
            && !matches!(e, Error::Fenced(_))
        {
            let p = producer.clone();
            // The abort's own failure changes nothing: the next begin_transaction reports it.
            let _ = tokio::task::spawn_blocking(move || p.abort_transaction(TXN_TIMEOUT)).await;
        }
        result
    }
}

impl HeaderInfo {
    fn none() -> HeaderInfo {
        HeaderInfo {
            ce_type: "",
            ce_source: String::new(),
        }
    }
}

/// Sends every event, awaits every acknowledgement, and re-sends the failed ones (with back-off)
/// until all are acknowledged. Returns an error only when `cancel` fires first.
pub async fn send_all_acked(
    producer: &FutureProducer,
    topic: &str,
    events: &[Mapped],
    info: &HeaderInfo,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let trace = inject_current_trace(OwnedHeaders::new());
    let mut pending: Vec<usize> = (0..events.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let futs = pending.iter().map(|&i| {
            let m = &events[i];
            let rec = FutureRecord::to(topic)
                .key(m.key.as_str())
                .payload(m.value.as_slice())
                .headers(headers_for(m, info, &trace));
            producer.send(rec, Timeout::After(SEND_TIMEOUT))
        });
        let results = join_all(futs).await;
        let mut failed = Vec::new();
        let mut last_err = None;
        for (&i, r) in pending.iter().zip(results) {
            if let Err((e, _)) = r {
                failed.push(i);
                last_err = Some(e);
            }
        }
        if let Some(e) = last_err {
            attempt += 1;
            tracing::warn!(
                topic,
                failed = failed.len(),
                attempt,
                error = %e,
                "Event deliveries failed; sending them again."
            );
            let wait =
                crate::task::backoff(attempt, Duration::from_millis(500), Duration::from_secs(30));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => {
                    return Err(Error::Core(connector_core::CoreError::Kafka {
                        operation: "produce (cancelled while retrying)",
                        source: e,
                    }));
                }
            }
        }
        pending = failed;
    }
    Ok(())
}

//! Writing a page of events and the cursor to Kafka, in either delivery mode.
//!
//! - At-least-once: every event of the page is handed to the idempotent producer at once, then
//!   every delivery future is awaited ([`connector_core::produce::produce_each`]); events whose
//!   delivery failed for a transient reason are sent again (never skipped) until all are
//!   acknowledged; only then is the cursor written, and that write is awaited too.
//! - Exactly-once: one Kafka transaction per page holds the events and the cursor record
//!   ([`connector_core::produce::commit_transaction`]); a failed transaction is aborted and the
//!   whole page is written again. The transactional id is stable per (connector, practice,
//!   feed), so a restarted instance fences its zombie.
//!
//! An event Kafka refuses for good (class `Permanent`: too large, invalid, topic not
//! authorised) must not stall the feed: it is sent once more without its `original` field (the
//! PHI-minimised form, same event id), and if that is refused too it is parked in the feed's
//! dead-letter topic with a `KAFKA_PRODUCE` reason. Either way the page completes and the cursor
//! may pass the event. In exactly-once mode the dead letter is written outside the transaction,
//! so a page retried after a transient failure may dead-letter the same event twice.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::SecondsFormat;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore, checkpoint_record};
use connector_core::dlq::{DeadLetterQueue, Reason, Stage};
use connector_core::headers::{
    CloudEvent, inject_current_trace, with_avro_data, with_cloud_event, with_str,
};
use connector_core::kafka::KafkaConfig;
use connector_core::kafka_errors::{classify, error_name};
use connector_core::produce::{commit_transaction, produce_each};
use connector_core::retry::Backoff;
use connector_core::{CoreError, ErrorClass};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Error;
use crate::events::Mapped;

/// How long a transaction commit or abort may block.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// Re-sending failed deliveries, and writing a page again.
pub const WRITE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// The event field dropped when Kafka refuses an event for good.
const ORIGINAL: &str = "original";

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
        /// The task's own transactional writer (an [`Writer::ExactlyOnce`]) through which the
        /// cursor is written, so that a newer owner's `init_transactions` fences this one: its
        /// next cursor write (the marker before a poll) fails with [`Error::Fenced`] and the
        /// feed is not polled again (decision 0025). `None`: cursors go through `store`.
        fence: Option<Box<Writer>>,
    },
    /// A transactional producer owned by this (practice, feed).
    ExactlyOnce {
        /// The transactional producer (transactions initialised). Replaced by a fresh one after
        /// Kafka refused a record (see [`Writer::renew`]).
        producer: Arc<Mutex<FutureProducer>>,
        /// The settings to build that fresh producer with.
        kafka: Box<KafkaConfig>,
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
            subject: Some(&m.entity_id),
        },
    );
    // Every form of the event (full, without `original`) has the same writer schema.
    h = with_avro_data(h, &m.value);
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

/// A transactional producer for `transactional_id` with `init_transactions` done (fencing any
/// older instance with the same id).
async fn init_transactional(
    kafka: &KafkaConfig,
    transactional_id: &str,
) -> Result<FutureProducer, Error> {
    let producer = kafka.build_transactional_producer(transactional_id)?;
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(TXN_TIMEOUT))
        .await
        .map_err(|e| CoreError::task("init_transactions", &e))?
        .map_err(|source| Error::Transaction {
            operation: "init_transactions",
            source,
        })?;
    Ok(producer)
}

impl Writer {
    /// Initialises an at-least-once writer whose cursor writes go through a transactional
    /// producer with `transactional_id` (fencing any older owner of the task).
    pub async fn at_least_once_fenced(
        producer: FutureProducer,
        store: KafkaCheckpointStore,
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Writer, Error> {
        let fence = Writer::exactly_once(kafka, store.topic(), transactional_id).await?;
        Ok(Writer::AtLeastOnce {
            producer,
            store: Box::new(store),
            fence: Some(Box::new(fence)),
        })
    }

    /// Initialises an exactly-once writer: creates the transactional producer and runs
    /// `init_transactions`, which fences any older instance with the same id.
    pub async fn exactly_once(
        kafka: &KafkaConfig,
        state_topic: &str,
        transactional_id: &str,
    ) -> Result<Writer, Error> {
        let producer = init_transactional(kafka, transactional_id).await?;
        Ok(Writer::ExactlyOnce {
            producer: Arc::new(Mutex::new(producer)),
            kafka: Box::new(kafka.clone()),
            state_topic: state_topic.to_string(),
            transactional_id: transactional_id.to_string(),
        })
    }

    /// Replaces the transactional producer by a fresh one with the same id (a new epoch).
    /// After the broker refused a record, librdkafka aborts without bumping the epoch, so the
    /// sequence number of the refused record stays skipped: the next transaction would stall
    /// until its commit timed out. A fresh `init_transactions` starts the sequences anew.
    async fn renew(&self) -> Result<(), Error> {
        let Writer::ExactlyOnce {
            producer,
            kafka,
            transactional_id,
            ..
        } = self
        else {
            return Ok(());
        };
        let fresh = init_transactional(kafka, transactional_id).await?;
        *producer.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Durably stores the cursor alone (the marker before a poll, or a cleared cursor).
    pub async fn save_cursor(&self, key: &str, cursor: &[u8]) -> Result<(), Error> {
        match self {
            Writer::AtLeastOnce {
                fence: Some(fence), ..
            } => Box::pin(fence.save_cursor(key, cursor)).await,
            Writer::AtLeastOnce { store, .. } => Ok(store.save(key, cursor).await?),
            Writer::ExactlyOnce { .. } => {
                let page = Page {
                    topic: "",
                    events: &[],
                    info: &HeaderInfo::none(),
                    dlq: None,
                };
                self.transaction(&page, Some((key, cursor)), &CancellationToken::new())
                    .await
            }
        }
    }

    /// Writes `events` to `topic` and then (or atomically with them) the cursor. In
    /// at-least-once mode failed deliveries are retried here until acknowledged or `cancel`
    /// fires; events Kafka refuses for good are sent without `original` or parked in `dlq`. An
    /// `Err` means the cursor was not written.
    pub async fn write_page(
        &self,
        page: &Page<'_>,
        cursor: Option<(&str, &[u8])>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        match self {
            Writer::AtLeastOnce { producer, .. } => {
                send_all_acked(producer, page, cancel).await?;
                if let Some((key, value)) = cursor {
                    self.save_cursor(key, value).await?;
                }
                Ok(())
            }
            Writer::ExactlyOnce { .. } => self.transaction(page, cursor, cancel).await,
        }
    }

    async fn transaction(
        &self,
        page: &Page<'_>,
        cursor: Option<(&str, &[u8])>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        // The page's PRODUCER span: its context is every event's `traceparent`.
        self.transaction_in_span(page, cursor, cancel)
            .instrument(send_span(page))
            .await
    }

    async fn transaction_in_span(
        &self,
        page: &Page<'_>,
        cursor: Option<(&str, &[u8])>,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let Writer::ExactlyOnce {
            producer,
            state_topic,
            transactional_id,
            ..
        } = self
        else {
            unreachable!("transaction() is only called in exactly-once mode")
        };
        let trace = inject_current_trace(OwnedHeaders::new());
        let mut refused = Refused::default();
        let mut transient = 0u32;
        loop {
            let included: Vec<usize> = (0..page.events.len())
                .filter(|i| !refused.parked.contains(i))
                .collect();
            let current = producer.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let events = included.iter().map(|&i| page.record(i, &refused, &trace));
            let cursor_record =
                cursor.map(|(key, value)| checkpoint_record(state_topic, key, value));
            let failure =
                match commit_transaction(&current, events.chain(cursor_record), None, TXN_TIMEOUT)
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(f) => f,
                };
            // A fenced producer may report the failure of a produce or an abort before it
            // reports itself fenced: never renew it then, since a fresh `init_transactions` would
            // fence the new owner in turn (decision 0025).
            let fatal = current.client().fatal_error().is_some();
            match (failure.class, failure.record.and_then(|r| included.get(r))) {
                (ErrorClass::Fatal, _) => return Err(Error::Fenced(transactional_id.clone())),
                _ if fatal => return Err(Error::Fenced(transactional_id.clone())),
                // This event can never be written as it is; the page goes again without it (or
                // with its minimised form), on a fresh producer.
                (ErrorClass::Permanent, Some(&i)) => {
                    page.refused(i, &failure.source, &mut refused, &trace, cancel)
                        .await?;
                    self.renew().await?;
                    transient = 0;
                }
                // After a refused record the next transaction can still fail (a record purged
                // by that abort, the sequence gap it left): go again here on a fresh producer,
                // keeping what was decided about the refused events, a few times at most.
                (ErrorClass::Retriable, _) if !refused.is_empty() && transient < 3 => {
                    transient += 1;
                    tracing::warn!(error = %failure, attempt = transient, "Transaction failed after a refused event; running it again.");
                    tokio::time::sleep(WRITE_BACKOFF.delay(transient)).await;
                    self.renew().await?;
                }
                _ => {
                    // An abort that did not complete leaves the producer unusable until a
                    // fresh one fences it.
                    if !failure.aborted {
                        self.renew().await?;
                    }
                    return Err(Error::Transaction {
                        operation: failure.operation,
                        source: failure.source,
                    });
                }
            }
        }
    }
}

/// One page of one feed's events on its way to `topic`.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The feed's event topic.
    pub topic: &'a str,
    /// The events, in order.
    pub events: &'a [Mapped],
    /// The feed's header values.
    pub info: &'a HeaderInfo,
    /// Where events Kafka refuses for good are parked (`None`: only for the cursor alone).
    pub dlq: Option<&'a DeadLetterQueue>,
}

/// What became of the events Kafka refused for good.
#[derive(Debug, Default)]
struct Refused {
    /// Event index -> the value without `original` (sent instead of the full one).
    slim: HashMap<usize, Vec<u8>>,
    /// Events parked in the dead-letter topic (not sent again).
    parked: HashSet<usize>,
}

impl Refused {
    fn is_empty(&self) -> bool {
        self.slim.is_empty() && self.parked.is_empty()
    }
}

impl Page<'_> {
    fn record<'r>(
        &'r self,
        i: usize,
        refused: &'r Refused,
        trace: &OwnedHeaders,
    ) -> FutureRecord<'r, str, [u8]> {
        let m = &self.events[i];
        // Nearly always nothing was refused: no hash lookup per event then.
        let value = if refused.slim.is_empty() {
            &m.value
        } else {
            refused.slim.get(&i).unwrap_or(&m.value)
        };
        FutureRecord::to(self.topic)
            .key(m.key.as_str())
            .payload(value.as_slice())
            .headers(headers_for(m, self.info, trace))
    }

    /// Event `i` was refused for good with `error`: its minimised form is tried first; when that
    /// was refused too (or there is none), it is parked in the DLQ, retrying the dead letter on
    /// transient failures until `cancel` fires.
    async fn refused(
        &self,
        i: usize,
        error: &KafkaError,
        refused: &mut Refused,
        trace: &OwnedHeaders,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let m = &self.events[i];
        if !refused.slim.contains_key(&i)
            && let Some(slim) =
                connector_core::avro::without_optional_field(&m.value, self.info.ce_type, ORIGINAL)
                    .map_err(Error::Encode)?
        {
            tracing::warn!(event_id = %m.event_id, error = %error, "Kafka refused an event for good; sending it without `original`.");
            refused.slim.insert(i, slim);
            return Ok(());
        }
        let Some(dlq) = self.dlq else {
            return Err(Error::Core(CoreError::Kafka {
                operation: "produce",
                source: error.clone(),
            }));
        };
        tracing::warn!(event_id = %m.event_id, error = %error, "Kafka refused an event for good; parking it in the dead-letter topic.");
        let reason = Reason::new(
            Stage::KafkaProduce,
            ErrorClass::Permanent,
            error_name(error),
            format!(
                "event {} refused by topic {}: {error}",
                m.event_id, self.topic
            ),
        );
        let headers = headers_for(m, self.info, trace);
        // The full event first (an operator can replay it once the topic allows it); if the
        // dead-letter topic refuses that too, the minimised event, then the headers alone (the
        // event id is in them).
        let mut values = vec![Some(m.value.as_slice())];
        values.extend(refused.slim.get(&i).map(|v| Some(v.as_slice())));
        values.push(None);
        connector_core::retry::retry(
            &WRITE_BACKOFF,
            cancel,
            |e: &CoreError| match e.class() {
                ErrorClass::Fatal | ErrorClass::Permanent => e.class(),
                _ => ErrorClass::Retriable,
            },
            |e, a| tracing::warn!(error = %e, attempt = a.number, "Dead-letter write failed; retrying."),
            || async {
                let mut last = None;
                for value in &values {
                    match dlq
                        .send_unwritten(self.topic, Some(m.key.as_bytes()), *value, Some(&headers), &reason)
                        .await
                    {
                        Ok(()) => return Ok(()),
                        Err(e) if e.class() == ErrorClass::Permanent => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last.expect("at least the full event was tried"))
            },
        )
        .await?;
        refused.parked.insert(i);
        Ok(())
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
/// until all are acknowledged; events refused for good are sent minimised or parked (see the
/// module doc). Returns an error when `cancel` fires first or the producer failed fatally.
pub async fn send_all_acked(
    producer: &FutureProducer,
    page: &Page<'_>,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    // The page's PRODUCER span: its context is every event's `traceparent`.
    send_all_acked_in_span(producer, page, cancel)
        .instrument(send_span(page))
        .await
}

/// A `send <topic>` span for the events of `page` (none for a cursor-only write).
fn send_span(page: &Page<'_>) -> tracing::Span {
    if page.events.is_empty() {
        tracing::Span::none()
    } else {
        connector_core::telemetry::send_span(page.topic, page.events.len())
    }
}

async fn send_all_acked_in_span(
    producer: &FutureProducer,
    page: &Page<'_>,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let trace = inject_current_trace(OwnedHeaders::new());
    let mut refused = Refused::default();
    let mut pending: Vec<usize> = (0..page.events.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let outcomes = produce_each(
            producer,
            pending.iter().map(|&i| page.record(i, &refused, &trace)),
        )
        .await;
        let mut failed = Vec::new();
        let mut last_err = None;
        for (&i, r) in pending.iter().zip(outcomes) {
            let Err(e) = r else { continue };
            match classify(&e) {
                ErrorClass::Fatal => {
                    return Err(Error::Core(CoreError::Kafka {
                        operation: "produce",
                        source: e,
                    }));
                }
                ErrorClass::Permanent => {
                    page.refused(i, &e, &mut refused, &trace, cancel).await?;
                    if !refused.parked.contains(&i) {
                        failed.push(i);
                    }
                }
                ErrorClass::Retriable | ErrorClass::RateLimited { .. } => {
                    failed.push(i);
                    last_err = Some(e);
                }
            }
        }
        if let Some(e) = last_err {
            attempt += 1;
            tracing::warn!(
                topic = page.topic,
                failed = failed.len(),
                attempt,
                error = %e,
                "Event deliveries failed; sending them again."
            );
            tokio::select! {
                _ = tokio::time::sleep(WRITE_BACKOFF.delay(attempt)) => {}
                _ = cancel.cancelled() => {
                    return Err(Error::Core(CoreError::Kafka {
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

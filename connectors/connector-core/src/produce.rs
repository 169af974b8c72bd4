//! Producing a batch of records and awaiting every acknowledgement, plainly or in one Kafka
//! transaction: the only produce loops of the connectors.
//!
//! - [`produce_each`] hands the records to the producer strictly in order (a record waits for
//!   room in the bounded local queue before the next is handed over, so per-key order holds),
//!   then awaits every delivery and returns each record's outcome.
//! - [`produce_all`] is the same with the first failure and its index: a source may move its
//!   cursor past records `0..index` only (everything before the failed record is acknowledged;
//!   records after it may be too, but a cursor covers a prefix).
//! - [`commit_transaction`]: `begin` → produce → `send_offsets_to_transaction` (optional) →
//!   `commit`; on any failure that allows it the transaction is aborted, and the error is
//!   classified by [`crate::kafka_errors::classify`] (fenced / fatal: `Fatal`, abortable:
//!   `Retriable` after the abort, a record that can never be written: `Permanent` with its index).
//!
//! Blocking librdkafka calls (`send_offsets_to_transaction`, `commit`, `abort`) run on the
//! blocking pool, never on a runtime worker.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::{Delivery, DeliveryFuture};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::error::ErrorClass;
use crate::kafka_errors::{classify, requires_abort};

/// How long one record may wait in a full producer queue before its send counts as failed.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest an abort may block; one that does not finish by then reports `aborted = false`
/// (the caller may call it again or replace the producer, whose successor fences it).
const ABORT_WAIT: Duration = Duration::from_secs(10);
/// How long the delivery reports of an aborted transaction's other records are awaited.
const REPORT_WAIT: Duration = Duration::from_secs(5);

/// The first record of a batch that was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("record {index} of the batch was not acknowledged ({failed} failed in all): {source}")]
pub struct ProduceFailure {
    /// Index of the first failed record; every record before it is acknowledged.
    pub index: usize,
    /// How many records of the batch failed.
    pub failed: usize,
    /// The delivery error of record `index`.
    pub source: KafkaError,
}

impl ProduceFailure {
    /// The class of the failure (see [`crate::kafka_errors::classify`]).
    pub fn class(&self) -> ErrorClass {
        classify(&self.source)
    }
}

/// Sends every record, then awaits every delivery; the outcome of each record, in order.
pub async fn produce_each<'a, K, V>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, K, V>>,
) -> Vec<Result<Delivery, KafkaError>>
where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    // Enqueued strictly one after another: with a bounded local queue a record may have to
    // wait for room, and no later record may overtake it (per-key order).
    // Collected first: the caller's iterator (often a closure over borrowed events) is not held
    // across an await, which would make the future's `Send` depend on that closure.
    let records: Vec<FutureRecord<'a, K, V>> = records.into_iter().collect();
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        pending.push(enqueue_one(producer, record).await);
    }
    join_all(pending.into_iter().map(|p| async move {
        match p {
            Ok(delivery) => match delivery.await {
                Ok(Ok(d)) => Ok(d),
                Ok(Err((e, _))) => Err(e),
                Err(_) => Err(KafkaError::Canceled),
            },
            Err(e) => Err(e),
        }
    }))
    .await
}

/// Sends every record and awaits every delivery; `Ok(n)` when all `n` were acknowledged, else
/// the first failure with its index (see [`ProduceFailure`]).
pub async fn produce_all<'a, K, V>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, K, V>>,
) -> Result<usize, ProduceFailure>
where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    first_failure(produce_each(producer, records).await)
}

fn first_failure(outcomes: Vec<Result<Delivery, KafkaError>>) -> Result<usize, ProduceFailure> {
    let n = outcomes.len();
    let failed = outcomes.iter().filter(|r| r.is_err()).count();
    match outcomes
        .into_iter()
        .enumerate()
        .find_map(|(i, r)| r.err().map(|e| (i, e)))
    {
        None => Ok(n),
        Some((index, source)) => Err(ProduceFailure {
            index,
            failed,
            source,
        }),
    }
}

/// The failure that caused the others in a transaction: once one record fails for good,
/// librdkafka puts the transaction in an abortable state and the records still queued are
/// purged (`PurgeQueue`, retriable), whatever their index. So the first failure (by record
/// index) that is not retriable, else the first failure. `failures` is not empty.
fn root_failure(mut failures: Vec<(usize, KafkaError)>) -> (usize, KafkaError) {
    failures.sort_by_key(|(i, _)| *i);
    let pick = failures
        .iter()
        .position(|(_, e)| classify(e) != ErrorClass::Retriable)
        .unwrap_or(0);
    failures.swap_remove(pick)
}

/// The consumer offsets to commit inside a transaction (a consume-transform-produce loop).
pub struct TxnOffsets {
    /// The next offset to read, per partition.
    pub offsets: TopicPartitionList,
    /// The consumer's group metadata (`consumer.group_metadata()`).
    pub group: ConsumerGroupMetadata,
}

impl std::fmt::Debug for TxnOffsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnOffsets")
            .field("offsets", &self.offsets)
            .finish_non_exhaustive()
    }
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
#[error("kafka transaction failed during {operation}: {source}")]
pub struct TxnFailure {
    /// The step that failed: `begin_transaction`, `produce`, `send_offsets_to_transaction`,
    /// `commit_transaction`.
    pub operation: &'static str,
    /// The librdkafka error.
    pub source: KafkaError,
    /// What to do: `Fatal` (fenced or fatal: drop this producer), `Retriable` (aborted: run the
    /// same transaction again), `Permanent` (record [`TxnFailure::record`] can never be written;
    /// aborted: run the transaction again without it).
    pub class: ErrorClass,
    /// Whether the transaction was aborted (the producer is ready for a new one).
    pub aborted: bool,
    /// The index of the record whose delivery failed, for `operation == "produce"`.
    pub record: Option<usize>,
}

/// Runs one transaction: `begin`, every record, the offsets if any, `commit`. On failure the
/// transaction is aborted unless the producer is fenced or fatally broken (an abort after any
/// other failure is always legal and leaves the producer ready), and the failure is classified
/// (see [`TxnFailure`]). The producer must be transactional with `init_transactions` done.
///
/// The records are enqueued in order and their deliveries awaited; the first failed delivery
/// aborts the transaction at once. Waiting for the other deliveries first, or flushing in
/// `commit_transaction`, could hang until `message.timeout.ms`: in an abortable state
/// librdkafka holds the queued records back until the abort, which purges them.
pub async fn commit_transaction<'a, K, V>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, K, V>>,
    offsets: Option<TxnOffsets>,
    timeout: Duration,
) -> Result<usize, TxnFailure>
where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    // Collected before any await: the caller's iterator (often a closure chain) need not be Send.
    let records: Vec<FutureRecord<'a, K, V>> = records.into_iter().collect();
    if let Err(e) = producer.begin_transaction() {
        let aborted = abort(producer, &e, timeout).await;
        return Err(failure("begin_transaction", e, None, aborted));
    }
    let (deliveries, refused) = enqueue(producer, records).await;
    let n = deliveries.len();
    let mut pending: FuturesUnordered<_> = deliveries
        .into_iter()
        .enumerate()
        .map(|(i, d)| async move { (i, delivery_error(d.await)) })
        .collect();
    let mut failures: Vec<(usize, KafkaError)> = refused.into_iter().collect();
    while failures.is_empty()
        && let Some((i, error)) = pending.next().await
    {
        failures.extend(error.map(|e| (i, e)));
    }
    if !failures.is_empty() {
        tracing::debug!(record = failures[0].0, error = %failures[0].1, "Transaction delivery failed; aborting.");
        let aborted = abort(producer, &failures[0].1, timeout).await;
        // The abort purges what is still queued, so the rest resolve now; their reports are
        // needed because the record that failed for good is not always the first to report
        // (a purged record can be). Bounded: a report that does not come is not waited for.
        let rest: Vec<(usize, Option<KafkaError>)> =
            tokio::time::timeout(timeout.min(REPORT_WAIT), pending.collect())
                .await
                .unwrap_or_default();
        failures.extend(rest.into_iter().filter_map(|(i, e)| e.map(|e| (i, e))));
        let (index, source) = root_failure(failures);
        return Err(failure("produce", source, Some(index), aborted));
    }
    let p = producer.clone();
    let committed = blocking(move || {
        if let Some(o) = offsets {
            p.send_offsets_to_transaction(&o.offsets, &o.group, timeout)
                .map_err(|e| ("send_offsets_to_transaction", e))?;
        }
        p.commit_transaction(timeout)
            .map_err(|e| ("commit_transaction", e))
    })
    .await;
    match committed {
        Ok(()) => Ok(n),
        Err((operation, e)) => {
            let aborted = abort(producer, &e, timeout).await;
            Err(failure(operation, e, None, aborted))
        }
    }
}

/// The error of one delivery, if it failed (a dropped delivery counts as cancelled).
fn delivery_error(
    outcome: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Option<KafkaError> {
    match outcome {
        Ok(Ok(_)) => None,
        Ok(Err((e, _))) => Some(e),
        Err(_) => Some(KafkaError::Canceled),
    }
}

/// Enqueues every record in order (waiting while the local queue is full, up to
/// [`QUEUE_TIMEOUT`] per record); stops at the first record librdkafka refuses, returned with its
/// index (= the number of delivery futures).
async fn enqueue<'a, K, V>(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'a, K, V>>,
) -> (Vec<DeliveryFuture>, Option<(usize, KafkaError)>)
where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    let mut out = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        match enqueue_one(producer, record).await {
            Ok(delivery) => out.push(delivery),
            Err(e) => return (out, Some((i, e))),
        }
    }
    (out, None)
}

/// Hands one record to librdkafka, waiting while the local queue is full (up to
/// [`QUEUE_TIMEOUT`]); the caller enqueues the next record only after this one is queued.
async fn enqueue_one<'a, K, V>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, K, V>,
) -> Result<DeliveryFuture, KafkaError>
where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    let deadline = tokio::time::Instant::now() + QUEUE_TIMEOUT;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if tokio::time::Instant::now() < deadline =>
            {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Aborts the current transaction after `cause`, unless `cause` leaves nothing to abort with
/// (fenced, fatal). Whether the abort succeeded; if it failed, the next `begin_transaction`
/// reports why.
async fn abort(producer: &FutureProducer, cause: &KafkaError, timeout: Duration) -> bool {
    if !requires_abort(cause) {
        return false;
    }
    let p = producer.clone();
    let timeout = timeout.min(ABORT_WAIT);
    let started = std::time::Instant::now();
    let aborted = blocking(move || p.abort_transaction(timeout).map_err(|e| ("abort", e)))
        .await
        .is_ok();
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        aborted,
        "Transaction aborted."
    );
    aborted
}

fn failure(
    operation: &'static str,
    source: KafkaError,
    record: Option<usize>,
    aborted: bool,
) -> TxnFailure {
    TxnFailure {
        operation,
        class: classify(&source),
        source,
        aborted,
        record,
    }
}

/// Runs a blocking librdkafka call on the blocking pool. A panicked or cancelled blocking task
/// becomes `KafkaError::Canceled` (retriable: the transaction state is then re-checked by the
/// next `begin_transaction`).
async fn blocking(
    f: impl FnOnce() -> Result<(), (&'static str, KafkaError)> + Send + 'static,
) -> Result<(), (&'static str, KafkaError)> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(("blocking task", KafkaError::Canceled)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::error::RDKafkaErrorCode as C;

    fn ok() -> Result<Delivery, KafkaError> {
        Ok(Delivery {
            partition: 0,
            offset: 1,
            timestamp: Timestamp::NotAvailable,
        })
    }

    #[test]
    fn the_first_failure_and_its_index_are_reported() {
        assert_eq!(first_failure(vec![ok(), ok()]).unwrap(), 2);
        let f = first_failure(vec![
            ok(),
            Err(KafkaError::MessageProduction(C::MessageSizeTooLarge)),
            ok(),
            Err(KafkaError::MessageProduction(C::MessageTimedOut)),
        ])
        .unwrap_err();
        assert_eq!((f.index, f.failed), (1, 2));
        assert_eq!(f.class(), ErrorClass::Permanent);
        assert_eq!(first_failure(Vec::new()).unwrap(), 0);
    }

    #[test]
    fn in_a_transaction_the_failure_that_is_not_retriable_is_the_cause() {
        let purged = || KafkaError::MessageProduction(C::PurgeQueue);
        let too_big = || KafkaError::MessageProduction(C::MessageSizeTooLarge);
        let (i, e) = root_failure(vec![(3, purged()), (2, too_big()), (1, purged())]);
        assert_eq!(i, 2);
        assert_eq!(classify(&e), ErrorClass::Permanent);
        assert_eq!(root_failure(vec![(4, purged()), (1, purged())]).0, 1);
    }

    #[tokio::test]
    async fn an_unreachable_broker_fails_every_record_in_order() {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "50")
            .create()
            .unwrap();
        let records = (0..3).map(|i| FutureRecord::<str, [u8]>::to("t").key(["a", "b", "c"][i]));
        let out = produce_each(&producer, records).await;
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.is_err()));
        let f = produce_all(
            &producer,
            std::iter::once(FutureRecord::<str, [u8]>::to("t").key("k")),
        )
        .await
        .unwrap_err();
        assert_eq!(f.index, 0);
        assert_eq!(f.class(), ErrorClass::Retriable);
    }
}

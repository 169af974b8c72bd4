//! The result transaction: every finished command's records (its ledger `done` record and its
//! `CommandResult`) and the consumer offsets after them, in one Kafka transaction, run by
//! connector-core's [`commit_transaction`] (abort on any failure that allows it) and classified
//! by [`connector_core::kafka_errors::classify`].

use std::time::Duration;

use connector_core::ErrorClass;
use connector_core::produce::{TxnFailure, TxnOffsets, commit_transaction};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::Error;

/// How long one step of the result transaction (offsets, commit, abort) may block.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A record to produce inside the next transaction.
#[derive(Debug, Clone)]
pub(super) struct OutRecord {
    pub(super) topic: String,
    pub(super) key: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) headers: Option<OwnedHeaders>,
}

impl OutRecord {
    /// Bytes this record holds while it waits for its commit.
    pub(super) fn size(&self) -> usize {
        self.topic.len() + self.key.len() + self.payload.len()
    }
}

/// One transaction: every record, then the offsets, then commit; aborted on any failure that
/// allows it. The number of records committed.
pub(super) async fn commit_batch<C: ConsumerContext + 'static>(
    txp: &FutureProducer,
    consumer: &StreamConsumer<C>,
    records: &[OutRecord],
    offsets: TopicPartitionList,
) -> Result<usize, TxnFailure> {
    // Without group metadata (no generation yet) the offsets cannot be fenced: nothing is
    // started, and the batch is tried again at the next tick.
    let Some(group) = consumer.group_metadata() else {
        let source = KafkaError::MessageProduction(RDKafkaErrorCode::State);
        return Err(TxnFailure {
            operation: "group_metadata",
            class: connector_core::kafka_errors::classify(&source),
            source,
            aborted: false,
            record: None,
        });
    };
    let out = records.iter().map(|r| {
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic)
            .key(&r.key[..])
            .payload(&r.payload[..]);
        match &r.headers {
            Some(h) => rec.headers(h.clone()),
            None => rec,
        }
    });
    commit_transaction(txp, out, Some(TxnOffsets { offsets, group }), TXN_TIMEOUT).await
}

/// What a failed result transaction means for the sink: `Error::Transaction` (fatal: fenced by
/// a newer instance, or a fatal producer error), `Error::TransactionStuck` (the transaction
/// could not be aborted, so the producer cannot begin another: a commit that timed out while
/// Kafka was unreachable stays "in progress" inside librdkafka, and every later begin or abort
/// answers "Conflicting commit_transaction API call is already in progress"; the sink stops and
/// the supervisor restarts it with a new producer) or `Error::TransactionAborted` (the batch is
/// recomputed and tried again at the next tick). Not fatal by default: a rebalance makes the
/// broker refuse the offsets of a stale group generation (the zombie fencing replicas rely
/// on), which must not stop the sink; nor is a record Kafka refuses (its transaction was
/// aborted; the sink has no place to route a result aside, so it retries and says why).
pub(super) fn classify(f: &TxnFailure) -> Error {
    // Nothing was begun when the group metadata was missing: the producer is fine.
    let begun = f.operation != "group_metadata";
    to_error(f.class, begun && !f.aborted, f.to_string())
}

fn to_error(class: ErrorClass, stuck: bool, message: String) -> Error {
    if class == ErrorClass::Fatal {
        Error::Transaction(message)
    } else if stuck {
        Error::TransactionStuck(message)
    } else {
        Error::TransactionAborted(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sink's reading of a failed transaction with a bare Kafka error.
    fn failed(e: KafkaError, aborted: bool) -> Error {
        classify(&TxnFailure {
            operation: "commit_transaction",
            class: connector_core::kafka_errors::classify(&e),
            source: e,
            aborted,
            record: None,
        })
    }

    #[test]
    fn only_fencing_and_fatal_producer_errors_stop_the_sink() {
        let aborted = failed(KafkaError::MessageProduction(RDKafkaErrorCode::State), true);
        assert!(matches!(aborted, Error::TransactionAborted(_)));
        assert_eq!(aborted.class(), ErrorClass::Retriable);
        // Not aborted (the commit timed out while Kafka was down): a new producer is needed.
        let stuck = failed(
            KafkaError::MessageProduction(RDKafkaErrorCode::State),
            false,
        );
        assert!(matches!(stuck, Error::TransactionStuck(_)), "{stuck:?}");
        assert_eq!(stuck.class(), ErrorClass::Retriable);
        let fenced = failed(
            KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced),
            false,
        );
        assert!(matches!(fenced, Error::Transaction(_)));
        let record = OutRecord {
            topic: "t".into(),
            key: b"k".to_vec(),
            payload: vec![0; 10],
            headers: None,
        };
        assert_eq!(record.size(), 12);
    }
}

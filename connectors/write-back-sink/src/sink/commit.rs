//! The result transaction: every finished command's records (its ledger `done` record and its
//! `CommandResult`) and the consumer offsets after them, in one Kafka transaction.
//!
//! This is the seam for connector-core's transactional commit helper: [`commit_batch`] (one
//! transaction, abort on any failure) and [`classify`] (fatal vs. aborted-and-retriable) are the
//! only two things the loop uses; switching to the shared helper replaces their bodies.

use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::Error;

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

/// A result transaction that did not commit.
#[derive(Debug)]
pub(super) struct CommitFailure {
    /// Why it failed.
    pub(super) error: KafkaError,
    /// Whether the producer can begin another transaction. Not when the abort failed too: a
    /// commit that timed out while Kafka was unreachable stays "in progress" inside librdkafka,
    /// and every later begin or abort answers "Conflicting commit_transaction API call is
    /// already in progress", for ever. Only a new producer heals that.
    pub(super) producer_usable: bool,
}

/// One transaction: every record, then the offsets, then commit; abort on any failure.
pub(super) fn commit_batch<C: ConsumerContext + 'static>(
    txp: &FutureProducer,
    consumer: &StreamConsumer<C>,
    records: &[OutRecord],
    offsets: &TopicPartitionList,
) -> Result<(), CommitFailure> {
    let timeout = Duration::from_secs(30);
    txp.begin_transaction().map_err(|error| CommitFailure {
        error,
        producer_usable: false,
    })?;
    let r = (|| {
        for r in records {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic)
                .key(&r.key[..])
                .payload(&r.payload[..]);
            if let Some(h) = &r.headers {
                rec = rec.headers(h.clone());
            }
            loop {
                match txp.send_result(rec) {
                    Ok(_delivery) => break, // commit_transaction flushes and fails on any error
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let gm = consumer
            .group_metadata()
            .ok_or(KafkaError::MessageProduction(RDKafkaErrorCode::State))?;
        txp.send_offsets_to_transaction(offsets, &gm, timeout)?;
        txp.commit_transaction(timeout)
    })();
    r.map_err(|error| {
        let abort = txp.abort_transaction(timeout);
        if let Err(e) = &abort {
            tracing::warn!(error = %e, "Could not abort the failed result transaction.");
        }
        CommitFailure {
            error,
            producer_usable: abort.is_ok(),
        }
    })
}

/// What a failed result transaction means for the sink: `Error::Transaction` (fatal: fenced by
/// a newer instance, or a fatal producer error), `Error::TransactionStuck` (not aborted: the
/// sink stops and the supervisor restarts it with a new producer) or
/// `Error::TransactionAborted` (the batch is recomputed and tried again at the next tick). Not
/// fatal by default: a rebalance makes the broker refuse the offsets of a stale group
/// generation (the zombie fencing replicas rely on), which must not stop the sink.
pub(super) fn classify(f: &CommitFailure) -> Error {
    let e = &f.error;
    let fatal = match e {
        KafkaError::Transaction(t) => {
            t.is_fatal()
                || matches!(
                    t.code(),
                    RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                )
        }
        _ => false,
    };
    if fatal {
        Error::Transaction(e.to_string())
    } else if !f.producer_usable {
        Error::TransactionStuck(e.to_string())
    } else {
        Error::TransactionAborted(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_core::ErrorClass;

    #[test]
    fn only_fencing_and_fatal_producer_errors_stop_the_sink() {
        let aborted = classify(&CommitFailure {
            error: KafkaError::MessageProduction(RDKafkaErrorCode::State),
            producer_usable: true,
        });
        assert!(matches!(aborted, Error::TransactionAborted(_)));
        assert_eq!(aborted.class(), ErrorClass::Retriable);
        let stuck = classify(&CommitFailure {
            error: KafkaError::MessageProduction(RDKafkaErrorCode::State),
            producer_usable: false,
        });
        assert!(matches!(stuck, Error::TransactionStuck(_)), "{stuck:?}");
        assert_eq!(stuck.class(), ErrorClass::Retriable);
        let record = OutRecord {
            topic: "t".into(),
            key: b"k".to_vec(),
            payload: vec![0; 10],
            headers: None,
        };
        assert_eq!(record.size(), 12);
    }
}

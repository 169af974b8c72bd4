//! The one place a Kafka client error is given an [`ErrorClass`]; every connector and every
//! transaction runner asks [`classify`] instead of matching error codes itself.
//!
//! | error | class | why |
//! |---|---|---|
//! | fenced producer, fatal transactional / idempotent error | `Fatal` | this producer can never be used again (a newer instance took over, or librdkafka raised a fatal error) |
//! | transactional error that requires an abort | `Retriable` | after `abort_transaction` the same work can be done again |
//! | other transactional error marked retriable | `Retriable` | |
//! | `MessageSizeTooLarge`, `MessageBatchTooLarge`, `InvalidRecord`, `InvalidMessage`, `InvalidMessageSize`, topic / cluster authorization failed, `PolicyViolation` | `Permanent` | this record (or this topic) can never succeed: route it aside and move on |
//! | SASL / authentication failures, group or transactional-id authorization, client config or creation | `Fatal` | configuration: stop with a clear message |
//! | anything else (transport, timeouts, not leader, queue full, coordinator moves ...) | `Retriable` | Kafka heals these by itself |
//!
//! A transaction error that requires an abort is *retriable after the abort*: the runner must
//! call [`requires_abort`] and abort before retrying (see [`crate::produce::commit_transaction`]).

use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

use crate::error::ErrorClass;

/// The class of a librdkafka error.
pub fn classify(err: &KafkaError) -> ErrorClass {
    match err {
        KafkaError::Transaction(e) => {
            if e.is_fatal() || is_fencing(e.code()) {
                ErrorClass::Fatal
            } else if e.txn_requires_abort() || e.is_retriable() {
                ErrorClass::Retriable
            } else {
                classify_code(e.code())
            }
        }
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorClass::Fatal,
        KafkaError::AdminOp(code) => classify_code(*code),
        other => match other.rdkafka_error_code() {
            Some(code) => classify_code(code),
            None => ErrorClass::Retriable,
        },
    }
}

/// The class of a librdkafka error code (delivery reports, admin results).
pub fn classify_code(code: C) -> ErrorClass {
    match code {
        C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidMessage
        | C::InvalidMessageSize
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::PolicyViolation => ErrorClass::Permanent,
        c if is_fencing(c) => ErrorClass::Fatal,
        C::Fatal
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState => ErrorClass::Fatal,
        _ => ErrorClass::Retriable,
    }
}

fn is_fencing(code: C) -> bool {
    matches!(
        code,
        C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch
    )
}

/// Whether a failure inside a transaction is resolved by aborting it: every failure that is not
/// fatal (librdkafka's `txn_requires_abort` errors, failed deliveries, a timed-out commit). A
/// fenced or fatally failed producer cannot abort; it must be dropped.
pub fn requires_abort(err: &KafkaError) -> bool {
    classify(err) != ErrorClass::Fatal
}

/// A short, bounded name of the error for DLQ headers and metric labels, e.g.
/// `kafka.MessageSizeTooLarge`.
pub fn error_name(err: &KafkaError) -> String {
    let code = match err {
        KafkaError::AdminOp(c) => Some(*c),
        KafkaError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(code) => format!("kafka.{code:?}"),
        None => "kafka.ClientError".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let p = KafkaError::MessageProduction;
        let cases: &[(KafkaError, ErrorClass)] = &[
            (p(C::MessageSizeTooLarge), ErrorClass::Permanent),
            (p(C::MessageBatchTooLarge), ErrorClass::Permanent),
            (p(C::InvalidRecord), ErrorClass::Permanent),
            (p(C::TopicAuthorizationFailed), ErrorClass::Permanent),
            (
                KafkaError::AdminOp(C::ClusterAuthorizationFailed),
                ErrorClass::Permanent,
            ),
            (p(C::ProducerFenced), ErrorClass::Fatal),
            (p(C::InvalidProducerEpoch), ErrorClass::Fatal),
            (p(C::Fatal), ErrorClass::Fatal),
            (
                KafkaError::Global(C::SaslAuthenticationFailed),
                ErrorClass::Fatal,
            ),
            (KafkaError::ClientCreation("bad".into()), ErrorClass::Fatal),
            (p(C::MessageTimedOut), ErrorClass::Retriable),
            (p(C::RequestTimedOut), ErrorClass::Retriable),
            (p(C::NotLeaderForPartition), ErrorClass::Retriable),
            (p(C::QueueFull), ErrorClass::Retriable),
            (KafkaError::Global(C::AllBrokersDown), ErrorClass::Retriable),
            (
                KafkaError::Flush(C::OperationTimedOut),
                ErrorClass::Retriable,
            ),
            (KafkaError::Canceled, ErrorClass::Retriable),
        ];
        for (err, class) in cases {
            assert_eq!(classify(err), *class, "{err:?}");
        }
        assert_eq!(
            error_name(&p(C::MessageSizeTooLarge)),
            "kafka.MessageSizeTooLarge"
        );
    }

    #[test]
    fn permanent_and_retriable_delivery_errors_require_an_abort_fatal_ones_do_not() {
        assert!(requires_abort(&KafkaError::MessageProduction(
            C::MessageSizeTooLarge
        )));
        assert!(requires_abort(&KafkaError::MessageProduction(
            C::MessageTimedOut
        )));
        assert!(!requires_abort(&KafkaError::MessageProduction(
            C::ProducerFenced
        )));
    }
}

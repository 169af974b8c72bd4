//! The metadata every event carries, and the Kafka headers derived from it.

use rdkafka::message::OwnedHeaders;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// Which athena mechanism produced an event (`com.athenaconnect.events.SourceKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceKind {
    /// A polled Changed Data Subscription.
    ChangedData,
    /// A FHIR event-subscription notification, inflated by reading the resource.
    FhirPush,
    /// A FHIR Bulk `$export` snapshot.
    BulkExport,
}

/// `com.athenaconnect.events.EventEnvelope`: metadata every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// Deterministic id of this change (see [`crate::mapping`]).
    pub event_id: String,
    /// The athena mechanism that observed the change.
    pub source: SourceKind,
    /// athenaOne practice id.
    pub practice_id: String,
    /// athenaOne department id, when the record names one.
    pub department_id: Option<String>,
    /// Lower-case entity name (`patient`, `appointment`, ...).
    pub entity_type: String,
    /// athenaOne id of the changed entity.
    pub entity_id: String,
    /// athena event name when known.
    pub event_name: Option<String>,
    /// When the change happened in athena.
    pub changed_at: Option<TimestampMillis>,
    /// When athena-connect read it.
    pub observed_at: TimestampMillis,
    /// True for bulk-export snapshots.
    #[serde(default)]
    pub snapshot: bool,
    /// True when re-read through the replay window after a crash.
    #[serde(default)]
    pub replayed: bool,
}

/// The headers of one event record written by any path (push inflation, push catch-up, bulk
/// backfill; the changed-data source builds the same set itself): `event_id`, the CloudEvents
/// attributes (`ce_id` = event id, `ce_subject` = entity id, `ce_time` = change time when known)
/// and the current trace context. Consumers can deduplicate on `event_id` without decoding Avro.
pub fn event_headers(envelope: &EventEnvelope, ce_type: &str, ce_source: &str) -> OwnedHeaders {
    connector_core::headers::event_record_headers(
        &envelope.event_id,
        &envelope.entity_id,
        envelope.changed_at.and_then(TimestampMillis::to_datetime),
        ce_type,
        ce_source,
    )
}

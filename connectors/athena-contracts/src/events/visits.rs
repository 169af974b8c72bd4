//! `visits` feed: `com.athenaconnect.events.VisitChanged` (schema `schemas/events/VisitChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Visit`: typed fields of one visit record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visit {
    /// athena visitid.
    pub visit_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.VisitChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed visit fields.
    pub payload: Visit,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for VisitChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.VisitChanged";
}

impl FeedEvent for VisitChanged {
    const ENTITY_TYPE: &'static str = "visit";
    const ID_FIELDS: &'static [&'static str] = &["visitid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Visit {
            visit_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        VisitChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `orcase` feed: `com.athenaconnect.events.OrCaseChanged` (schema `schemas/events/OrCaseChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.OrCase`: typed fields of one or case record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrCase {
    /// athena orcaseid.
    pub or_case_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.OrCaseChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrCaseChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed or case fields.
    pub payload: OrCase,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for OrCaseChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.OrCaseChanged";
}

impl FeedEvent for OrCaseChanged {
    const ENTITY_TYPE: &'static str = "or_case";
    const ID_FIELDS: &'static [&'static str] = &["orcaseid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = OrCase {
            or_case_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        OrCaseChanged {
            envelope,
            payload,
            original,
        }
    }
}

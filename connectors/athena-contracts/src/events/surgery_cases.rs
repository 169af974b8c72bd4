//! `surgerycases` feed: `com.athenaconnect.events.SurgeryCaseChanged` (schema `schemas/events/SurgeryCaseChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.SurgeryCase`: typed fields of one surgery case record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeryCase {
    /// athena surgerycaseid.
    pub surgery_case_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.SurgeryCaseChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurgeryCaseChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed surgery case fields.
    pub payload: SurgeryCase,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for SurgeryCaseChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.SurgeryCaseChanged";
}

impl FeedEvent for SurgeryCaseChanged {
    const ENTITY_TYPE: &'static str = "surgery_case";
    const ID_FIELDS: &'static [&'static str] = &["surgerycaseid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = SurgeryCase {
            surgery_case_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        SurgeryCaseChanged {
            envelope,
            payload,
            original,
        }
    }
}

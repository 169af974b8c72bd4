//! `ccmenrollmentstatus` feed: `com.athenaconnect.events.CcmEnrollmentStatusChanged` (schema `schemas/events/CcmEnrollmentStatusChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.CcmEnrollmentStatus`: typed fields of one ccm enrollment status record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcmEnrollmentStatus {
    /// athena patientid (one status per patient).
    pub patient_id: String,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena CCM enrollment status.
    pub status: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.CcmEnrollmentStatusChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcmEnrollmentStatusChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed ccm enrollment status fields.
    pub payload: CcmEnrollmentStatus,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for CcmEnrollmentStatusChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.CcmEnrollmentStatusChanged";
}

impl FeedEvent for CcmEnrollmentStatusChanged {
    const ENTITY_TYPE: &'static str = "ccm_enrollment_status";
    const ID_FIELDS: &'static [&'static str] = &["patientid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = CcmEnrollmentStatus {
            patient_id: envelope.entity_id.clone(),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status", "enrollmentstatus"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        CcmEnrollmentStatusChanged {
            envelope,
            payload,
            original,
        }
    }
}

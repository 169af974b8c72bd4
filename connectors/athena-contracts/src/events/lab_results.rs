//! `labresults` feed: `com.athenaconnect.events.LabResultChanged` (schema `schemas/events/LabResultChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.LabResult`: typed fields of one lab result record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabResult {
    /// athena labresultid.
    pub lab_result_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena encounterid.
    pub encounter_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena providerid.
    pub provider_id: Option<String>,
    /// athena tietoorderid (the order this result answers).
    pub order_id: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.LabResultChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabResultChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed lab result fields.
    pub payload: LabResult,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for LabResultChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.LabResultChanged";
}

impl FeedEvent for LabResultChanged {
    const ENTITY_TYPE: &'static str = "lab_result";
    const ID_FIELDS: &'static [&'static str] = &["labresultid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = LabResult {
            lab_result_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            encounter_id: rec.s(&["encounterid"]),
            status: rec.s(&["status"]),
            provider_id: rec.s(&["providerid"]),
            order_id: rec.s(&["tietoorderid", "orderid"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        LabResultChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `documents/patientcase` feed: `com.athenaconnect.events.PatientCaseChanged` (schema `schemas/events/PatientCaseChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.PatientCase`: typed fields of one patient case record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientCase {
    /// athena patientcaseid.
    pub patient_case_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena providerid.
    pub provider_id: Option<String>,
    /// athena documentclass.
    pub document_class: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.PatientCaseChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientCaseChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed patient case fields.
    pub payload: PatientCase,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for PatientCaseChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.PatientCaseChanged";
}

impl FeedEvent for PatientCaseChanged {
    const ENTITY_TYPE: &'static str = "patient_case";
    const ID_FIELDS: &'static [&'static str] = &["patientcaseid", "documentid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = PatientCase {
            patient_case_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            provider_id: rec.s(&["providerid"]),
            document_class: rec.s(&["documentclass"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        PatientCaseChanged {
            envelope,
            payload,
            original,
        }
    }
}

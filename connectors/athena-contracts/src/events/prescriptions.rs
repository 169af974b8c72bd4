//! `prescriptions` feed: `com.athenaconnect.events.PrescriptionChanged` (schema `schemas/events/PrescriptionChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Prescription`: typed fields of one prescription record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prescription {
    /// athena documentid of the prescription.
    pub document_id: String,
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
    /// athena documentclass.
    pub document_class: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.PrescriptionChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescriptionChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed prescription fields.
    pub payload: Prescription,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for PrescriptionChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.PrescriptionChanged";
}

impl FeedEvent for PrescriptionChanged {
    const ENTITY_TYPE: &'static str = "prescription";
    const ID_FIELDS: &'static [&'static str] = &["documentid", "prescriptionid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Prescription {
            document_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            encounter_id: rec.s(&["encounterid"]),
            status: rec.s(&["status"]),
            provider_id: rec.s(&["providerid"]),
            document_class: rec.s(&["documentclass"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        PrescriptionChanged {
            envelope,
            payload,
            original,
        }
    }
}

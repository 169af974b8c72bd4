//! `chart/healthhistory/medication` feed: `com.athenaconnect.events.MedicationChanged` (schema `schemas/events/MedicationChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Medication`: typed fields of one medication record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Medication {
    /// athena medicationentryid.
    pub medication_entry_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena medicationid (the drug).
    pub medication_id: Option<String>,
    /// athena medication (drug name and strength).
    pub medication_name: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena startdate, as a date.
    pub start_date: Option<Date>,
    /// athena stopdate, as a date.
    pub stop_date: Option<Date>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.MedicationChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicationChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed medication fields.
    pub payload: Medication,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for MedicationChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.MedicationChanged";
}

impl FeedEvent for MedicationChanged {
    const ENTITY_TYPE: &'static str = "medication";
    const ID_FIELDS: &'static [&'static str] = &["medicationentryid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Medication {
            medication_entry_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            medication_id: rec.s(&["medicationid"]),
            medication_name: rec.s(&["medication"]),
            status: rec.s(&["status"]),
            start_date: rec.date(&["startdate"]),
            stop_date: rec.date(&["stopdate"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        MedicationChanged {
            envelope,
            payload,
            original,
        }
    }
}

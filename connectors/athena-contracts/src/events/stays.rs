//! `stays` feed: `com.athenaconnect.events.StayChanged` (schema `schemas/events/StayChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Stay`: typed fields of one stay record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stay {
    /// athena stayid.
    pub stay_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena admitdate, as a date.
    pub admit_date: Option<Date>,
    /// athena dischargedate, as a date.
    pub discharge_date: Option<Date>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.StayChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StayChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed stay fields.
    pub payload: Stay,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for StayChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.StayChanged";
}

impl FeedEvent for StayChanged {
    const ENTITY_TYPE: &'static str = "stay";
    const ID_FIELDS: &'static [&'static str] = &["stayid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Stay {
            stay_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            admit_date: rec.date(&["admitdate"]),
            discharge_date: rec.date(&["dischargedate"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        StayChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `chart/healthhistory/vaccine` feed: `com.athenaconnect.events.VaccineChanged` (schema `schemas/events/VaccineChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Vaccine`: typed fields of one vaccine record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vaccine {
    /// athena vaccineid.
    pub vaccine_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena cvx code.
    pub cvx: Option<String>,
    /// athena vaccine description.
    pub description: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// athena administerdate, as a date.
    pub administer_date: Option<Date>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.VaccineChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaccineChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed vaccine fields.
    pub payload: Vaccine,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for VaccineChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.VaccineChanged";
}

impl FeedEvent for VaccineChanged {
    const ENTITY_TYPE: &'static str = "vaccine";
    const ID_FIELDS: &'static [&'static str] = &["vaccineid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Vaccine {
            vaccine_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            cvx: rec.s(&["cvx"]),
            description: rec.s(&["description"]),
            status: rec.s(&["status"]),
            administer_date: rec.date(&["administerdate"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        VaccineChanged {
            envelope,
            payload,
            original,
        }
    }
}

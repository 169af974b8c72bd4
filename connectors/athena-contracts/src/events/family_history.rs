//! `chart/healthhistory/familyhistory` feed: `com.athenaconnect.events.FamilyHistoryChanged` (schema `schemas/events/FamilyHistoryChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.FamilyHistory`: typed fields of one family history record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyHistory {
    /// athena familyhistoryid.
    pub family_history_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena relation (e.g. MOTHER).
    pub relation: Option<String>,
    /// athena problem code.
    pub code: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.FamilyHistoryChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyHistoryChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed family history fields.
    pub payload: FamilyHistory,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for FamilyHistoryChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.FamilyHistoryChanged";
}

impl FeedEvent for FamilyHistoryChanged {
    const ENTITY_TYPE: &'static str = "family_history";
    const ID_FIELDS: &'static [&'static str] = &["familyhistoryid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = FamilyHistory {
            family_history_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            relation: rec.s(&["relation"]),
            code: rec.s(&["code"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        FamilyHistoryChanged {
            envelope,
            payload,
            original,
        }
    }
}

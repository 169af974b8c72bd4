//! `chart/healthhistory/problems` feed: `com.athenaconnect.events.ProblemChanged` (schema `schemas/events/ProblemChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Problem`: typed fields of one problem record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    /// athena problemid.
    pub problem_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena codeset (e.g. SNOMED).
    pub codeset: Option<String>,
    /// athena code in that codeset.
    pub code: Option<String>,
    /// athena name of the problem.
    pub name: Option<String>,
    /// athena status, as athena reports it.
    pub status: Option<String>,
    /// startdate of the first entry of athena events[], as a date.
    pub start_date: Option<Date>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ProblemChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed problem fields.
    pub payload: Problem,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ProblemChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ProblemChanged";
}

impl FeedEvent for ProblemChanged {
    const ENTITY_TYPE: &'static str = "problem";
    const ID_FIELDS: &'static [&'static str] = &["problemid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Problem {
            problem_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            codeset: rec.s(&["codeset"]),
            code: rec.s(&["code"]),
            name: rec.s(&["name"]),
            status: rec.s(&["status"]),
            start_date: rec.date(&["/events/0/startdate"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ProblemChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `claims` feed: `com.athenaconnect.events.ClaimChanged` (schema `schemas/events/ClaimChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Claim`: typed fields of one claim record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// athena claimid.
    pub claim_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena appointmentid the claim was created from.
    pub appointment_id: Option<String>,
    /// athena servicedate, as a date.
    pub service_date: Option<Date>,
    /// athena supervisingproviderid.
    pub supervising_provider_id: Option<String>,
    /// athena renderingproviderid.
    pub rendering_provider_id: Option<String>,
    /// athena claimstatus.
    pub claim_status: Option<String>,
    /// athena paidamount, decimal text as athena sends it.
    pub paid_amount: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ClaimChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed claim fields.
    pub payload: Claim,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ClaimChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ClaimChanged";
}

impl FeedEvent for ClaimChanged {
    const ENTITY_TYPE: &'static str = "claim";
    const ID_FIELDS: &'static [&'static str] = &["claimid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Claim {
            claim_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            appointment_id: rec.s(&["appointmentid"]),
            service_date: rec.date(&["servicedate"]),
            supervising_provider_id: rec.s(&["supervisingproviderid"]),
            rendering_provider_id: rec.s(&["renderingproviderid"]),
            claim_status: rec.s(&["claimstatus"]),
            paid_amount: rec.s(&["paidamount"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ClaimChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `chargecodes` feed: `com.athenaconnect.events.ChargeCodeChanged` (schema `schemas/events/ChargeCodeChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.ChargeCode`: typed fields of one charge code record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeCode {
    /// athena chargecodeid.
    pub charge_code_id: String,
    /// athena procedure code.
    pub code: Option<String>,
    /// athena description of the code.
    pub description: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ChargeCodeChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeCodeChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed charge code fields.
    pub payload: ChargeCode,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ChargeCodeChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ChargeCodeChanged";
}

impl FeedEvent for ChargeCodeChanged {
    const ENTITY_TYPE: &'static str = "charge_code";
    const ID_FIELDS: &'static [&'static str] = &["chargecodeid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = ChargeCode {
            charge_code_id: envelope.entity_id.clone(),
            code: rec.s(&["code", "procedurecode"]),
            description: rec.s(&["description"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ChargeCodeChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `orders` feed: `com.athenaconnect.events.OrderChanged` (schema `schemas/events/OrderChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Order`: typed fields of one order record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// athena orderid.
    pub order_id: String,
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
    /// athena ordertype.
    pub order_type: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.OrderChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed order fields.
    pub payload: Order,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for OrderChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.OrderChanged";
}

impl FeedEvent for OrderChanged {
    const ENTITY_TYPE: &'static str = "order";
    const ID_FIELDS: &'static [&'static str] = &["orderid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Order {
            order_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            encounter_id: rec.s(&["encounterid"]),
            status: rec.s(&["status"]),
            provider_id: rec.s(&["providerid"]),
            order_type: rec.s(&["ordertype"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        OrderChanged {
            envelope,
            payload,
            original,
        }
    }
}

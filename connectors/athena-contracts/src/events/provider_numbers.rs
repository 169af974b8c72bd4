//! `providernumbers` feed: `com.athenaconnect.events.ProviderNumberChanged` (schema `schemas/events/ProviderNumberChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.ProviderNumber`: typed fields of one provider number record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderNumber {
    /// athena providernumberid.
    pub provider_number_id: String,
    /// athena providerid.
    pub provider_id: Option<String>,
    /// athena providernumbercategory.
    pub number_category: Option<String>,
    /// athena insurancepackageid.
    pub insurance_package_id: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ProviderNumberChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderNumberChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed provider number fields.
    pub payload: ProviderNumber,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ProviderNumberChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ProviderNumberChanged";
}

impl FeedEvent for ProviderNumberChanged {
    const ENTITY_TYPE: &'static str = "provider_number";
    const ID_FIELDS: &'static [&'static str] = &["providernumberid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = ProviderNumber {
            provider_number_id: envelope.entity_id.clone(),
            provider_id: rec.s(&["providerid"]),
            number_category: rec.s(&["providernumbercategory"]),
            insurance_package_id: rec.s(&["insurancepackageid"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ProviderNumberChanged {
            envelope,
            payload,
            original,
        }
    }
}

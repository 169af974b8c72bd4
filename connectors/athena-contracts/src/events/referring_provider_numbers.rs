//! `referringprovidernumbers` feed: `com.athenaconnect.events.ReferringProviderNumberChanged` (schema `schemas/events/ReferringProviderNumberChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.ReferringProviderNumber`: typed fields of one referring provider number record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferringProviderNumber {
    /// athena referringprovidernumberid.
    pub referring_provider_number_id: String,
    /// athena referringproviderid.
    pub referring_provider_id: Option<String>,
    /// athena providernumbercategory.
    pub number_category: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ReferringProviderNumberChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferringProviderNumberChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed referring provider number fields.
    pub payload: ReferringProviderNumber,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ReferringProviderNumberChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ReferringProviderNumberChanged";
}

impl FeedEvent for ReferringProviderNumberChanged {
    const ENTITY_TYPE: &'static str = "referring_provider_number";
    const ID_FIELDS: &'static [&'static str] = &["referringprovidernumberid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = ReferringProviderNumber {
            referring_provider_number_id: envelope.entity_id.clone(),
            referring_provider_id: rec.s(&["referringproviderid"]),
            number_category: rec.s(&["providernumbercategory"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ReferringProviderNumberChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `referringproviders` feed: `com.athenaconnect.events.ReferringProviderChanged` (schema `schemas/events/ReferringProviderChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.ReferringProvider`: typed fields of one referring provider record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferringProvider {
    /// athena referringproviderid.
    pub referring_provider_id: String,
    /// athena firstname.
    pub first_name: Option<String>,
    /// athena lastname.
    pub last_name: Option<String>,
    /// athena specialty.
    pub specialty: Option<String>,
    /// athena npi.
    pub npi: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ReferringProviderChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferringProviderChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed referring provider fields.
    pub payload: ReferringProvider,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ReferringProviderChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ReferringProviderChanged";
}

impl FeedEvent for ReferringProviderChanged {
    const ENTITY_TYPE: &'static str = "referring_provider";
    const ID_FIELDS: &'static [&'static str] = &["referringproviderid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = ReferringProvider {
            referring_provider_id: envelope.entity_id.clone(),
            first_name: rec.s(&["firstname"]),
            last_name: rec.s(&["lastname"]),
            specialty: rec.s(&["specialty"]),
            npi: rec.s(&["npi"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ReferringProviderChanged {
            envelope,
            payload,
            original,
        }
    }
}

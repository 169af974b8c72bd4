//! `providers` feed: `com.athenaconnect.events.ProviderChanged` (schema `schemas/events/ProviderChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Provider`: typed fields of one provider record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// athena providerid.
    pub provider_id: String,
    /// athena firstname.
    pub first_name: Option<String>,
    /// athena lastname.
    pub last_name: Option<String>,
    /// athena displayname.
    pub display_name: Option<String>,
    /// athena specialty.
    pub specialty: Option<String>,
    /// athena providertype (MD, NP, ...).
    pub provider_type: Option<String>,
    /// athena homedepartment.
    pub home_department_id: Option<String>,
    /// athena npi.
    pub npi: Option<String>,
    /// athena billable.
    pub billable: Option<bool>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ProviderChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed provider fields.
    pub payload: Provider,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ProviderChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ProviderChanged";
}

impl FeedEvent for ProviderChanged {
    const ENTITY_TYPE: &'static str = "provider";
    const ID_FIELDS: &'static [&'static str] = &["providerid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Provider {
            provider_id: envelope.entity_id.clone(),
            first_name: rec.s(&["firstname"]),
            last_name: rec.s(&["lastname"]),
            display_name: rec.s(&["displayname"]),
            specialty: rec.s(&["specialty"]),
            provider_type: rec.s(&["providertype"]),
            home_department_id: rec.s(&["homedepartment"]),
            npi: rec.s(&["npi"]),
            billable: rec.bool(&["billable"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ProviderChanged {
            envelope,
            payload,
            original,
        }
    }
}

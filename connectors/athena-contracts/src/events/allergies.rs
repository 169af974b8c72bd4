//! `chart/healthhistory/allergies` feed: `com.athenaconnect.events.AllergyChanged` (schema `schemas/events/AllergyChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{Date, EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.Allergy`: typed fields of one allergy record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allergy {
    /// athena allergyid (allergenid where athena sends that instead).
    pub allergy_id: String,
    /// athena patientid.
    pub patient_id: Option<String>,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// athena allergenname.
    pub allergen_name: Option<String>,
    /// athena criticality.
    pub criticality: Option<String>,
    /// athena onsetdate, as a date.
    pub onset_date: Option<Date>,
    /// athena deactivatedate, as a date.
    pub deactivated_date: Option<Date>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.AllergyChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllergyChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed allergy fields.
    pub payload: Allergy,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for AllergyChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.AllergyChanged";
}

impl FeedEvent for AllergyChanged {
    const ENTITY_TYPE: &'static str = "allergy";
    const ID_FIELDS: &'static [&'static str] = &["allergyid", "allergenid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Allergy {
            allergy_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            allergen_name: rec.s(&["allergenname"]),
            criticality: rec.s(&["criticality"]),
            onset_date: rec.date(&["onsetdate"]),
            deactivated_date: rec.date(&["deactivatedate"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        AllergyChanged {
            envelope,
            payload,
            original,
        }
    }
}

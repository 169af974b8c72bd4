//! `imagingresults` feed: `com.athenaconnect.events.ImagingResultChanged` (schema `schemas/events/ImagingResultChanged.avsc`).

use serde::{Deserialize, Serialize};

use crate::{EventEnvelope, TimestampMillis};

use super::{FeedEvent, Rec};

/// `com.athenaconnect.events.ImagingResult`: typed fields of one imaging result record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingResult {
    /// athena imagingresultid.
    pub imaging_result_id: String,
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
    /// athena tietoorderid.
    pub order_id: Option<String>,
    /// athena lastmodified / lastmodifieddatetime, converted to UTC.
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ImagingResultChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingResultChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed imaging result fields.
    pub payload: ImagingResult,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl connector_core::avro::AvroRecord for ImagingResultChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.ImagingResultChanged";
}

impl FeedEvent for ImagingResultChanged {
    const ENTITY_TYPE: &'static str = "imaging_result";
    const ID_FIELDS: &'static [&'static str] = &["imagingresultid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = ImagingResult {
            imaging_result_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            encounter_id: rec.s(&["encounterid"]),
            status: rec.s(&["status"]),
            provider_id: rec.s(&["providerid"]),
            order_id: rec.s(&["tietoorderid", "orderid"]),
            last_modified: rec.ts(&["lastmodified", "lastmodifieddatetime"]),
        };
        ImagingResultChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `appointments` feed: `com.athenaconnect.events.AppointmentChanged`
//! (`schemas/events/AppointmentChanged.avsc`) from a proprietary appointment record (feed row or
//! `GET /appointments/{id}`).

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{FeedEvent, Rec};
use crate::{Date, EventEnvelope, TimestampMillis};

/// `com.athenaconnect.events.Appointment`: typed appointment fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/AppointmentChanged.avsc, the contract.
pub struct Appointment {
    pub appointment_id: String,
    pub patient_id: Option<String>,
    pub department_id: Option<String>,
    pub provider_id: Option<String>,
    pub appointment_type_id: Option<String>,
    pub status: Option<String>,
    pub date: Option<Date>,
    pub start_time: Option<String>,
    pub duration_minutes: Option<i32>,
    pub cancel_reason_id: Option<String>,
    pub cancelled_at: Option<TimestampMillis>,
    pub scheduled_at: Option<TimestampMillis>,
    pub rescheduled_appointment_id: Option<String>,
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.AppointmentChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed appointment fields.
    pub payload: Appointment,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl AvroRecord for AppointmentChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.AppointmentChanged";
}

impl FeedEvent for AppointmentChanged {
    const ENTITY_TYPE: &'static str = "appointment";
    const ID_FIELDS: &'static [&'static str] = &["appointmentid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Appointment {
            appointment_id: envelope.entity_id.clone(),
            patient_id: rec.s(&["patientid"]),
            department_id: rec.s(&["departmentid"]),
            provider_id: rec.s(&["providerid"]),
            appointment_type_id: rec.s(&["appointmenttypeid"]),
            status: rec.s(&["appointmentstatus"]),
            date: rec.date(&["date"]),
            start_time: rec.s(&["starttime"]),
            duration_minutes: rec.int(&["duration"]),
            cancel_reason_id: rec.s(&["cancelreasonid"]),
            cancelled_at: rec.ts(&["cancelleddatetime"]),
            scheduled_at: rec.ts(&["scheduleddatetime"]),
            rescheduled_appointment_id: rec.s(&["rescheduledappointmentid"]),
            last_modified: rec.ts(&["lastmodified"]),
        };
        AppointmentChanged {
            envelope,
            payload,
            original,
        }
    }
}

//! `appointments` feed: the lead's `com.athenaconnect.events.AppointmentChanged`
//! (`schemas/events/AppointmentChanged.avsc`), mirrored in `connector_core::contracts`.

use connector_core::contracts::{Appointment, AppointmentChanged, EventEnvelope};

use super::{FeedEvent, Rec};

impl FeedEvent for AppointmentChanged {
    const ENTITY_TYPE: &'static str = "appointment";
    const ID_FIELDS: &'static [&'static str] = &["appointmentid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
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

//! `patients` feed: the lead's `com.athenaconnect.events.PatientChanged`
//! (`schemas/events/PatientChanged.avsc`), mirrored in `connector_core::contracts`.

use connector_core::contracts::{EventEnvelope, Patient, PatientChanged};

use super::{FeedEvent, Rec};

impl FeedEvent for PatientChanged {
    const ENTITY_TYPE: &'static str = "patient";
    const ID_FIELDS: &'static [&'static str] = &["patientid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }

    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self {
        let payload = Patient {
            patient_id: envelope.entity_id.clone(),
            department_id: rec.s(&["departmentid"]),
            status: rec.s(&["status"]),
            first_name: rec.s(&["firstname"]),
            middle_name: rec.s(&["middlename"]),
            last_name: rec.s(&["lastname"]),
            dob: rec.date(&["dob"]),
            sex: rec.s(&["sex"]),
            email: rec.s(&["email"]),
            home_phone: rec.s(&["homephone"]),
            mobile_phone: rec.s(&["mobilephone"]),
            address1: rec.s(&["address1"]),
            address2: rec.s(&["address2"]),
            city: rec.s(&["city"]),
            state: rec.s(&["state"]),
            zip: rec.s(&["zip"]),
            primary_provider_id: rec.s(&["primaryproviderid"]),
            enterprise_id: rec.s(&["enterpriseid"]),
            previous_patient_ids: rec.strs(&["previouspatientids"]),
            last_modified: rec.ts(&["lastmodified"]),
        };
        PatientChanged {
            envelope,
            payload,
            original,
        }
    }
}

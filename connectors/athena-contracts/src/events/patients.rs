//! `patients` feed: `com.athenaconnect.events.PatientChanged` (`schemas/events/PatientChanged.avsc`)
//! from a proprietary patient record (feed row or `GET /patients/{id}`, [`FeedEvent::build`]) or
//! from a FHIR `Patient` ([`patient_from_fhir`], bulk-export snapshots).

use chrono::NaiveDate;
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FeedEvent, Rec};
use crate::mapping::{Observation, fhir_envelope, fhir_version};
use crate::{Date, EventEnvelope, TimestampMillis};

/// `com.athenaconnect.events.Patient`: typed patient fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/PatientChanged.avsc, the contract.
pub struct Patient {
    pub patient_id: String,
    pub department_id: Option<String>,
    pub status: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub dob: Option<Date>,
    pub sex: Option<String>,
    pub email: Option<String>,
    pub home_phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub primary_provider_id: Option<String>,
    pub enterprise_id: Option<String>,
    #[serde(default)]
    pub previous_patient_ids: Vec<String>,
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.PatientChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed patient fields.
    pub payload: Patient,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl AvroRecord for PatientChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.PatientChanged";
}

impl FeedEvent for PatientChanged {
    const ENTITY_TYPE: &'static str = "patient";
    const ID_FIELDS: &'static [&'static str] = &["patientid"];

    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
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

/// A `PatientChanged` from a FHIR `Patient` (bulk export snapshots with `patient_source =
/// "fhir"`, or a patient gone since the export). The entity id is athena's patient id (the part
/// after `E-`), as on the other paths; the version is the FHIR one, so the id is not the
/// changed-data id of the same state.
pub fn patient_from_fhir(practice: &str, r: &Value, obs: &Observation) -> Option<PatientChanged> {
    let fhir_id = r.get("id")?.as_str()?;
    // `a-1.E-` names no patient: no event, rather than one for the empty id (found by fuzzing).
    let id = athena_client::api::fhir::ids::patient_id(fhir_id)
        .filter(|id| !id.is_empty())?
        .to_string();
    let (version, at) = fhir_version(r);
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let name = r.pointer("/name/0");
    let telecom = |system: &str, use_: Option<&str>| {
        r.get("telecom")?.as_array()?.iter().find_map(|t| {
            (t.get("system")?.as_str()? == system
                && use_.is_none_or(|u| t.get("use").and_then(Value::as_str) == Some(u)))
            .then(|| t.get("value")?.as_str().map(str::to_owned))?
        })
    };
    let addr = r.pointer("/address/0");
    let payload = Patient {
        patient_id: id.clone(),
        department_id: None,
        status: r
            .get("active")
            .and_then(Value::as_bool)
            .map(|a| if a { "active" } else { "inactive" }.to_string()),
        first_name: s(name.and_then(|n| n.pointer("/given/0"))),
        middle_name: s(name.and_then(|n| n.pointer("/given/1"))),
        last_name: name.and_then(|n| Rec(n).s(&["family"])),
        dob: r
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(Date::from),
        sex: r.get("gender").and_then(Value::as_str).map(|g| {
            match g {
                "male" => "M",
                "female" => "F",
                other => other,
            }
            .to_string()
        }),
        email: telecom("email", None),
        home_phone: telecom("phone", Some("home")),
        mobile_phone: telecom("phone", Some("mobile")),
        address1: s(addr.and_then(|a| a.pointer("/line/0"))),
        address2: s(addr.and_then(|a| a.pointer("/line/1"))),
        city: addr.and_then(|a| Rec(a).s(&["city"])),
        state: addr.and_then(|a| Rec(a).s(&["state"])),
        zip: addr.and_then(|a| Rec(a).s(&["postalCode"])),
        primary_provider_id: None,
        enterprise_id: None,
        previous_patient_ids: Vec::new(),
        last_modified: at.map(Into::into),
    };
    Some(PatientChanged {
        envelope: fhir_envelope(obs, practice, "patient", &id, &version, at),
        payload,
        original: obs.include_original.then(|| r.to_string()),
    })
}

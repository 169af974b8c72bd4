//! Rust mirror of `schemas/commands/CreatePatient.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::patients::PatientFields;
use athena_contracts::{Date, TimestampMillis};
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, date, envelope, ids};

/// `com.athenaconnect.commands.CreatePatient`: Register a patient (POST /v1/{practiceid}/patients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena departmentid: the patient's primary department (required by athena).
    pub department_id: String,
    /// First name (athena: up to 20 characters). PHI; never logged.
    pub first_name: String,
    /// Last name (athena: up to 30 characters). PHI; never logged.
    pub last_name: String,
    /// Date of birth. PHI; never logged.
    pub dob: Date,
    /// Sex, M or F.
    pub sex: Option<String>,
    /// Email (athena: up to 50 characters). PHI; never logged.
    pub email: Option<String>,
    /// Home phone. PHI; never logged.
    pub home_phone: Option<String>,
    /// Mobile phone. PHI; never logged.
    pub mobile_phone: Option<String>,
    /// Address line 1. PHI; never logged.
    pub address1: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State (two letters).
    pub state: Option<String>,
    /// ZIP code.
    pub zip: Option<String>,
}

impl AvroRecord for CreatePatient {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CreatePatient";
}

envelope!(CreatePatient);

impl WriteBack for CreatePatient {
    /// Read back by athena's best match on the demographics.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let id = cx.practice.create_patient(&self.fields()).await?;
            Ok(ids(&[("patient_id", &id)]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let found = p.best_match(&self.fields()).await?;
            Ok(match found.first() {
                Some(m) => ReadBack::Applied(ids(&[("patient_id", &m.patientid)])),
                None => ReadBack::NotApplied,
            })
        })
    }
}

impl CreatePatient {
    fn fields(&self) -> PatientFields {
        PatientFields {
            firstname: Some(self.first_name.clone()),
            lastname: Some(self.last_name.clone()),
            dob: date(Some(self.dob)),
            departmentid: Some(self.department_id.clone()),
            sex: self.sex.clone(),
            email: self.email.clone(),
            homephone: self.home_phone.clone(),
            mobilephone: self.mobile_phone.clone(),
            zip: self.zip.clone(),
            address1: self.address1.clone(),
            city: self.city.clone(),
            state: self.state.clone(),
            status: None,
            extra: Vec::new(),
        }
    }
}

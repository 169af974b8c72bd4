//! Rust mirror of `schemas/commands/UpdatePatient.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::patients::PatientFields;
use athena_contracts::{Date, TimestampMillis};
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, date, envelope, ids};

/// `com.athenaconnect.commands.UpdatePatient`: Set demographic fields of a patient (PUT /v1/{practiceid}/patients/{patientid}); only fields that are set are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena patientid.
    pub patient_id: String,
    /// athena departmentid.
    pub department_id: Option<String>,
    /// First name. PHI; never logged.
    pub first_name: Option<String>,
    /// Last name. PHI; never logged.
    pub last_name: Option<String>,
    /// Date of birth. PHI; never logged.
    pub dob: Option<Date>,
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
    /// athena status: a (active), i (inactive), p (prospective).
    pub status: Option<String>,
}

impl AvroRecord for UpdatePatient {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UpdatePatient";
}

envelope!(UpdatePatient);

impl WriteBack for UpdatePatient {
    /// Setting the same fields again is harmless.
    fn idempotency(&self) -> Idempotency {
        Idempotency::Natural
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let id = cx
                .practice
                .update_patient(&self.patient_id, &self.fields())
                .await?;
            Ok(ids(&[("patient_id", &id)]))
        })
    }

    fn reconcile<'a>(&'a self, _p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async { Ok(ReadBack::NotApplied) })
    }
}

impl UpdatePatient {
    fn fields(&self) -> PatientFields {
        PatientFields {
            firstname: self.first_name.clone(),
            lastname: self.last_name.clone(),
            dob: date(self.dob),
            departmentid: self.department_id.clone(),
            sex: self.sex.clone(),
            email: self.email.clone(),
            homephone: self.home_phone.clone(),
            mobilephone: self.mobile_phone.clone(),
            zip: self.zip.clone(),
            address1: self.address1.clone(),
            city: self.city.clone(),
            state: self.state.clone(),
            status: self.status.clone(),
            extra: Vec::new(),
        }
    }
}

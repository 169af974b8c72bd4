//! `CreatePatient`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::CreatePatient` (data only).

use athena_client::PracticeClient;
use athena_client::api::patients::PatientFields;
use athena_contracts::commands::CreatePatient;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, date, envelope, ids};

envelope!(CreatePatient);

impl WriteBack for CreatePatient {
    /// Read back by athena's best match on the demographics.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let id = cx.practice.create_patient(&fields(self)).await?;
            Ok(ids(&[("patient_id", &id)]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let found = p.best_match(&fields(self)).await?;
            Ok(match found.first() {
                Some(m) => ReadBack::Applied(ids(&[("patient_id", &m.patientid)])),
                None => ReadBack::NotApplied,
            })
        })
    }
}

fn fields(c: &CreatePatient) -> PatientFields {
    PatientFields {
        firstname: Some(c.first_name.clone()),
        lastname: Some(c.last_name.clone()),
        dob: date(Some(c.dob)),
        departmentid: Some(c.department_id.clone()),
        sex: c.sex.clone(),
        email: c.email.clone(),
        homephone: c.home_phone.clone(),
        mobilephone: c.mobile_phone.clone(),
        zip: c.zip.clone(),
        address1: c.address1.clone(),
        city: c.city.clone(),
        state: c.state.clone(),
        status: None,
        extra: Vec::new(),
    }
}

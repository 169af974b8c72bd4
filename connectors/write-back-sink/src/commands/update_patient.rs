//! `UpdatePatient`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::UpdatePatient` (data only).

use athena_client::PracticeClient;
use athena_client::api::patients::PatientFields;
use athena_contracts::commands::UpdatePatient;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, date, envelope, ids};

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
                .update_patient(&self.patient_id, &fields(self))
                .await?;
            Ok(ids(&[("patient_id", &id)]))
        })
    }

    fn reconcile<'a>(&'a self, _p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async { Ok(ReadBack::NotApplied) })
    }
}

fn fields(c: &UpdatePatient) -> PatientFields {
    PatientFields {
        firstname: c.first_name.clone(),
        lastname: c.last_name.clone(),
        dob: date(c.dob),
        departmentid: c.department_id.clone(),
        sex: c.sex.clone(),
        email: c.email.clone(),
        homephone: c.home_phone.clone(),
        mobilephone: c.mobile_phone.clone(),
        zip: c.zip.clone(),
        address1: c.address1.clone(),
        city: c.city.clone(),
        state: c.state.clone(),
        status: c.status.clone(),
        extra: Vec::new(),
    }
}

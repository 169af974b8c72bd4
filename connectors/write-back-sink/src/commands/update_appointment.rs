//! `UpdateAppointment`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::UpdateAppointment` (data only).

use athena_client::PracticeClient;
use athena_client::api::appointments::UpdateBooked;
use athena_contracts::commands::UpdateAppointment;

use super::{
    AthenaCtx, Idempotency, Invalid, Performed, ReadBack, Reading, WriteBack, envelope, ids,
    json_str,
};

envelope!(UpdateAppointment);

/// The (athena field, wanted value) pairs this command sets.
fn wanted(c: &UpdateAppointment) -> Vec<(&'static str, &str)> {
    [
        ("appointmenttypeid", &c.appointment_type_id),
        ("departmentid", &c.department_id),
        ("providerid", &c.provider_id),
        ("supervisingproviderid", &c.supervising_provider_id),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

fn touched(c: &UpdateAppointment) -> super::Ids {
    ids(&[
        ("appointment_id", &c.appointment_id),
        ("patient_id", c.patient_id.as_deref().unwrap_or("")),
    ])
}

impl WriteBack for UpdateAppointment {
    /// Setting the same fields twice changes nothing, but each call is a write athena records
    /// (and a changed-data row): read back the appointment first and re-send only when some
    /// field still differs.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn precheck(&self, _card_payments_enabled: bool) -> Result<(), Invalid> {
        if wanted(self).is_empty() {
            return Err(Invalid::command(
                "UpdateAppointment sets none of appointment_type_id, department_id, provider_id, supervising_provider_id",
            ));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let req = UpdateBooked {
                appointment_type_id: self.appointment_type_id.clone(),
                department_id: self.department_id.clone(),
                provider_id: self.provider_id.clone(),
                supervising_provider_id: self.supervising_provider_id.clone(),
            };
            cx.practice
                .update_booked_appointment(&self.appointment_id, &req)
                .await?;
            Ok(touched(self))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let a = p.get_appointment(&self.appointment_id).await?;
            let applied = wanted(self)
                .iter()
                .all(|(k, v)| json_str(&a.raw, k).as_deref() == Some(*v));
            Ok(if applied {
                ReadBack::Applied(touched(self))
            } else {
                ReadBack::NotApplied
            })
        })
    }
}

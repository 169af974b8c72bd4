//! `UpdateInsurance`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::UpdateInsurance` (data only).

use athena_client::PracticeClient;
use athena_client::api::insurances::InsuranceFields;
use athena_contracts::commands::UpdateInsurance;

use super::{
    AthenaCtx, Idempotency, Invalid, Performed, ReadBack, Reading, WriteBack, date, envelope,
    ids, json_str,
};

envelope!(UpdateInsurance);

/// The (athena field, wanted value) pairs this command sets, as athena shows them.
fn wanted(c: &UpdateInsurance) -> Vec<(&'static str, String)> {
    let dob = date(c.policyholder_dob).map(|d| d.format("%m/%d/%Y").to_string());
    [
        ("insurancepackageid", c.insurance_package_id.clone()),
        (
            "sequencenumber",
            c.sequence_number.map(|s| s.to_string()),
        ),
        ("insuranceidnumber", c.insurance_id_number.clone()),
        (
            "insurancepolicyholderfirstname",
            c.policyholder_first_name.clone(),
        ),
        (
            "insurancepolicyholderlastname",
            c.policyholder_last_name.clone(),
        ),
        ("insurancepolicyholderdob", dob),
        ("insurancepolicyholdersex", c.policyholder_sex.clone()),
        (
            "relationshiptoinsuredid",
            c.relationship_to_insured_id.clone(),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect()
}

fn touched(c: &UpdateInsurance) -> super::Ids {
    ids(&[
        ("insurance_id", &c.insurance_id),
        ("patient_id", &c.patient_id),
    ])
}

impl WriteBack for UpdateInsurance {
    /// Setting the same fields twice changes nothing, but each call is a write athena records:
    /// read the package back first and re-send only when some field still differs.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn precheck(&self, _card_payments_enabled: bool) -> Result<(), Invalid> {
        if wanted(self).is_empty() {
            return Err(Invalid::command("UpdateInsurance sets no field"));
        }
        if self
            .sequence_number
            .is_some_and(|s| u8::try_from(s).is_err())
        {
            return Err(Invalid::command("sequence_number is out of range"));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let fields = InsuranceFields {
                insurance_package_id: self.insurance_package_id.clone(),
                sequence_number: self.sequence_number.and_then(|s| u8::try_from(s).ok()),
                insurance_id_number: self.insurance_id_number.clone(),
                policyholder_firstname: self.policyholder_first_name.clone(),
                policyholder_lastname: self.policyholder_last_name.clone(),
                policyholder_dob: date(self.policyholder_dob),
                policyholder_sex: self.policyholder_sex.clone(),
                relationship_to_insured_id: self.relationship_to_insured_id.clone(),
                extra: Vec::new(),
            };
            cx.practice
                .update_insurance(&self.patient_id, &self.insurance_id, &fields)
                .await?;
            Ok(touched(self))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let list = p.insurances(&self.patient_id).await?;
            let wanted = wanted(self);
            let applied = list
                .iter()
                .find(|i| i.insuranceid.as_deref() == Some(self.insurance_id.as_str()))
                .is_some_and(|i| {
                    wanted
                        .iter()
                        .all(|(k, v)| json_str(&i.raw, k).as_deref() == Some(v.as_str()))
                });
            Ok(if applied {
                ReadBack::Applied(touched(self))
            } else {
                ReadBack::NotApplied
            })
        })
    }
}

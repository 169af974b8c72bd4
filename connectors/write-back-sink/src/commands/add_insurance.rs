//! `AddInsurance`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::AddInsurance` (data only).

use athena_client::PracticeClient;
use athena_client::api::insurances::InsuranceFields;
use athena_contracts::commands::AddInsurance;

use super::{
    AthenaCtx, Idempotency, Matching, Performed, Reading, WriteBack, date, envelope, ids, json_str,
    max_id, reconcile_by_count,
};

envelope!(AddInsurance);

impl WriteBack for AddInsurance {
    /// Read back: the patient's insurances with this package (and sequence), counted against a
    /// baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let v = cx
                .practice
                .create_insurance(&self.patient_id, &fields(self))
                .await?;
            let first = match &v {
                serde_json::Value::Array(a) => a.first().cloned().unwrap_or_default(),
                other => other.clone(),
            };
            let id = json_str(&first, "insuranceid").unwrap_or_default();
            Ok(ids(&[
                ("insurance_id", &id),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "insurance_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let list = p.insurances(&self.patient_id).await?;
            let seq = self.sequence_number.to_string();
            let hits: Vec<String> = list
                .iter()
                .filter(|i| {
                    i.insurancepackageid.as_deref() == Some(self.insurance_package_id.as_str())
                })
                .filter(|i| i.sequencenumber.as_deref().is_none_or(|s| s == seq))
                .filter_map(|i| i.insuranceid.clone())
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        })
    }
}

fn fields(c: &AddInsurance) -> InsuranceFields {
    InsuranceFields {
        insurance_package_id: Some(c.insurance_package_id.clone()),
        sequence_number: u8::try_from(c.sequence_number).ok(),
        insurance_id_number: c.insurance_id_number.clone(),
        policyholder_firstname: c.policyholder_first_name.clone(),
        policyholder_lastname: c.policyholder_last_name.clone(),
        policyholder_dob: date(c.policyholder_dob),
        policyholder_sex: c.policyholder_sex.clone(),
        relationship_to_insured_id: c.relationship_to_insured_id.clone(),
        extra: Vec::new(),
    }
}

//! Rust mirror of `schemas/commands/AddInsurance.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::insurances::InsuranceFields;
use athena_contracts::{Date, TimestampMillis};
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{
    AthenaCtx, Idempotency, Matching, Performed, Reading, WriteBack, date, envelope, ids, json_str,
    max_id, reconcile_by_count,
};

/// `com.athenaconnect.commands.AddInsurance`: Add an insurance package to a patient (POST /v1/{practiceid}/patients/{patientid}/insurances).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddInsurance {
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
    /// athena insurancepackageid (0 = self-pay).
    pub insurance_package_id: String,
    /// 1 primary, 2 secondary.
    #[serde(default = "default_sequence_number")]
    pub sequence_number: i32,
    /// Member id. PHI; never logged.
    pub insurance_id_number: Option<String>,
    /// Policy holder first name. PHI; never logged.
    pub policyholder_first_name: Option<String>,
    /// Policy holder last name. PHI; never logged.
    pub policyholder_last_name: Option<String>,
    /// Policy holder date of birth. PHI; never logged.
    pub policyholder_dob: Option<Date>,
    /// Policy holder sex, M or F.
    pub policyholder_sex: Option<String>,
    /// athena relationshiptoinsuredid (1 = self).
    pub relationship_to_insured_id: Option<String>,
}

fn default_sequence_number() -> i32 {
    1
}

impl AvroRecord for AddInsurance {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.AddInsurance";
}

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
                .create_insurance(&self.patient_id, &self.fields())
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

impl AddInsurance {
    fn fields(&self) -> InsuranceFields {
        InsuranceFields {
            insurance_package_id: Some(self.insurance_package_id.clone()),
            sequence_number: u8::try_from(self.sequence_number).ok(),
            insurance_id_number: self.insurance_id_number.clone(),
            policyholder_firstname: self.policyholder_first_name.clone(),
            policyholder_lastname: self.policyholder_last_name.clone(),
            policyholder_dob: date(self.policyholder_dob),
            policyholder_sex: self.policyholder_sex.clone(),
            relationship_to_insured_id: self.relationship_to_insured_id.clone(),
            extra: Vec::new(),
        }
    }
}

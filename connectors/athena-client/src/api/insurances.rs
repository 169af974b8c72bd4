//! Patient insurance packages.
//!
//! * `GET /v1/{practiceid}/patients/{patientid}/insurances` — safe to retry.
//! * `POST /v1/{practiceid}/patients/{patientid}/insurances` — not retried on ambiguity (could add twice).
//! * `PUT /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}` — sets fields, but not
//!   retried on ambiguity: each call is a write athena records; the sink reads back first.
//! * `DELETE /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}` — not retried on
//!   ambiguity: a repeat of an applied delete is refused (404); the sink reads back first.

use http::Method;

use crate::client::{Form, PracticeClient, from_value};
use crate::error::Error;
use crate::model::{Insurance, Raw, de};

/// Fields of an insurance create/update. Values may be PHI: `Debug` is derived only over ids and keys.
#[derive(Clone, Default)]
pub struct InsuranceFields {
    /// Insurance package (required on create; 0 = self-pay).
    pub insurance_package_id: Option<String>,
    /// 1 primary, 2 secondary.
    pub sequence_number: Option<u8>,
    /// Member id.
    pub insurance_id_number: Option<String>,
    /// Policy holder first name.
    pub policyholder_firstname: Option<String>,
    /// Policy holder last name.
    pub policyholder_lastname: Option<String>,
    /// Policy holder date of birth.
    pub policyholder_dob: Option<chrono::NaiveDate>,
    /// Policy holder sex.
    pub policyholder_sex: Option<String>,
    /// Relationship to insured id (1 = self).
    pub relationship_to_insured_id: Option<String>,
    /// Other fields, verbatim.
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for InsuranceFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsuranceFields")
            .field("insurance_package_id", &self.insurance_package_id)
            .field("sequence_number", &self.sequence_number)
            .finish_non_exhaustive()
    }
}

impl InsuranceFields {
    fn form(&self) -> Form {
        Form::new()
            .opt("insurancepackageid", self.insurance_package_id.as_ref())
            .opt("sequencenumber", self.sequence_number)
            .opt("insuranceidnumber", self.insurance_id_number.as_ref())
            .opt(
                "insurancepolicyholderfirstname",
                self.policyholder_firstname.as_ref(),
            )
            .opt(
                "insurancepolicyholderlastname",
                self.policyholder_lastname.as_ref(),
            )
            .opt(
                "insurancepolicyholderdob",
                self.policyholder_dob.map(de::format_date),
            )
            .opt("insurancepolicyholdersex", self.policyholder_sex.as_ref())
            .opt(
                "relationshiptoinsuredid",
                self.relationship_to_insured_id.as_ref(),
            )
            .extend(&self.extra)
    }
}

impl PracticeClient {
    /// `GET /v1/{practiceid}/patients/{patientid}/insurances`. Safe to retry.
    pub async fn insurances(&self, patient_id: &str) -> Result<Vec<Raw<Insurance>>, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/insurances";
        let v: serde_json::Value = self
            .client
            .json(&self.get(route, &["patients", patient_id, "insurances"]))
            .await?;
        let list = v
            .get("insurances")
            .cloned()
            .unwrap_or(serde_json::Value::Array(vec![]));
        from_value(route, list, false)
    }

    /// `POST /v1/{practiceid}/patients/{patientid}/insurances`. Not retried on ambiguity. Returns athena's
    /// answer (`{"success":"true"}` or the created package) as raw JSON.
    pub async fn create_insurance(
        &self,
        patient_id: &str,
        fields: &InsuranceFields,
    ) -> Result<serde_json::Value, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/insurances";
        let call = self.write(
            Method::POST,
            route,
            &["patients", patient_id, "insurances"],
            fields.form().into_vec(),
            false,
        );
        self.client.json(&call).await
    }

    /// `PUT /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}`. Not retried on ambiguity (see the module doc).
    pub async fn update_insurance(
        &self,
        patient_id: &str,
        insurance_id: &str,
        fields: &InsuranceFields,
    ) -> Result<serde_json::Value, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}";
        let call = self.write(
            Method::PUT,
            route,
            &["patients", patient_id, "insurances", insurance_id],
            fields.form().into_vec(),
            false,
        );
        self.client.json(&call).await
    }

    /// `DELETE /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}`. Not retried on ambiguity (see the module doc).
    pub async fn delete_insurance(
        &self,
        patient_id: &str,
        insurance_id: &str,
    ) -> Result<(), Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}";
        let mut call = self.write(
            Method::DELETE,
            route,
            &["patients", patient_id, "insurances", insurance_id],
            Vec::new(),
            false,
        );
        call.form = None;
        self.client.send(&call).await.map(|_| ())
    }
}

//! Patients: create (athena's match-then-create), update, get, best match.
//!
//! * `POST /v1/{practiceid}/patients` — [`PracticeClient::create_patient`]
//! * `PUT /v1/{practiceid}/patients/{patientid}` — [`PracticeClient::update_patient`]
//! * `GET /v1/{practiceid}/patients/{patientid}` — [`PracticeClient::get_patient`]
//! * `GET /v1/{practiceid}/patients/bestmatch` — [`PracticeClient::best_match`]
//! * `GET /v1/{practiceid}/patients/enhancedbestmatch` — [`PracticeClient::enhanced_best_match`]

use chrono::NaiveDate;
use http::Method;
use serde::Deserialize;

use crate::client::{Form, PracticeClient, from_value};
use crate::error::Error;
use crate::model::{Patient, Raw, de};

/// Demographics for create/update/match. Only set fields are sent. `Debug` prints field *names* only.
#[derive(Clone, Default)]
pub struct PatientFields {
    /// First name (≤20 chars).
    pub firstname: Option<String>,
    /// Last name (≤30 chars).
    pub lastname: Option<String>,
    /// Date of birth.
    pub dob: Option<NaiveDate>,
    /// Primary department (required on create).
    pub departmentid: Option<String>,
    /// Sex (M/F).
    pub sex: Option<String>,
    /// Email (≤50 chars).
    pub email: Option<String>,
    /// Home phone (NANP-validated by athena).
    pub homephone: Option<String>,
    /// Mobile phone.
    pub mobilephone: Option<String>,
    /// ZIP (≤10 chars).
    pub zip: Option<String>,
    /// Address line 1.
    pub address1: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State.
    pub state: Option<String>,
    /// `a` active, `i` inactive, `p` prospective (update only).
    pub status: Option<String>,
    /// Any other athena field, sent verbatim.
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for PatientFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PHI: names of the fields that are set, never their values.
        let set: Vec<String> = self.form().0.into_iter().map(|(k, _)| k).collect();
        f.debug_struct("PatientFields")
            .field("set_fields", &set)
            .finish()
    }
}

impl PatientFields {
    fn form(&self) -> Form {
        Form::new()
            .opt("firstname", self.firstname.as_ref())
            .opt("lastname", self.lastname.as_ref())
            .opt("dob", self.dob.map(de::format_date))
            .opt("departmentid", self.departmentid.as_ref())
            .opt("sex", self.sex.as_ref())
            .opt("email", self.email.as_ref())
            .opt("homephone", self.homephone.as_ref())
            .opt("mobilephone", self.mobilephone.as_ref())
            .opt("zip", self.zip.as_ref())
            .opt("address1", self.address1.as_ref())
            .opt("city", self.city.as_ref())
            .opt("state", self.state.as_ref())
            .opt("status", self.status.as_ref())
            .extend(&self.extra)
    }
}

/// `[{"patientid":"5309"}]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PatientIdResult {
    /// The created, matched or updated patient id.
    #[serde(deserialize_with = "de::string_or_number")]
    pub patientid: String,
}

impl PracticeClient {
    /// `POST /v1/{practiceid}/patients` — athena first runs its own best-match and returns the EXISTING id on a
    /// match; it creates only otherwise (we never send `bypasspatientmatching`). Requires firstname, lastname,
    /// dob, departmentid and one contact field. Not retried on ambiguity by the client; because of the match
    /// step a caller may repeat it with identical demographics, ideally after `enhanced_best_match`.
    pub async fn create_patient(&self, fields: &PatientFields) -> Result<String, Error> {
        let route = "/v1/{practiceid}/patients";
        let call = self.write(
            Method::POST,
            route,
            &["patients"],
            fields.form().into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        let r: PatientIdResult = de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))?;
        Ok(r.patientid)
    }

    /// `PUT /v1/{practiceid}/patients/{patientid}` — set the given fields. Safe to retry (setting the same
    /// values twice leaves the same record).
    pub async fn update_patient(
        &self,
        patient_id: &str,
        fields: &PatientFields,
    ) -> Result<String, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}";
        let call = self.write(
            Method::PUT,
            route,
            &["patients", patient_id],
            fields.form().into_vec(),
            true,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        let r: PatientIdResult = de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))?;
        Ok(r.patientid)
    }

    /// `GET /v1/{practiceid}/patients/{patientid}` (athena answers with a one-element array). Safe to retry.
    pub async fn get_patient(&self, patient_id: &str) -> Result<Raw<Patient>, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}";
        let v: serde_json::Value = self
            .client
            .json(&self.get(route, &["patients", patient_id]))
            .await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, false))
    }

    /// `GET /v1/{practiceid}/patients/bestmatch` — candidate patients. Safe to retry.
    pub async fn best_match(&self, fields: &PatientFields) -> Result<Vec<Raw<Patient>>, Error> {
        self.match_call("/v1/{practiceid}/patients/bestmatch", "bestmatch", fields)
            .await
    }

    /// `GET /v1/{practiceid}/patients/enhancedbestmatch` — athena's recommended pre-check before create.
    /// Safe to retry.
    pub async fn enhanced_best_match(
        &self,
        fields: &PatientFields,
    ) -> Result<Vec<Raw<Patient>>, Error> {
        self.match_call(
            "/v1/{practiceid}/patients/enhancedbestmatch",
            "enhancedbestmatch",
            fields,
        )
        .await
    }

    async fn match_call(
        &self,
        route: &'static str,
        seg: &str,
        fields: &PatientFields,
    ) -> Result<Vec<Raw<Patient>>, Error> {
        let call = self
            .get(route, &["patients", seg])
            .query(fields.form().into_vec());
        let v: serde_json::Value = self.client.json(&call).await?;
        // Either a bare array or {"patients":[...]}.
        let list = match v {
            serde_json::Value::Object(mut o) => o
                .remove("patients")
                .unwrap_or(serde_json::Value::Array(vec![])),
            other => other,
        };
        let list = if list.is_null() {
            serde_json::Value::Array(vec![])
        } else {
            list
        };
        from_value(route, list, false)
    }
}

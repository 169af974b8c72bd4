//! Claims (charge entry): appointment-based and stand-alone creation, list, get.
//!
//! * `POST /v1/{practiceid}/appointments/{appointmentid}/claim` — [`PracticeClient::create_appointment_claim`]
//!   athena refuses a second claim for the same appointment, so a caller may repeat it after reading back;
//!   the client does not retry it on ambiguity.
//! * `POST /v1/{practiceid}/claims` — [`PracticeClient::create_claim`]: NO duplicate guard and claims cannot be
//!   deleted. Never retried; on ambiguity search `GET /claims` for the same patient/date/codes first.
//! * `GET /v1/{practiceid}/claims`, `GET /v1/{practiceid}/claims/{claimid}` — safe to retry.

use chrono::NaiveDate;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::api::list_all;
use crate::client::{Form, PracticeClient};
use crate::error::Error;
use crate::model::{Claim, Raw, de};

/// One `claimcharges` element (sent as JSON text inside the form).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClaimCharge {
    /// CPT/HCPCS code.
    pub procedurecode: String,
    /// Units (athena accepts a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// First diagnosis (required).
    pub icd10code1: String,
    /// Second diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icd10code2: Option<String>,
    /// Third diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icd10code3: Option<String>,
    /// Fourth diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icd10code4: Option<String>,
    /// Unit amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unitamount: Option<String>,
    /// Line note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linenote: Option<String>,
}

/// `POST /appointments/{id}/claim` body.
#[derive(Debug, Clone, Default)]
pub struct AppointmentClaim {
    /// Charges (one or more).
    pub charges: Vec<ClaimCharge>,
    /// Supervising provider.
    pub supervising_provider_id: Option<String>,
}

/// `POST /claims` body.
#[derive(Debug, Clone, Default)]
pub struct NewClaim {
    /// Patient.
    pub patient_id: String,
    /// Department.
    pub department_id: String,
    /// Supervising provider (required).
    pub supervising_provider_id: String,
    /// Rendering provider (defaults to supervising).
    pub rendering_provider_id: Option<String>,
    /// Date of service (today or past).
    pub service_date: Option<NaiveDate>,
    /// Primary patient insurance (default: the active one).
    pub primary_patient_insurance_id: Option<String>,
    /// Charges.
    pub charges: Vec<ClaimCharge>,
}

/// `{"success":true,"claimids":["…"]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClaimCreated {
    /// Created claim ids.
    #[serde(default, deserialize_with = "de::string_list_lenient")]
    pub claimids: Vec<String>,
}

/// `GET /claims` filters.
#[derive(Debug, Clone, Default)]
pub struct ClaimQuery {
    /// Patient.
    pub patient_id: Option<String>,
    /// Department.
    pub department_id: Option<String>,
    /// First service date.
    pub service_start_date: Option<NaiveDate>,
    /// Last service date.
    pub service_end_date: Option<NaiveDate>,
}

fn charges_json(charges: &[ClaimCharge]) -> Result<String, Error> {
    if charges.is_empty() {
        return Err(Error::Validation {
            message: "at least one claim charge is required".into(),
            missing_fields: vec!["claimcharges".into()],
            invalid_fields: vec![],
        });
    }
    serde_json::to_string(charges)
        .map_err(|_| Error::Internal("could not encode claimcharges".into()))
}

fn created(route: &str, v: serde_json::Value) -> Result<ClaimCreated, Error> {
    de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))
}

impl PracticeClient {
    /// `POST /v1/{practiceid}/appointments/{appointmentid}/claim` — claim for a checked-in appointment.
    /// Not retried on ambiguity (athena's one-claim-per-appointment rule makes a read-back-then-repeat safe).
    pub async fn create_appointment_claim(
        &self,
        appointment_id: &str,
        req: &AppointmentClaim,
    ) -> Result<ClaimCreated, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/claim";
        let f = Form::new()
            .put("claimcharges", charges_json(&req.charges)?)
            .opt(
                "supervisingproviderid",
                req.supervising_provider_id.as_ref(),
            );
        let call = self.write(
            Method::POST,
            route,
            &["appointments", appointment_id, "claim"],
            f.into_vec(),
            false,
        );
        created(route, self.client.json(&call).await?)
    }

    /// `POST /v1/{practiceid}/claims` — stand-alone claim. Never retried (no duplicate guard, no delete).
    pub async fn create_claim(&self, req: &NewClaim) -> Result<ClaimCreated, Error> {
        let route = "/v1/{practiceid}/claims";
        let f = Form::new()
            .put("patientid", &req.patient_id)
            .put("departmentid", &req.department_id)
            .put("supervisingproviderid", &req.supervising_provider_id)
            .opt("renderingproviderid", req.rendering_provider_id.as_ref())
            .opt("servicedate", req.service_date.map(de::format_date))
            .opt(
                "primarypatientinsuranceid",
                req.primary_patient_insurance_id.as_ref(),
            )
            .put("claimcharges", charges_json(&req.charges)?);
        let call = self.write(Method::POST, route, &["claims"], f.into_vec(), false);
        created(route, self.client.json(&call).await?)
    }

    /// `GET /v1/{practiceid}/claims` — all pages up to `max_items`. Safe to retry.
    pub async fn list_claims(
        &self,
        q: &ClaimQuery,
        max_items: usize,
    ) -> Result<Vec<Raw<Claim>>, Error> {
        let f = Form::new()
            .opt("patientid", q.patient_id.as_ref())
            .opt("departmentid", q.department_id.as_ref())
            .opt(
                "servicestartdate",
                q.service_start_date.map(de::format_date),
            )
            .opt("serviceenddate", q.service_end_date.map(de::format_date));
        list_all(
            self,
            "/v1/{practiceid}/claims",
            &["claims"],
            f.into_vec(),
            "claims",
            1000,
            max_items,
        )
        .await
    }

    /// `GET /v1/{practiceid}/claims/{claimid}`. Safe to retry.
    pub async fn get_claim(&self, claim_id: &str) -> Result<Raw<Claim>, Error> {
        let route = "/v1/{practiceid}/claims/{claimid}";
        let v: serde_json::Value = self
            .client
            .json(&self.get(route, &["claims", claim_id]))
            .await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimcharges_is_json_text() {
        let s = charges_json(&[ClaimCharge {
            procedurecode: "99213".into(),
            units: Some("1".into()),
            icd10code1: "Z0000".into(),
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(
            s,
            r#"[{"procedurecode":"99213","units":"1","icd10code1":"Z0000"}]"#
        );
        assert!(charges_json(&[]).is_err());
    }
}

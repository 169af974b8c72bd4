//! Single-record reads that push notifications name only by athena identifier (reference §7.4
//! "fetch with"). All are GETs, safe to retry.
//!
//! * `GET /v1/{practiceid}/patients/{patientid}/documents/{kind}/{id}` —
//!   [`PracticeClient::get_patient_document`] (`labresult`, `imagingresult`, `order`,
//!   `patientcase`).
//! * `GET /v1/{practiceid}/referringproviders/{id}` — [`PracticeClient::get_referring_provider`].
//! * `GET /v1/{practiceid}/providers/{id}` — [`PracticeClient::get_provider`].

use serde_json::Value;

use crate::client::PracticeClient;
use crate::error::Error;

/// A patient document kind readable by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// `labresult`.
    LabResult,
    /// `imagingresult`.
    ImagingResult,
    /// `order`.
    Order,
    /// `patientcase`.
    PatientCase,
}

impl DocumentKind {
    fn segment(self) -> &'static str {
        match self {
            DocumentKind::LabResult => "labresult",
            DocumentKind::ImagingResult => "imagingresult",
            DocumentKind::Order => "order",
            DocumentKind::PatientCase => "patientcase",
        }
    }
    fn route(self) -> &'static str {
        match self {
            DocumentKind::LabResult => {
                "/v1/{practiceid}/patients/{patientid}/documents/labresult/{id}"
            }
            DocumentKind::ImagingResult => {
                "/v1/{practiceid}/patients/{patientid}/documents/imagingresult/{id}"
            }
            DocumentKind::Order => "/v1/{practiceid}/patients/{patientid}/documents/order/{id}",
            DocumentKind::PatientCase => {
                "/v1/{practiceid}/patients/{patientid}/documents/patientcase/{id}"
            }
        }
    }
}

/// The first element of a one-element array answer (athena wraps single records so), else the
/// answer itself.
fn first(v: Value) -> Value {
    match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    }
}

impl PracticeClient {
    /// `GET /v1/{practiceid}/patients/{patientid}/documents/{kind}/{id}`. Safe to retry.
    pub async fn get_patient_document(
        &self,
        patient_id: &str,
        kind: DocumentKind,
        id: &str,
    ) -> Result<Value, Error> {
        let call = self.get(
            kind.route(),
            &["patients", patient_id, "documents", kind.segment(), id],
        );
        Ok(first(self.client.json(&call).await?))
    }

    /// `GET /v1/{practiceid}/referringproviders/{id}`. Safe to retry.
    pub async fn get_referring_provider(&self, id: &str) -> Result<Value, Error> {
        let call = self.get(
            "/v1/{practiceid}/referringproviders/{id}",
            &["referringproviders", id],
        );
        Ok(first(self.client.json(&call).await?))
    }

    /// `GET /v1/{practiceid}/providers/{id}`. Safe to retry.
    pub async fn get_provider(&self, id: &str) -> Result<Value, Error> {
        let call = self.get("/v1/{practiceid}/providers/{id}", &["providers", id]);
        Ok(first(self.client.json(&call).await?))
    }
}

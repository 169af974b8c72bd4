//! Clinical document upload.
//!
//! * `POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument` —
//!   [`PracticeClient::upload_clinical_document`]. The attachment is sent as base64 text in a urlencoded form
//!   (accepted by athena in practice, as the Go client does). No duplicate guard: never retried on ambiguity;
//!   look up by patient + subclass + `originalfilename` before repeating.

use chrono::NaiveDate;
use http::Method;
use serde::Deserialize;

use base64::Engine as _;

use crate::client::{Form, PracticeClient};
use crate::error::Error;
use crate::model::de;

/// A clinical document to file to a patient's chart.
#[derive(Clone, Default)]
pub struct ClinicalDocument {
    /// Department (required).
    pub department_id: String,
    /// e.g. `CLINICALDOCUMENT_CONSULTNOTE` or plain `CLINICALDOCUMENT` (required).
    pub document_subclass: String,
    /// File bytes (PDF recommended); sent base64-encoded.
    pub attachment: Option<Vec<u8>>,
    /// Attachment type, e.g. `PDF`.
    pub attachment_type: Option<String>,
    /// Original file name without extension (≤200 chars).
    pub original_filename: Option<String>,
    /// Text content instead of (or besides) the attachment.
    pub document_data: Option<String>,
    /// Document type id (from `GET /documenttypes`).
    pub document_type_id: Option<String>,
    /// File straight to the chart, skipping the clinical inbox.
    pub autoclose: bool,
    /// Observation date.
    pub observation_date: Option<NaiveDate>,
    /// Provider.
    pub provider_id: Option<String>,
    /// Internal note.
    pub internal_note: Option<String>,
}

impl std::fmt::Debug for ClinicalDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Content is PHI: show only its size.
        f.debug_struct("ClinicalDocument")
            .field("department_id", &self.department_id)
            .field("document_subclass", &self.document_subclass)
            .field("attachment_bytes", &self.attachment.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// `{"success":true,"clinicaldocumentid":101}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClinicalDocumentCreated {
    /// The new document id.
    #[serde(deserialize_with = "de::string_or_number")]
    pub clinicaldocumentid: String,
}

impl PracticeClient {
    /// `POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument`. Not retried on ambiguity.
    pub async fn upload_clinical_document(
        &self,
        patient_id: &str,
        doc: &ClinicalDocument,
    ) -> Result<ClinicalDocumentCreated, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/documents/clinicaldocument";
        let mut f = Form::new()
            .put("departmentid", &doc.department_id)
            .put("documentsubclass", &doc.document_subclass)
            .opt(
                "attachmentcontents",
                doc.attachment
                    .as_ref()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            )
            .opt("attachmenttype", doc.attachment_type.as_ref())
            .opt("originalfilename", doc.original_filename.as_ref())
            .opt("documentdata", doc.document_data.as_ref())
            .opt("documenttypeid", doc.document_type_id.as_ref())
            .opt("observationdate", doc.observation_date.map(de::format_date))
            .opt("providerid", doc.provider_id.as_ref())
            .opt("internalnote", doc.internal_note.as_ref());
        if doc.autoclose {
            f = f.put("autoclose", "true");
        }
        let call = self.write(
            Method::POST,
            route,
            &["patients", patient_id, "documents", "clinicaldocument"],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))
    }
    /// `GET /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument` — the patient's clinical
    /// documents as raw JSON objects (ids, subclass, `originalfilename`; never the content). Safe to retry.
    /// Used to reconcile an upload whose answer was lost.
    pub async fn clinical_documents(
        &self,
        patient_id: &str,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/documents/clinicaldocument";
        let v: serde_json::Value = self
            .client
            .json(&self.get(
                route,
                &["patients", patient_id, "documents", "clinicaldocument"],
            ))
            .await?;
        Ok(match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("clinicaldocuments") {
                Some(serde_json::Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }
}

//! Rust mirror of `schemas/commands/UploadClinicalDocument.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::documents::ClinicalDocument;
use athena_contracts::{Date, TimestampMillis};
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use super::{
    AthenaCtx, Idempotency, Matching, Performed, Reading, WriteBack, date, envelope, ids, json_str,
    max_id, reconcile_by_count,
};

/// `com.athenaconnect.commands.UploadClinicalDocument`: File a clinical document (PDF) to a patient's chart (POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadClinicalDocument {
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
    /// athena departmentid.
    pub department_id: String,
    /// athena documentsubclass, e.g. CLINICALDOCUMENT_CONSULTNOTE.
    #[serde(default = "default_document_subclass")]
    pub document_subclass: String,
    /// The file (PDF). PHI; never logged.
    #[serde(with = "apache_avro::serde::bytes")]
    pub attachment: Vec<u8>,
    /// athena attachmenttype.
    #[serde(default = "default_attachment_type")]
    pub attachment_type: String,
    /// Original file name without extension (up to 200 characters). Used to reconcile an uncertain upload; when absent the sink sends the command_id.
    pub original_filename: Option<String>,
    /// athena documenttypeid.
    pub document_type_id: Option<String>,
    /// File straight to the chart, skipping the clinical inbox.
    #[serde(default)]
    pub autoclose: bool,
    /// Observation date.
    pub observation_date: Option<Date>,
    /// athena providerid.
    pub provider_id: Option<String>,
    /// Internal note. May contain PHI; never logged.
    pub internal_note: Option<String>,
}

fn default_document_subclass() -> String {
    "CLINICALDOCUMENT".to_string()
}

fn default_attachment_type() -> String {
    "PDF".to_string()
}

impl AvroRecord for UploadClinicalDocument {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UploadClinicalDocument";
}

envelope!(UploadClinicalDocument);

impl WriteBack for UploadClinicalDocument {
    /// Read back: the patient's documents with this file name and subclass, counted against a
    /// baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let doc = ClinicalDocument {
                department_id: self.department_id.clone(),
                document_subclass: self.document_subclass.clone(),
                attachment: Some(self.attachment.clone()),
                attachment_type: Some(self.attachment_type.clone()),
                original_filename: Some(self.filename()),
                document_data: None,
                document_type_id: self.document_type_id.clone(),
                autoclose: self.autoclose,
                observation_date: date(self.observation_date),
                provider_id: self.provider_id.clone(),
                internal_note: self.internal_note.clone(),
            };
            let r = cx
                .practice
                .upload_clinical_document(&self.patient_id, &doc)
                .await?;
            Ok(ids(&[
                ("clinical_document_id", &r.clinicaldocumentid),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(
            self,
            p,
            baseline,
            "clinical_document_id",
        ))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let name = self.filename();
            let docs = p.clinical_documents(&self.patient_id).await?;
            let hits: Vec<String> = docs
                .iter()
                .filter(|d| json_str(d, "originalfilename").as_deref() == Some(name.as_str()))
                .filter(|d| {
                    json_str(d, "documentsubclass").as_deref()
                        == Some(self.document_subclass.as_str())
                })
                .filter_map(|d| json_str(d, "clinicaldocumentid"))
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        })
    }
}

impl UploadClinicalDocument {
    /// The file name sent to athena and looked for on read-back (the command id when none).
    fn filename(&self) -> String {
        self.original_filename
            .clone()
            .unwrap_or_else(|| self.command_id.clone())
    }
}

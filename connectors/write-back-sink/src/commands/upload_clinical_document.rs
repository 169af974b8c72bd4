//! `UploadClinicalDocument`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::UploadClinicalDocument` (data only).

use athena_client::PracticeClient;
use athena_client::api::documents::ClinicalDocument;
use athena_contracts::commands::UploadClinicalDocument;

use super::{
    AthenaCtx, Idempotency, Matching, Performed, Reading, WriteBack, date, envelope, ids, json_str,
    max_id, reconcile_by_count,
};

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
                original_filename: Some(filename(self)),
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
            let name = filename(self);
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

/// The file name sent to athena and looked for on read-back (the command id when none).
fn filename(c: &UploadClinicalDocument) -> String {
    c.original_filename
        .clone()
        .unwrap_or_else(|| c.command_id.clone())
}

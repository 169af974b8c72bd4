//! `UploadClinicalDocument`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::UploadClinicalDocument` (data only).

use athena_client::PracticeClient;
use athena_client::api::documents::ClinicalDocument;
use athena_contracts::commands::UploadClinicalDocument;

use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, date, envelope, ids,
    json_str, max_id, reconcile_by_count,
};

envelope!(UploadClinicalDocument);

impl WriteBack for UploadClinicalDocument {
    /// Read back: the patient's documents with this file name and subclass, counted against a
    /// baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    /// The content must be what `attachment_type` says (see [`content_matches`]): athena
    /// files whatever it is given, and a mislabelled file is unreadable in the chart.
    fn precheck(&self, _card_payments_enabled: bool) -> Result<(), Invalid> {
        content_matches(&self.attachment_type, &self.attachment)
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

/// The HL7 v3 namespace a C-CDA `ClinicalDocument` root must be in.
const HL7_V3: &str = "urn:hl7-org:v3";

/// Checks the attachment against its declared type: `PDF` must start with the `%PDF-` magic;
/// `XML` (C-CDA) must be XML whose root element is `ClinicalDocument` in the HL7 v3 namespace
/// (no DOCTYPE: a C-CDA has none, and entity declarations are a known attack on XML readers).
/// Any other type is refused: athena's chart renders PDF and C-CDA, and nothing else is
/// checked here. The messages name no content (PHI).
pub(crate) fn content_matches(attachment_type: &str, bytes: &[u8]) -> Result<(), Invalid> {
    match attachment_type.to_ascii_uppercase().as_str() {
        "PDF" => {
            if bytes.starts_with(b"%PDF-") {
                Ok(())
            } else {
                Err(Invalid::command(
                    "attachment_type is PDF but the attachment does not start with %PDF-",
                ))
            }
        }
        "XML" => ccda_root(bytes),
        _ => Err(Invalid::command(
            "attachment_type must be PDF or XML (C-CDA)",
        )),
    }
}

/// The root element of `bytes` is `ClinicalDocument` in the HL7 v3 namespace (default or
/// prefixed). A hand-written scan of the prolog and the root start tag, not an XML parser:
/// enough to tell a C-CDA from something else, and it reads no further than the root tag.
fn ccda_root(bytes: &[u8]) -> Result<(), Invalid> {
    let not_ccda = |why: &'static str| Err(Invalid::command(why));
    let Ok(text) = std::str::from_utf8(bytes) else {
        return not_ccda("attachment_type is XML but the attachment is not UTF-8 text");
    };
    let mut rest = text.trim_start_matches('\u{feff}');
    // Prolog: the XML declaration, processing instructions, comments and white space.
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<?") {
            let Some(end) = r.find("?>") else {
                return not_ccda(
                    "attachment_type is XML but the attachment is not well-formed XML",
                );
            };
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let Some(end) = r.find("-->") else {
                return not_ccda(
                    "attachment_type is XML but the attachment is not well-formed XML",
                );
            };
            rest = &r[end + 3..];
        } else if rest.starts_with("<!") {
            return not_ccda(
                "attachment_type is XML but the attachment has a DOCTYPE, which a C-CDA has not",
            );
        } else {
            break;
        }
    }
    let Some(r) = rest.strip_prefix('<') else {
        return not_ccda("attachment_type is XML but the attachment is not XML");
    };
    let Some(end) = r.find('>') else {
        return not_ccda("attachment_type is XML but the attachment is not well-formed XML");
    };
    let tag = r[..end].trim_end_matches('/');
    let name_end = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
    let (name, attrs) = tag.split_at(name_end);
    let (prefix, local) = match name.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, name),
    };
    if local != "ClinicalDocument" {
        return not_ccda("attachment_type is XML but the root element is not ClinicalDocument");
    }
    let ns_attr = match prefix {
        Some(p) => format!("xmlns:{p}"),
        None => "xmlns".to_string(),
    };
    if xml_attr(attrs, &ns_attr) == Some(HL7_V3) {
        Ok(())
    } else {
        not_ccda(
            "attachment_type is XML but ClinicalDocument is not in the HL7 v3 namespace (urn:hl7-org:v3)",
        )
    }
}

/// The value of attribute `name` in a start tag's attribute text (`a="1" b='2'`).
fn xml_attr<'t>(mut attrs: &'t str, name: &str) -> Option<&'t str> {
    loop {
        attrs = attrs.trim_start();
        let eq = attrs.find('=')?;
        let key = attrs[..eq].trim();
        let after = attrs[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let body = &after[1..];
        let close = body.find(quote)?;
        if key == name {
            return Some(&body[..close]);
        }
        attrs = &body[close + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CCDA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<!-- synthetic -->
<ClinicalDocument xmlns:sdtc="urn:hl7-org:sdtc" xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>"#;

    #[test]
    fn a_pdf_and_a_ccda_pass_and_mismatches_are_refused() {
        assert!(content_matches("PDF", b"%PDF-1.7\n...").is_ok());
        assert!(content_matches("XML", CCDA.as_bytes()).is_ok());
        assert!(
            content_matches(
                "xml",
                b"\xef\xbb\xbf<cda:ClinicalDocument xmlns:cda='urn:hl7-org:v3'/>"
            )
            .is_ok()
        );
        for (ty, bytes) in [
            ("PDF", CCDA.as_bytes()),
            ("XML", b"%PDF-1.7".as_slice()),
            ("XML", b"<ClinicalDocument/>".as_slice()),
            ("XML", b"<ClinicalDocument xmlns=\"urn:other\"/>".as_slice()),
            ("XML", b"<Bundle xmlns=\"urn:hl7-org:v3\"/>".as_slice()),
            ("XML", b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>".as_slice()),
            ("XML", b"<cda:ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>".as_slice()),
            ("XML", b"\xff\xfe<".as_slice()),
            ("XML", b"<?xml version='1.0'".as_slice()),
            ("JPG", b"\xff\xd8\xff".as_slice()),
        ] {
            let e = content_matches(ty, bytes).unwrap_err();
            assert_eq!(e.code, "INVALID_COMMAND", "{ty}");
        }
    }
}

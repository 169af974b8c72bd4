//! Clinical documents (§5.5) and insurances (§5.6) of a patient.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use crate::model::{ClinicalDocument, Insurance, Practice};
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, eastern_stamp, ok};

fn patient_exists(p: &Practice, id: u64) -> ApiResult<()> {
    if p.patients.contains_key(&id) {
        Ok(())
    } else {
        Err(ApiError::not_found("The patient does not exist."))
    }
}

/// Domain op of `POST /patients/{pid}/documents/clinicaldocument` → `{"success":true,"clinicaldocumentid":N}`.
pub fn upload_clinical(
    p: &mut Practice,
    params: &Params,
    patient: u64,
) -> ApiResult<(Value, String)> {
    patient_exists(p, patient)?;
    let miss: Vec<String> = ["departmentid", "documentsubclass"]
        .iter()
        .filter(|k| params.get(k).is_none())
        .map(|k| k.to_string())
        .collect();
    if !miss.is_empty() {
        return Err(ApiError::missing(miss));
    }
    if params.get("attachmentcontents").is_none() && params.get("documentdata").is_none() {
        return Err(ApiError::missing(vec![
            "attachmentcontents".into(),
            "documentdata".into(),
        ]));
    }
    let bytes = match params.get("attachmentcontents") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| {
                ApiError::invalid(
                    "attachmentcontents",
                    "attachmentcontents is not valid base64.",
                )
            })?
            .len(),
        None => 0,
    };
    if !params
        .get("documentsubclass")
        .unwrap_or("")
        .starts_with("CLINICALDOCUMENT")
    {
        return Err(ApiError::invalid(
            "documentsubclass",
            "Invalid documentsubclass.",
        ));
    }
    let fields: BTreeMap<String, String> = params
        .to_map()
        .into_iter()
        .filter(|(k, _)| k != "attachmentcontents" && k != "documentdata")
        .collect();
    let id = p.next_document_id();
    p.documents.insert(
        id,
        ClinicalDocument {
            id,
            patient_id: patient,
            fields,
            attachment_bytes: bytes,
            created: Utc::now(),
        },
    );
    // athena answers this id as a number.
    Ok((
        json!({"success": true, "clinicaldocumentid": id}),
        id.to_string(),
    ))
}

/// `POST /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument` (urlencoded form;
/// multipart is not implemented).
pub async fn post_clinical(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "UploadClinicalDocument", &params, |p, q| {
        upload_clinical(p, q, pat)
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/patients/{patientid}/documents/clinicaldocument`.
pub async fn list_clinical(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
) -> Response {
    s.read(pid, |p| {
        patient_exists(p, pat)?;
        let items: Vec<Value> = p
            .documents
            .values()
            .filter(|d| d.patient_id == pat)
            .map(|d| {
                let mut v = json!({
                    "clinicaldocumentid": d.id.to_string(),
                    "patientid": pat.to_string(),
                    "attachmentsize": d.attachment_bytes,
                    "createddatetime": eastern_stamp(d.created),
                    "status": if d.fields.get("autoclose").is_some_and(|v| v == "true") { "CLOSED" } else { "REVIEW" },
                });
                for k in ["departmentid", "documentsubclass", "originalfilename", "documenttypeid", "observationdate", "providerid", "internalnote"] {
                    if let Some(x) = d.fields.get(k) {
                        v[k] = json!(x);
                    }
                }
                v
            })
            .collect();
        Ok(json!({"totalcount": items.len(), "clinicaldocuments": items}))
    })
    .map(ok)
    .into_response()
}

/// What a non-self-pay package needs besides its package id.
const POLICY_HOLDER_FIELDS: [&str; 5] = [
    "insuranceidnumber",
    "insurancepolicyholderfirstname",
    "insurancepolicyholderlastname",
    "insurancepolicyholderdob",
    "insurancepolicyholdersex",
];

fn insurance_json(i: &Insurance) -> Value {
    let mut v = json!({"insuranceid": i.id.to_string(), "patientid": i.patient_id.to_string()});
    for (k, x) in &i.fields {
        v[k] = json!(x);
    }
    v
}

/// Domain op of `POST /patients/{pid}/insurances`. A secondary needs a non-self-pay primary.
pub fn add_insurance(
    p: &mut Practice,
    params: &Params,
    patient: u64,
) -> ApiResult<(Value, String)> {
    patient_exists(p, patient)?;
    let package = params
        .get("insurancepackageid")
        .ok_or_else(|| ApiError::missing(vec!["insurancepackageid".into()]))?;
    let seq = params.get("sequencenumber").unwrap_or("1");
    if !matches!(seq, "1" | "2") {
        return Err(ApiError::invalid(
            "sequencenumber",
            "sequencenumber must be 1 or 2.",
        ));
    }
    if package != "0" {
        let miss: Vec<String> = POLICY_HOLDER_FIELDS
            .iter()
            .filter(|k| params.get(k).is_none())
            .map(|k| k.to_string())
            .collect();
        if !miss.is_empty() {
            return Err(ApiError::missing(miss));
        }
    }
    if seq == "2" {
        let has_primary = p.insurances.values().any(|i| {
            i.patient_id == patient
                && i.fields.get("sequencenumber").map(String::as_str) == Some("1")
                && i.fields.get("insurancepackageid").map(String::as_str) != Some("0")
        });
        if !has_primary {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "A secondary insurance cannot be added without a primary insurance.",
            ));
        }
    }
    let mut fields = params.to_map();
    fields.insert("sequencenumber".into(), seq.into());
    let id = p.next_insurance_id();
    let ins = Insurance {
        id,
        patient_id: patient,
        fields,
    };
    let v = insurance_json(&ins);
    p.insurances.insert(id, ins);
    // Guess (as for updates): a new package shows as a patient update.
    p.patient_changed(patient, "UpdatePatient");
    Ok((json!([v]), id.to_string()))
}

/// `POST /v1/{practiceid}/patients/{patientid}/insurances` → `[{insurance}]`.
// Guess: athena variously answers `{"success":"true"}` or the package; we return the package.
pub async fn post_insurance(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "AddInsurance", &params, |p, q| {
        add_insurance(p, q, pat)
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/patients/{patientid}/insurances`.
pub async fn list_insurances(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
) -> Response {
    s.read(pid, |p| {
        patient_exists(p, pat)?;
        let items: Vec<Value> = p
            .insurances
            .values()
            .filter(|i| i.patient_id == pat)
            .map(insurance_json)
            .collect();
        Ok(json!({"totalcount": items.len(), "insurances": items}))
    })
    .map(ok)
    .into_response()
}

// Changing and removing an insurance package (issue 14).

/// The patient's insurance `id`, 404 when it is not the patient's.
fn insurance_of(p: &mut Practice, patient: u64, id: u64) -> ApiResult<&mut Insurance> {
    patient_exists(p, patient)?;
    p.insurances
        .get_mut(&id)
        .filter(|i| i.patient_id == patient)
        .ok_or_else(|| ApiError::not_found("The insurance does not exist for this patient."))
}

/// Domain op of `PUT /patients/{pid}/insurances/{insuranceid}`: sets the fields sent (a
/// non-self-pay package still needs its policy holder fields afterwards).
pub fn update_insurance(
    p: &mut Practice,
    params: &Params,
    patient: u64,
    id: u64,
) -> ApiResult<(Value, String)> {
    if let Some(seq) = params.get("sequencenumber")
        && !matches!(seq, "1" | "2")
    {
        return Err(ApiError::invalid(
            "sequencenumber",
            "sequencenumber must be 1 or 2.",
        ));
    }
    let ins = insurance_of(p, patient, id)?;
    let mut merged = ins.fields.clone();
    merged.extend(params.to_map().into_iter().filter(|(_, v)| !v.is_empty()));
    if merged.get("insurancepackageid").map(String::as_str) != Some("0") {
        let miss: Vec<String> = POLICY_HOLDER_FIELDS
            .iter()
            .filter(|k| merged.get(**k).is_none_or(String::is_empty))
            .map(|k| k.to_string())
            .collect();
        if !miss.is_empty() {
            return Err(ApiError::missing(miss));
        }
    }
    ins.fields = merged;
    let v = insurance_json(ins);
    // Guess: athena has no insurance feed; an insurance change shows as a patient update.
    p.patient_changed(patient, "UpdatePatient");
    Ok((json!([v]), id.to_string()))
}

/// Domain op of `DELETE /patients/{pid}/insurances/{insuranceid}`. A primary cannot go while
/// a secondary depends on it (the mirror of the add rule).
pub fn remove_insurance(p: &mut Practice, patient: u64, id: u64) -> ApiResult<(Value, String)> {
    let seq = insurance_of(p, patient, id)?
        .fields
        .get("sequencenumber")
        .cloned();
    if seq.as_deref() == Some("1") {
        let has_secondary = p.insurances.values().any(|i| {
            i.patient_id == patient
                && i.fields.get("sequencenumber").map(String::as_str) == Some("2")
        });
        if has_secondary {
            // Guess: athena's wording.
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "The primary insurance cannot be removed while a secondary insurance exists.",
            ));
        }
    }
    p.insurances.remove(&id);
    p.patient_changed(patient, "UpdatePatient");
    Ok((json!({"success": "true"}), id.to_string()))
}

/// `PUT /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}`.
pub async fn put_insurance(
    State(s): State<SimState>,
    Path((pid, pat, id)): Path<(u64, u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "UpdateInsurance", &params, |p, q| {
        update_insurance(p, q, pat, id)
    })
    .map(ok)
    .into_response()
}

/// `DELETE /v1/{practiceid}/patients/{patientid}/insurances/{insuranceid}`.
pub async fn delete_insurance(
    State(s): State<SimState>,
    Path((pid, pat, id)): Path<(u64, u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "RemoveInsurance", &params, |p, _| {
        remove_insurance(p, pat, id)
    })
    .map(ok)
    .into_response()
}

//! `CreateClaim`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::CreateClaim` (data only).

use athena_client::PracticeClient;
use athena_client::api::claims::{
    AppointmentClaim, ClaimCharge as AthenaCharge, ClaimQuery, NewClaim,
};
use athena_contracts::commands::CreateClaim;

use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, ReadBack, Reading, WriteBack, date,
    envelope, ids, json_str, max_id, reconcile_by_count,
};

envelope!(CreateClaim);

impl WriteBack for CreateClaim {
    /// Appointment claims read the appointment's `claimid`; stand-alone claims compare the
    /// count of the patient's claims with the same service date and procedure codes against a
    /// baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry {
            baseline: self.appointment_id.is_none(),
        }
    }

    fn precheck(&self, _card_payments_enabled: bool) -> Result<(), Invalid> {
        if self.charges.is_empty() {
            return Err(Invalid::command("charges: at least one is required"));
        }
        if self.appointment_id.is_none()
            && (self.patient_id.is_none()
                || self.department_id.is_none()
                || self.supervising_provider_id.is_none()
                || self.service_date.is_none())
        {
            return Err(Invalid::command(
                "a stand-alone claim needs patient_id, department_id, supervising_provider_id and service_date",
            ));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let charges = athena_charges(self);
            let created = match &self.appointment_id {
                Some(a) => {
                    cx.practice
                        .create_appointment_claim(
                            a,
                            &AppointmentClaim {
                                charges,
                                supervising_provider_id: self.supervising_provider_id.clone(),
                            },
                        )
                        .await?
                }
                None => {
                    cx.practice
                        .create_claim(&NewClaim {
                            patient_id: self.patient_id.clone().unwrap_or_default(),
                            department_id: self.department_id.clone().unwrap_or_default(),
                            supervising_provider_id: self
                                .supervising_provider_id
                                .clone()
                                .unwrap_or_default(),
                            rendering_provider_id: self.rendering_provider_id.clone(),
                            service_date: date(self.service_date),
                            primary_patient_insurance_id: self.primary_patient_insurance_id.clone(),
                            charges,
                        })
                        .await?
                }
            };
            let claim = created.claimids.first().cloned().unwrap_or_default();
            Ok(ids(&[
                ("claim_id", &claim),
                (
                    "appointment_id",
                    self.appointment_id.as_deref().unwrap_or(""),
                ),
                ("patient_id", self.patient_id.as_deref().unwrap_or("")),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let Some(id) = self.appointment_id.as_deref() else {
                return reconcile_by_count(self, p, baseline, "claim_id").await;
            };
            let a = p.get_appointment(id).await?;
            Ok(match json_str(&a.raw, "claimid") {
                Some(claim) => ReadBack::Applied(ids(&[
                    ("claim_id", &claim),
                    ("appointment_id", id),
                    ("patient_id", a.patientid.as_deref().unwrap_or("")),
                ])),
                None => ReadBack::NotApplied,
            })
        })
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            if self.appointment_id.is_some() {
                return Ok((0, None));
            }
            let d = date(self.service_date);
            let claims = p
                .list_claims(
                    &ClaimQuery {
                        patient_id: self.patient_id.clone(),
                        department_id: self.department_id.clone(),
                        service_start_date: d,
                        service_end_date: d,
                    },
                    10_000,
                )
                .await?;
            let mut want: Vec<&str> = self
                .charges
                .iter()
                .map(|x| x.procedure_code.as_str())
                .collect();
            want.sort_unstable();
            let hits: Vec<String> = claims
                .iter()
                .filter(|cl| cl.appointmentid.is_none())
                .filter(|cl| {
                    let mut got: Vec<String> = cl
                        .raw
                        .get("billedservices")
                        .and_then(|b| b.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| json_str(s, "procedurecode"))
                                .collect()
                        })
                        .unwrap_or_default();
                    got.sort_unstable();
                    got == want
                })
                .map(|cl| cl.claimid.clone())
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        })
    }
}

fn athena_charges(c: &CreateClaim) -> Vec<AthenaCharge> {
    c.charges
        .iter()
        .map(|c| {
            let code = |i: usize| c.icd10_codes.get(i).cloned();
            AthenaCharge {
                procedurecode: c.procedure_code.clone(),
                units: c.units.clone(),
                icd10code1: code(0).unwrap_or_default(),
                icd10code2: code(1),
                icd10code3: code(2),
                icd10code4: code(3),
                unitamount: c.unit_amount.clone(),
                linenote: c.line_note.clone(),
            }
        })
        .collect()
}

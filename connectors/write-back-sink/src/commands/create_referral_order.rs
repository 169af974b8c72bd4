//! `CreateReferralOrder`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::CreateReferralOrder` (data
//! only). An encounter order of type referral; typed fields only.

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::CreateReferralOrder;

use super::chart::{answer_id, count};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(CreateReferralOrder);

impl WriteBack for CreateReferralOrder {
    /// Read back: the encounter's referral orders of this type and diagnosis, counted against a
    /// baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        if self.order_type_id.trim().is_empty() || self.diagnosis_snomed_code.trim().is_empty() {
            return Err(Invalid::command(
                "order_type_id and diagnosis_snomed_code are required",
            ));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let mut form = vec![
                ("ordertypeid".to_string(), self.order_type_id.clone()),
                (
                    "diagnosissnomedcode".to_string(),
                    self.diagnosis_snomed_code.clone(),
                ),
            ];
            for (k, v) in [
                ("reasonforreferral", &self.reason_for_referral),
                ("providernote", &self.provider_note),
                ("facilityid", &self.facility_id),
            ] {
                if let Some(v) = v {
                    form.push((k.into(), v.clone()));
                }
            }
            let v = cx
                .practice
                .chart_post(&ChartPath::referral_order(&self.encounter_id), form)
                .await?;
            Ok(ids(&[
                ("order_id", &answer_id(&v, "documentid")),
                ("encounter_id", &self.encounter_id),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "order_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let path = ChartPath::encounter_orders(&self.encounter_id);
            count(
            p,
            &path,
            "documentid",
            |v| {
                json_str(v, "ordertype").as_deref() == Some("REFERRAL")
                    && json_str(v, "ordertypeid").as_deref() == Some(self.order_type_id.as_str())
                    && json_str(v, "diagnosissnomedcode").as_deref()
                        == Some(self.diagnosis_snomed_code.as_str())
            },
        )
            .await
        })
    }
}

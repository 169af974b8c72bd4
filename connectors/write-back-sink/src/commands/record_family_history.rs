//! `RecordFamilyHistory`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::RecordFamilyHistory` (data
//! only). Typed fields only: no US Core resource was asked for (FamilyMemberHistory).

use athena_client::PracticeClient;
use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordFamilyHistory;

use super::chart::{answer_id, count};
use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, envelope, ids,
    json_str, reconcile_by_count,
};

envelope!(RecordFamilyHistory);

impl WriteBack for RecordFamilyHistory {
    /// Read back: the patient's family history entries with this relation and code, counted
    /// against a baseline.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _: bool) -> Result<(), Invalid> {
        if self.relation.trim().is_empty() || self.snomed_code.trim().is_empty() {
            return Err(Invalid::command("relation and snomed_code are required"));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let mut form = vec![
                ("departmentid".to_string(), self.department_id.clone()),
                ("relation".to_string(), self.relation.clone()),
                ("snomedcode".to_string(), self.snomed_code.clone()),
            ];
            if let Some(a) = self.onset_age {
                form.push(("onsetage".into(), a.to_string()));
            }
            if let Some(n) = &self.note {
                form.push(("note".into(), n.clone()));
            }
            let v = cx
                .practice
                .chart_post(&ChartPath::family_history(&self.patient_id), form)
                .await?;
            Ok(ids(&[
                ("family_history_id", &answer_id(&v, "familyhistoryid")),
                ("patient_id", &self.patient_id),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "family_history_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let path = ChartPath::family_history(&self.patient_id);
            count(
            p,
            &path,
            "familyhistoryid",
            |v| {
                json_str(v, "relation").as_deref() == Some(self.relation.as_str())
                    && json_str(v, "snomedcode").as_deref() == Some(self.snomed_code.as_str())
            },
        )
            .await
        })
    }
}

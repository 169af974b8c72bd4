//! `RemoveInsurance`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::RemoveInsurance` (data only).

use athena_client::PracticeClient;
use athena_contracts::commands::RemoveInsurance;

use super::{AthenaCtx, Idempotency, Performed, ReadBack, Reading, WriteBack, envelope, ids};

envelope!(RemoveInsurance);

fn touched(c: &RemoveInsurance) -> super::Ids {
    ids(&[
        ("insurance_id", &c.insurance_id),
        ("patient_id", &c.patient_id),
    ])
}

impl WriteBack for RemoveInsurance {
    /// A repeat of an applied delete is refused (404): read the patient's packages back; the
    /// package gone means our earlier attempt landed. Read-back runs only after an attempt
    /// (or an intent) of this command, so "gone" is ours.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: false }
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            cx.practice
                .delete_insurance(&self.patient_id, &self.insurance_id)
                .await?;
            Ok(touched(self))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        Box::pin(async move {
            let list = p.insurances(&self.patient_id).await?;
            let present = list
                .iter()
                .any(|i| i.insuranceid.as_deref() == Some(self.insurance_id.as_str()));
            Ok(if present {
                ReadBack::NotApplied
            } else {
                ReadBack::Applied(touched(self))
            })
        })
    }
}

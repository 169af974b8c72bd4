//! `AddAppointmentNote`: what the sink does with it (its envelope and its [`WriteBack`]
//! behaviour). Its Avro mirror is `athena_contracts::commands::AddAppointmentNote` (data only).

use athena_client::PracticeClient;
use athena_contracts::commands::AddAppointmentNote;

use super::{
    AthenaCtx, Idempotency, Invalid, Matching, Performed, Reading, WriteBack, envelope, ids,
    json_str, max_id, reconcile_by_count,
};

envelope!(AddAppointmentNote);

impl WriteBack for AddAppointmentNote {
    /// athena has no guard against a second identical note: count the appointment's notes
    /// with this text against a baseline taken before the first attempt.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ReconcileBeforeRetry { baseline: true }
    }

    fn precheck(&self, _card_payments_enabled: bool) -> Result<(), Invalid> {
        if self.note_text.trim().is_empty() {
            return Err(Invalid::command("AddAppointmentNote has an empty note_text"));
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            let v = cx
                .practice
                .add_appointment_note(
                    &self.appointment_id,
                    &self.note_text,
                    self.display_on_schedule,
                )
                .await?;
            let note = json_str(&v, "appointmentnoteid").unwrap_or_default();
            Ok(ids(&[
                ("appointment_id", &self.appointment_id),
                ("appointment_note_id", &note),
                ("patient_id", self.patient_id.as_deref().unwrap_or("")),
            ]))
        })
    }

    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a> {
        Box::pin(reconcile_by_count(self, p, baseline, "appointment_note_id"))
    }

    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        Box::pin(async move {
            let notes = p.appointment_notes(&self.appointment_id).await?;
            let hits: Vec<String> = notes
                .iter()
                .filter(|n| json_str(n, "notetext").as_deref() == Some(self.note_text.as_str()))
                .filter_map(|n| json_str(n, "noteid"))
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        })
    }
}

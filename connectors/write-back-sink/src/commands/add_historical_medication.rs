//! `AddHistoricalMedication`: what the sink does with it (its envelope and its [`ChartAdd`]
//! behaviour, which makes its `WriteBack`). Its Avro mirror is
//! `athena_contracts::commands::AddHistoricalMedication` (data only). athena documents the call
//! as open only to certain partner types: its refusal is a permanent business error, so the
//! command is REJECTED with athena's reason.

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::AddHistoricalMedication;

use super::chart::{Resolved, 
    AH_MEDICATION, ChartAdd, bad, chart_add, code, date as fhir_date, one_source, parse,
    put_opt, us,
};
use super::{Invalid, date, envelope};

envelope!(AddHistoricalMedication);
chart_add!(AddHistoricalMedication);

impl ChartAdd for AddHistoricalMedication {
    const ANSWER_KEY: &'static str = "medicationentryid";
    const LIST_ID_KEY: &'static str = "medicationentryid";
    const RESULT_ID: &'static str = "medication_entry_id";

    /// From the typed fields or the MedicationStatement; read back by medication id.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let typed =
            self.medication_id.is_some() || self.start_date.is_some() || self.stop_date.is_some();
        one_source(typed, &self.fhir_resource)?;
        let (med, start, stop, sig) = match &self.fhir_resource {
            Some(text) => {
                let v = parse(text, "MedicationStatement", &self.patient_id)?;
                let med = code(&v, "/medicationCodeableConcept", &[AH_MEDICATION]).ok_or(bad(
                    "MedicationStatement has no athena medication id coding (RxNorm alone is not looked up)",
                ))?;
                let start = fhir_date(&v, &["/effectivePeriod/start", "/effectiveDateTime"])?;
                let stop = fhir_date(&v, &["/effectivePeriod/end"])?;
                let sig = v
                    .pointer("/dosage/0/text")
                    .and_then(serde_json::Value::as_str)
                    .map(String::from);
                (med, start, stop, sig)
            }
            None => (
                self.medication_id
                    .clone()
                    .ok_or(Invalid::command("medication_id is required"))?,
                date(self.start_date),
                date(self.stop_date),
                self.unstructured_sig.clone(),
            ),
        };
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("medicationid".to_string(), med.clone()),
        ];
        put_opt(
            &mut form,
            vec![
                ("startdate", start.map(us)),
                ("stopdate", stop.map(us)),
                ("unstructuredsig", sig),
                ("patientnote", self.note.clone()),
            ],
        );
        Ok((form, vec![("/medicationid", med)]))
    }

    fn path(&self) -> ChartPath {
        ChartPath::medications(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

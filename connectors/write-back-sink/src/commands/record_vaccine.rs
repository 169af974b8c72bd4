//! `RecordVaccine`: what the sink does with it (its envelope and its [`ChartAdd`] behaviour,
//! which makes its `WriteBack`). Its Avro mirror is `athena_contracts::commands::RecordVaccine`
//! (data only).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordVaccine;
use serde_json::Value;

use super::chart::{Resolved, 
    CVX, ChartAdd, bad, chart_add, code, date as fhir_date, one_source, parse, put_opt, us,
};
use super::{Invalid, date, envelope};

envelope!(RecordVaccine);
chart_add!(RecordVaccine);

impl ChartAdd for RecordVaccine {
    const ANSWER_KEY: &'static str = "vaccineid";
    const LIST_ID_KEY: &'static str = "vaccineid";
    const RESULT_ID: &'static str = "vaccine_id";

    /// From the typed fields or the Immunization; read back by CVX code and date given.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        let typed = self.cvx.is_some() || self.administer_date.is_some() || self.lot_number.is_some();
        one_source(typed, &self.fhir_resource)?;
        let (cvx, given, lot, amount, units) = match &self.fhir_resource {
            Some(text) => {
                let v = parse(text, "Immunization", &self.patient_id)?;
                let cvx =
                    code(&v, "/vaccineCode", &[CVX]).ok_or(bad("Immunization has no CVX code"))?;
                let given = fhir_date(&v, &["/occurrenceDateTime"])?
                    .ok_or(bad("Immunization has no occurrenceDateTime"))?;
                let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
                let amount = v.pointer("/doseQuantity/value").and_then(Value::as_f64);
                let units = s("/doseQuantity/unit").or_else(|| s("/doseQuantity/code"));
                (cvx, given, s("/lotNumber"), amount, units)
            }
            None => (
                self.cvx.clone().ok_or(Invalid::command("cvx is required"))?,
                date(self.administer_date)
                    .ok_or(Invalid::command("administer_date is required"))?,
                self.lot_number.clone(),
                self.dose_amount,
                self.dose_units.clone(),
            ),
        };
        let given = us(given);
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("cvx".to_string(), cvx.clone()),
            ("administerdate".to_string(), given.clone()),
        ];
        put_opt(
            &mut form,
            vec![
                ("lotnumber", lot),
                ("amount", amount.map(|a| a.to_string())),
                ("units", units),
                ("note", self.note.clone()),
            ],
        );
        Ok((form, vec![("/cvx", cvx), ("/administerdate", given)]))
    }

    fn path(&self) -> ChartPath {
        ChartPath::vaccines(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

//! `RecordFamilyHistory`: what the sink does with it (its envelope and its [`ChartAdd`]
//! behaviour, which makes its `WriteBack`). Its Avro mirror is
//! `athena_contracts::commands::RecordFamilyHistory` (data only). Typed fields only: no US Core
//! resource was asked for (FamilyMemberHistory).

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::RecordFamilyHistory;

use super::chart::{Resolved, ChartAdd, chart_add, put_opt};
use super::{Invalid, envelope};

envelope!(RecordFamilyHistory);
chart_add!(RecordFamilyHistory);

impl ChartAdd for RecordFamilyHistory {
    const ANSWER_KEY: &'static str = "familyhistoryid";
    const LIST_ID_KEY: &'static str = "familyhistoryid";
    const RESULT_ID: &'static str = "family_history_id";

    /// Read back by relation and SNOMED code.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        if self.relation.trim().is_empty() || self.snomed_code.trim().is_empty() {
            return Err(Invalid::command("relation and snomed_code are required"));
        }
        let mut form = vec![
            ("departmentid".to_string(), self.department_id.clone()),
            ("relation".to_string(), self.relation.clone()),
            ("snomedcode".to_string(), self.snomed_code.clone()),
        ];
        put_opt(
            &mut form,
            vec![
                ("onsetage", self.onset_age.map(|a| a.to_string())),
                ("note", self.note.clone()),
            ],
        );
        Ok((
            form,
            vec![
                ("/relation", self.relation.clone()),
                ("/snomedcode", self.snomed_code.clone()),
            ],
        ))
    }

    fn path(&self) -> ChartPath {
        ChartPath::family_history(&self.patient_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![("patient_id", self.patient_id.clone())]
    }
}

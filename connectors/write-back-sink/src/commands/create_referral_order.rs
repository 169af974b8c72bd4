//! `CreateReferralOrder`: what the sink does with it (its envelope and its [`ChartAdd`]
//! behaviour, which makes its `WriteBack`). Its Avro mirror is
//! `athena_contracts::commands::CreateReferralOrder` (data only). An encounter order of type
//! referral; typed fields only.

use athena_client::api::chart::ChartPath;
use athena_contracts::commands::CreateReferralOrder;

use super::chart::{Resolved, ChartAdd, chart_add, put_opt};
use super::{Invalid, envelope};

envelope!(CreateReferralOrder);
chart_add!(CreateReferralOrder);

impl ChartAdd for CreateReferralOrder {
    const ANSWER_KEY: &'static str = "documentid";
    const LIST_ID_KEY: &'static str = "documentid";
    const RESULT_ID: &'static str = "order_id";

    /// Read back: the encounter's referral orders of this type and diagnosis.
    fn resolve(&self) -> Result<Resolved, Invalid> {
        if self.order_type_id.trim().is_empty() || self.diagnosis_snomed_code.trim().is_empty() {
            return Err(Invalid::command(
                "order_type_id and diagnosis_snomed_code are required",
            ));
        }
        let mut form = vec![
            ("ordertypeid".to_string(), self.order_type_id.clone()),
            (
                "diagnosissnomedcode".to_string(),
                self.diagnosis_snomed_code.clone(),
            ),
        ];
        put_opt(
            &mut form,
            vec![
                ("reasonforreferral", self.reason_for_referral.clone()),
                ("providernote", self.provider_note.clone()),
                ("facilityid", self.facility_id.clone()),
            ],
        );
        Ok((
            form,
            vec![
                ("/ordertype", "REFERRAL".to_string()),
                ("/ordertypeid", self.order_type_id.clone()),
                ("/diagnosissnomedcode", self.diagnosis_snomed_code.clone()),
            ],
        ))
    }

    fn path(&self) -> ChartPath {
        ChartPath::referral_order(&self.encounter_id)
    }

    fn list_path(&self) -> ChartPath {
        ChartPath::encounter_orders(&self.encounter_id)
    }

    fn context_ids(&self) -> Vec<(&'static str, String)> {
        vec![
            ("encounter_id", self.encounter_id.clone()),
            ("patient_id", self.patient_id.clone()),
        ]
    }
}

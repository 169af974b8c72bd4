//! Rust mirror of `schemas/commands/CreateReferralOrder.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/create_referral_order.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.CreateReferralOrder`: Create a referral order on an encounter (POST /v1/{practiceid}/chart/encounter/{encounterid}/orders/referral). Reconciled by counting the encounter's referral orders of this type and diagnosis against a baseline. Key: practice_id/patient_id. Topic athena.cmd.patients.v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReferralOrder {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena patientid (also the key: practice_id/patient_id).
    pub patient_id: String,
    /// athena encounterid.
    pub encounter_id: String,
    /// athena ordertypeid of the referral.
    pub order_type_id: String,
    /// SNOMED CT code of the diagnosis the referral is for.
    pub diagnosis_snomed_code: String,
    /// Reason. PHI; never logged.
    pub reason_for_referral: Option<String>,
    /// Note to the receiving provider. PHI; never logged.
    pub provider_note: Option<String>,
    /// athena clinicalproviderid of the receiving facility.
    pub facility_id: Option<String>,
}

impl AvroRecord for CreateReferralOrder {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CreateReferralOrder";
}

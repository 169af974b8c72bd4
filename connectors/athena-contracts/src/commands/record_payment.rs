//! Rust mirror of `schemas/commands/RecordPayment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/record_payment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::{Date, TimestampMillis};

/// `com.athenaconnect.commands.RecordPayment`: Post a patient payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPayment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena patientid.
    pub patient_id: String,
    /// athena departmentid.
    pub department_id: String,
    /// CASH, CHECK or a non-processed card method from /configuration/validnonccpcreditcardmethods (ignored for card payments).
    pub payment_method: String,
    /// Check number.
    pub check_number: Option<String>,
    /// Last four digits of a card processed elsewhere (never a full number).
    pub card_number_last4: Option<String>,
    /// Copay amount, decimal string; with appointment_id.
    pub copay_amount: Option<String>,
    /// athena appointmentid the copay is for.
    pub appointment_id: Option<String>,
    /// Unapplied amount, decimal string.
    pub other_amount: Option<String>,
    /// Post date; default today.
    pub post_date: Option<Date>,
    /// Card to charge through athena (PCI DSS scope, opt-in).
    pub card: Option<CardDetails>,
}

impl AvroRecord for RecordPayment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.RecordPayment";
}

/// `com.athenaconnect.commands.CardDetails`: Cardholder data for athena collectpayment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardDetails {
    /// Card number (PAN). Never logged.
    pub account_number: String,
    /// Expiry month, MM.
    pub expiration_month: String,
    /// Expiry year, YYYY.
    pub expiration_year: String,
    /// Name on the card. Never logged.
    pub name_on_card: String,
    /// Billing street address. Never logged.
    pub billing_address: String,
    /// Billing ZIP.
    pub billing_zip: String,
    /// CVV. Never logged.
    pub security_code: Option<String>,
}

//! Rust mirror of `schemas/commands/RecordPayment.avsc` (the schema is the contract; field docs there).

use athena_client::PracticeClient;
use athena_client::api::payments::{CardPayment, RecordPayment as AthenaPayment};
use athena_contracts::{Date, TimestampMillis};
use connector_core::avro::AvroRecord;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{
    AthenaCtx, Idempotency, Invalid, Performed, ReadBack, Reading, WriteBack, date, envelope, ids,
    json_str,
};

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

envelope!(RecordPayment);

impl WriteBack for RecordPayment {
    /// Non-card payments rely on athena's duplicate-payment guard (a repeat inside its window
    /// is refused as a duplicate, see [`WriteBack::is_duplicate_refusal`]); card captures
    /// cannot be read back and are never re-sent.
    fn idempotency(&self) -> Idempotency {
        if self.card.is_some() {
            Idempotency::Unknowable
        } else {
            Idempotency::ReconcileBeforeRetry { baseline: false }
        }
    }

    fn precheck(&self, card_payments_enabled: bool) -> Result<(), Invalid> {
        if self.card.is_some() && !card_payments_enabled {
            return Err(Invalid {
                code: "CARD_PAYMENTS_DISABLED",
                message: "card payments are off (sinks.write_back.<name>.card_payments.enabled; PCI DSS scope)",
            });
        }
        Ok(())
    }

    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a> {
        Box::pin(async move {
            match (&self.card, cx.card) {
                (Some(card), Some(opt_in)) => {
                    let req = CardPayment {
                        department_id: self.department_id.clone(),
                        account_number: SecretString::from(card.account_number.clone()),
                        expiration_month: card.expiration_month.clone(),
                        expiration_year: card.expiration_year.clone(),
                        name_on_card: card.name_on_card.clone(),
                        billing_address: card.billing_address.clone(),
                        billing_zip: card.billing_zip.clone(),
                        security_code: card.security_code.clone().map(SecretString::from),
                        other_amount: self.other_amount.clone(),
                        copay_amount: self.copay_amount.clone(),
                        appointment_id: self.appointment_id.clone(),
                    };
                    let v = cx
                        .practice
                        .collect_payment(opt_in, &self.patient_id, &req)
                        .await?;
                    let receipt = json_str(&v, "paymentreceiptid").unwrap_or_default();
                    Ok(ids(&[
                        ("payment_receipt_id", &receipt),
                        ("patient_id", &self.patient_id),
                    ]))
                }
                _ => {
                    let req = AthenaPayment {
                        department_id: self.department_id.clone(),
                        payment_method: self.payment_method.clone(),
                        check_number: self.check_number.clone(),
                        card_number_last4: self.card_number_last4.clone(),
                        copay_amount: self.copay_amount.clone(),
                        appointment_id: self.appointment_id.clone(),
                        other_amount: self.other_amount.clone(),
                        post_date: date(self.post_date),
                    };
                    let r = cx.practice.record_payment(&self.patient_id, &req).await?;
                    Ok(ids(&[
                        (
                            "payment_batch_id",
                            r.paymentbatchid.as_deref().unwrap_or(""),
                        ),
                        ("epayment_id", r.epaymentid.as_deref().unwrap_or("")),
                        ("patient_id", &self.patient_id),
                    ]))
                }
            }
        })
    }

    fn reconcile<'a>(&'a self, _p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
        // Re-sending inside athena's duplicate window is refused as a duplicate (handled as
        // ours by the executor); card captures never get here (`Unknowable`).
        Box::pin(async {
            Ok(if self.card.is_some() {
                ReadBack::Unknowable
            } else {
                ReadBack::NotApplied
            })
        })
    }

    fn is_duplicate_refusal(&self, err: &athena_client::Error) -> bool {
        matches!(err, athena_client::Error::Business { message, .. }
            if message.to_ascii_lowercase().contains("duplicate"))
    }
}

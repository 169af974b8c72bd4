//! `RecordPayment`: what the sink does with it (its envelope and its [`WriteBack`] behaviour). Its Avro
//! mirror is `athena_contracts::commands::RecordPayment` (data only).

use athena_client::PracticeClient;
use athena_client::api::payments::{CardPayment, RecordPayment as AthenaPayment};
use athena_contracts::commands::RecordPayment;
use secrecy::SecretString;

use super::{
    AthenaCtx, Idempotency, Invalid, Performed, ReadBack, Reading, WriteBack, date, envelope, ids,
    json_str,
};

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

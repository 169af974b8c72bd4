//! Payments: recording externally captured payments, and (opt-in only) card capture.
//!
//! * `POST /v1/{practiceid}/patients/{patientid}/recordpayment` — [`PracticeClient::record_payment`].
//!   Never retried on ambiguity; we never send `allowduplicatepayments`, so athena's duplicate detection
//!   stays on, but check payment history before repeating.
//! * `POST /v1/{practiceid}/patients/{patientid}/collectpayment` — [`PracticeClient::collect_payment`], only
//!   with a [`CardPayments`] value. Sending card numbers puts the deployment in **PCI DSS scope**; that is why
//!   the method cannot be called without the explicit opt-in type.

use http::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::client::{Form, PracticeClient};
use crate::error::Error;
use crate::model::de;

/// `recordpayment` parameters (cash, check, or a card processed elsewhere).
#[derive(Debug, Clone, Default)]
pub struct RecordPayment {
    /// Department (required).
    pub department_id: String,
    /// `CASH`, `CHECK`, or a value from `/configuration/validnonccpcreditcardmethods`.
    pub payment_method: String,
    /// Check number.
    pub check_number: Option<String>,
    /// Last four card digits (never a full PAN).
    pub card_number_last4: Option<String>,
    /// Copay amount (with `appointment_id`).
    pub copay_amount: Option<String>,
    /// Appointment for the copay.
    pub appointment_id: Option<String>,
    /// Unapplied amount.
    pub other_amount: Option<String>,
    /// Post date (MM/DD/YYYY); default today.
    pub post_date: Option<chrono::NaiveDate>,
}

/// `[{"success":"true","paymentbatchid":"5"}]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PaymentRecorded {
    /// Batch the payment was posted to.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub paymentbatchid: Option<String>,
    /// Receipt/epayment id when athena returns one.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub epaymentid: Option<String>,
}

/// Proof that the operator enabled card payments and accepted PCI DSS scope. Only [`CardPayments::enabled`]
/// creates one; keep that call behind an explicit configuration switch.
#[derive(Debug, Clone, Copy)]
pub struct CardPayments {
    _private: (),
}

impl CardPayments {
    /// Opt in to card capture through athena (`collectpayment`). Doing so makes this deployment handle
    /// cardholder data: PCI DSS applies to it, its logs, its Kafka topics and its hosts.
    pub fn enabled() -> Self {
        CardPayments { _private: () }
    }
}

/// A card payment. Card data and cardholder details are never printed (`Debug` shows ids only).
#[derive(Clone)]
pub struct CardPayment {
    /// Department (required).
    pub department_id: String,
    /// Card number (PAN).
    pub account_number: SecretString,
    /// Expiry month `MM`.
    pub expiration_month: String,
    /// Expiry year `YYYY`.
    pub expiration_year: String,
    /// Name on card.
    pub name_on_card: String,
    /// Billing address.
    pub billing_address: String,
    /// Billing ZIP.
    pub billing_zip: String,
    /// CVV (e-commerce mode).
    pub security_code: Option<SecretString>,
    /// Unapplied amount.
    pub other_amount: Option<String>,
    /// Copay amount.
    pub copay_amount: Option<String>,
    /// Appointment for the copay.
    pub appointment_id: Option<String>,
}

impl std::fmt::Debug for CardPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardPayment")
            .field("department_id", &self.department_id)
            .field("appointment_id", &self.appointment_id)
            .finish_non_exhaustive()
    }
}

impl PracticeClient {
    /// `POST /v1/{practiceid}/patients/{patientid}/recordpayment`. Not retried on ambiguity.
    pub async fn record_payment(
        &self,
        patient_id: &str,
        req: &RecordPayment,
    ) -> Result<PaymentRecorded, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/recordpayment";
        let f = Form::new()
            .put("departmentid", &req.department_id)
            .put("paymentmethod", &req.payment_method)
            .opt("checknumber", req.check_number.as_ref())
            .opt("cardnumberlast4", req.card_number_last4.as_ref())
            .opt("copayamount", req.copay_amount.as_ref())
            .opt("appointmentid", req.appointment_id.as_ref())
            .opt("otheramount", req.other_amount.as_ref())
            .opt("postdate", req.post_date.map(de::format_date));
        let call = self.write(
            Method::POST,
            route,
            &["patients", patient_id, "recordpayment"],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))
    }

    /// `POST /v1/{practiceid}/patients/{patientid}/collectpayment` — charge a card through athena.
    /// PCI DSS scope (see [`CardPayments`]). Never retried on ambiguity (a retry could charge twice).
    pub async fn collect_payment(
        &self,
        _opt_in: &CardPayments,
        patient_id: &str,
        req: &CardPayment,
    ) -> Result<serde_json::Value, Error> {
        let route = "/v1/{practiceid}/patients/{patientid}/collectpayment";
        let f = Form::new()
            .put("departmentid", &req.department_id)
            .put("accountnumber", req.account_number.expose_secret())
            .put("expirationmonthmm", &req.expiration_month)
            .put("expirationyearyyyy", &req.expiration_year)
            .put("nameoncard", &req.name_on_card)
            .put("billingaddress", &req.billing_address)
            .put("billingzip", &req.billing_zip)
            .opt(
                "cardsecuritycode",
                req.security_code
                    .as_ref()
                    .map(|s| s.expose_secret().to_owned()),
            )
            .opt("otheramount", req.other_amount.as_ref())
            .opt("copayamount", req.copay_amount.as_ref())
            .opt("appointmentid", req.appointment_id.as_ref());
        let call = self.write(
            Method::POST,
            route,
            &["patients", patient_id, "collectpayment"],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        Ok(match v {
            serde_json::Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
            other => other,
        })
    }
}

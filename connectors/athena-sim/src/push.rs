//! The push side of athena's Event Subscription Platform (§7): Subscriptions accepted by
//! `api/subscriptions.rs` are fed from `Practice::change` (every change passes through it into
//! the practice's `push_outbox`), and a notifier task turns each change into an id-only
//! notification `Bundle`, signs it (`X-Hub-Signature: sha256=<hex>` when the subscription gave an
//! `X-Hub-Secret`), and POSTs it to the endpoint.
//!
//! Delivery follows athena's documented semantics: success iff a 2xx arrives within 2 s;
//! otherwise the *same bytes* (same `notificationEvent.id`) are retried every
//! `SimConfig::push_retry_interval` for `SimConfig::push_retry_for` (athena: 1 h), then parked in
//! a dead-letter list (at most [`DEAD_LETTERS_PER_SUBSCRIPTION`] per subscription) that
//! [`SimState::replay_dead_letters`] (`POST /_sim/push/subscriptions/{id}/replay`) sends again,
//! the same bytes with a fresh retry period, like athena's replay. At-least-once, no ordering
//! between deliveries. Guesses are marked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::state::SimState;

/// Most changes kept for the notifier before the oldest are dropped (no subscriber drains them
/// until the first Subscription exists).
const OUTBOX_CAP: usize = 10_000;

/// Most dead letters kept per subscription; the oldest are dropped first.
// Guess: athena keeps dead letters for 7 days (§7.3) but states no count limit; ours bounds memory.
pub const DEAD_LETTERS_PER_SUBSCRIPTION: usize = 1_000;

/// athena's hard delivery limit.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// One change waiting for the notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushChange {
    /// Changed-data feed the change belongs to (`patients`, `appointments`, `claims`, ...), or
    /// a push-only family (`claims` with event `CreateClaim`).
    pub feed: String,
    /// The feed's event name (`AddPatient`, `CheckIn`, ...).
    pub event: String,
    /// Id of the changed entity.
    pub entity_id: String,
    /// athena patient id of the record, for the AuditEvent patient extension.
    pub patient_id: Option<String>,
    /// Department of the record, for the AuditEvent `ah-department` extension.
    pub department_id: Option<String>,
}

/// The proprietary id field of each feed that has a push topic family.
fn id_key(feed: &str) -> Option<&'static str> {
    Some(match feed {
        "patients" => "patientid",
        "appointments" => "appointmentid",
        "claims" => "claimid",
        "chart/healthhistory/problems" => "problemid",
        "chart/healthhistory/medication" => "medicationentryid",
        "chart/healthhistory/vaccine" => "vaccineid",
        "prescriptions" => "prescriptionid",
        "labresults" => "labresultid",
        "imagingresults" => "imagingresultid",
        "orders" => "orderid",
        "documents/patientcase" => "patientcaseid",
        "providers" => "providerid",
        "referringproviders" => "referringproviderid",
        "visits" => "visitid",
        _ => return None,
    })
}

/// Queues `change` on `outbox` (called from `Practice::change`).
pub fn record(
    outbox: &mut Vec<PushChange>,
    feed: &str,
    event: &str,
    department_id: Option<String>,
    patient_id: Option<String>,
    snapshot: &Value,
) {
    let Some(key) = id_key(feed) else {
        return;
    };
    let Some(id) = snapshot.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }) else {
        return;
    };
    if outbox.len() >= OUTBOX_CAP {
        outbox.remove(0);
    }
    outbox.push(PushChange {
        feed: feed.into(),
        event: event.into(),
        entity_id: id,
        patient_id,
        department_id,
    });
}

/// An accepted Subscription.
#[derive(Debug, Clone)]
pub struct SimSubscription {
    /// UUID.
    pub id: String,
    /// Topic code, e.g. `Patient.update`.
    pub topic: String,
    /// Practice from the `ah-practice` filter.
    pub practice: u64,
    /// Webhook URL.
    pub endpoint: String,
    /// `X-Hub-Secret` given at creation (signing key), if any.
    pub secret: Option<String>,
    /// The stored resource (as answered; never contains the secret).
    pub resource: Value,
}

/// A notification that could not be delivered within the retry period.
#[derive(Debug, Clone)]
pub struct DeadDelivery {
    /// Subscription id.
    pub subscription: String,
    /// The notification body.
    pub body: String,
    /// Attempts made.
    pub attempts: u32,
}

/// Push platform state inside `SimState`.
#[derive(Debug, Default)]
pub struct PushState {
    /// Subscriptions by id.
    pub subscriptions: Mutex<BTreeMap<String, SimSubscription>>,
    /// Deliveries given up on.
    pub dead_letters: Mutex<Vec<DeadDelivery>>,
    /// Notifications answered 2xx in time.
    pub delivered: AtomicU64,
    /// POST attempts (including retries).
    pub attempts: AtomicU64,
    /// Notifications created.
    pub notifications: AtomicU64,
    started: AtomicBool,
}

/// Topic codes the simulator can emit: at least one of every family of reference §7.4.
pub const SIM_TOPICS: &[&str] = &[
    "Patient.create",
    "Patient.update",
    "Patient.delete",
    "Patient.merge",
    "Appointment.schedule",
    "Appointment.cancel",
    "Appointment.check-in",
    "Appointment.check-out",
    "Appointment.freeze",
    "Appointment.unfreeze",
    "Appointment.update",
    "Encounter.check-in",
    "Encounter.signoff",
    "Encounter.reopen",
    "Claim.create",
    "Claim.update",
    "ClinicalEncounterDiagnosis.create",
    "ClinicalEncounterDiagnosis.update",
    "HistoricalMedication.create",
    "HistoricalMedication.update",
    "HistoricalMedication.delete",
    "HistoricalVaccine.create",
    "HistoricalVaccine.update",
    "HistoricalVaccine.delete",
    "ImagingResult.create",
    "ImagingResult.update",
    "LabResult.create",
    "LabResult.update",
    "LabResult.close",
    "Order.submit",
    "Order.update",
    "Order.signoff",
    "PatientCase.create",
    "PatientCase.update",
    "PatientProblem.create",
    "PatientProblem.update",
    "Prescription.create",
    "Prescription.update",
    "Prescription.delete",
    "Prescription.refill-create",
    "Prescription.refill-update",
    "Prescription.reopen",
    "Prescription.preapprove",
    "Provider.create",
    "Provider.update",
    "Provider.delete",
    "Provider.undelete",
    "ReferringProvider.create",
    "ReferringProvider.update",
    "ReferringProvider.delete",
];

/// The create/update/delete topic of `family` for a feed event named `…Add`/`…Update`/`…Delete`.
fn crud(family: &'static str, event: &str) -> &'static str {
    let pick = |c: &'static str, u: &'static str, d: &'static str| {
        if event.ends_with("Add") || event.starts_with("Add") || event.starts_with("Create") {
            c
        } else if event.ends_with("Delete") {
            d
        } else {
            u
        }
    };
    match family {
        "HistoricalMedication" => pick(
            "HistoricalMedication.create",
            "HistoricalMedication.update",
            "HistoricalMedication.delete",
        ),
        "HistoricalVaccine" => pick(
            "HistoricalVaccine.create",
            "HistoricalVaccine.update",
            "HistoricalVaccine.delete",
        ),
        "PatientProblem" => pick(
            "PatientProblem.create",
            "PatientProblem.update",
            "PatientProblem.delete",
        ),
        "ImagingResult" => pick(
            "ImagingResult.create",
            "ImagingResult.update",
            "ImagingResult.delete",
        ),
        "PatientCase" => pick(
            "PatientCase.create",
            "PatientCase.update",
            "PatientCase.update",
        ),
        "Provider" => pick("Provider.create", "Provider.update", "Provider.delete"),
        "ReferringProvider" => pick(
            "ReferringProvider.create",
            "ReferringProvider.update",
            "ReferringProvider.delete",
        ),
        _ => pick("Claim.create", "Claim.update", "Claim.delete"),
    }
}

/// The topics a change maps to.
// Guess: athena's mapping from internal events to topics is not documented; this one follows
// the names (…Add → create, …Update → update, …Delete → delete).
fn topics_for(c: &PushChange) -> Vec<&'static str> {
    let e = c.event.as_str();
    match c.feed.as_str() {
        "patients" if e.starts_with("Add") => vec!["Patient.create"],
        "patients" if e.starts_with("Delete") => vec!["Patient.delete"],
        "patients" if e.starts_with("Merge") => vec!["Patient.merge"],
        "patients" => vec!["Patient.update"],
        "appointments" if e.contains("Slot") => vec![],
        "appointments" if e.contains("Cancel") => vec!["Appointment.cancel"],
        "appointments" if e.contains("CheckIn") => {
            vec!["Appointment.check-in", "Encounter.check-in"]
        }
        "appointments" if e.contains("CheckOut") => vec!["Appointment.check-out"],
        "appointments" if e.contains("Unfreeze") => vec!["Appointment.unfreeze"],
        "appointments" if e.contains("Freeze") => vec!["Appointment.freeze"],
        "appointments" if e.contains("Schedule") => vec!["Appointment.schedule"],
        "appointments" => vec!["Appointment.update"],
        "claims" if e == "CreateClaim" => vec!["Claim.create"],
        "claims" => vec!["Claim.update"],
        "chart/healthhistory/problems" => vec![crud("PatientProblem", e)],
        "chart/healthhistory/medication" => vec![crud("HistoricalMedication", e)],
        "chart/healthhistory/vaccine" => vec![crud("HistoricalVaccine", e)],
        "prescriptions" => vec![match e {
            "PrescriptionAdd" => "Prescription.create",
            "PrescriptionDelete" => "Prescription.delete",
            "PrescriptionRefillAdd" => "Prescription.refill-create",
            "PrescriptionRefillUpdate" => "Prescription.refill-update",
            "PrescriptionReopen" => "Prescription.reopen",
            "PrescriptionPreApproval" => "Prescription.preapprove",
            _ => "Prescription.update",
        }],
        "labresults" if e == "LabResultClose" => vec!["LabResult.close"],
        "labresults" if e == "LabResultAdd" => vec!["LabResult.create"],
        "labresults" => vec!["LabResult.update"],
        "imagingresults" => vec![crud("ImagingResult", e)],
        "orders" if e == "OrderAdd" => vec!["Order.submit"],
        "orders" if e == "OrderSignOff" => vec!["Order.signoff"],
        "orders" => vec!["Order.update"],
        "documents/patientcase" => vec![crud("PatientCase", e)],
        "providers" if e == "ProviderUndelete" => vec!["Provider.undelete"],
        "providers" => vec![crud("Provider", e)],
        "referringproviders" => vec![crud("ReferringProvider", e)],
        "visits" if e == "VisitAdd" => {
            vec!["Encounter.signoff", "ClinicalEncounterDiagnosis.create"]
        }
        "visits" => vec!["Encounter.reopen", "ClinicalEncounterDiagnosis.update"],
        _ => vec![],
    }
}

/// The notification focus: the FHIR reference where the simulator serves the resource (ids as
/// in `crate::clinical_changes`), plus the athena identifier of the record.
fn focus(practice: u64, topic: &str, c: &PushChange) -> Value {
    let id = c.entity_id.as_str();
    let fhir = |ty: &str, token: &str| json!({"reference": format!("{ty}/{}", crate::clinical_changes::fhir_id(practice, token, id))});
    match topic.split('.').next().unwrap_or("") {
        "Patient" => json!({"reference": format!("Patient/a-{practice}.E-{id}"),
            "identifier": {"system": format!("urn:athenahealth:athenanet:patient:{practice}"), "value": id}}),
        "Encounter" if c.feed == "visits" => fhir("Encounter", "visit"),
        "Encounter" => json!({"reference": format!("Encounter/a-{practice}.encounter-{id}")}),
        "ClinicalEncounterDiagnosis" => fhir("Condition", "encounterdiagnosis"),
        "PatientProblem" => fhir("Condition", "problem"),
        "HistoricalMedication" => fhir("MedicationRequest", "historicalmedication"),
        "HistoricalVaccine" => fhir("Immunization", "vaccine"),
        "Prescription" => fhir("MedicationRequest", "prescription"),
        // The rest have no FHIR resource at athena: identifier only.
        entity => json!({"identifier": {
            "system": format!("urn:athenahealth:athenanet:{}:{practice}", entity.to_ascii_lowercase()),
            "value": id}}),
    }
}

/// The v0.11 AuditEvent extensions: the patient and the department of the changed record.
fn audit_extensions(practice: u64, c: &PushChange) -> Value {
    let mut ext = Vec::new();
    if let Some(p) = &c.patient_id {
        ext.push(json!({
            "url": "http://hl7.org/fhir/StructureDefinition/extension-AuditEvent.patient",
            "valueReference": {"reference": format!("Patient/a-{practice}.E-{p}")}
        }));
    }
    if let Some(d) = &c.department_id {
        ext.push(json!({
            "url": "https://fhir.athena.io/StructureDefinition/ah-department",
            "valueReference": {"reference": format!("Organization/a-{practice}.Department-{d}")}
        }));
    }
    Value::Array(ext)
}

/// The id-only notification bundle for one event (athena v0.11 shape).
pub fn notification_bundle(sub: &SimSubscription, event_id: &str, change: &PushChange) -> Value {
    let now = Utc::now().to_rfc3339();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "history",
        "timestamp": now,
        "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification"]},
        "entry": [
            {"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": {
                "resourceType": "SubscriptionStatus",
                "status": "active",
                "type": "event-notification",
                "subscription": {"reference": format!("Subscription/{}", sub.id)},
                "topic": format!("https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/{}", sub.topic),
                "eventsInNotification": 1,
                "notificationEvent": [{
                    "id": event_id,
                    // Counters are per bundle at athena (deviation from the IG).
                    "eventNumber": "1",
                    "timestamp": now,
                    "focus": focus(sub.practice, &sub.topic, change),
                }]
            }},
            {"resource": {"resourceType": "AuditEvent", "id": event_id,
                "type": {"code": sub.topic}, "recorded": now,
                "extension": audit_extensions(sub.practice, change)}}
        ]
    })
}

/// `sha256=<hex>` of `body` keyed by `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

impl SimState {
    /// The push platform's state (subscriptions, delivery counters, dead letters).
    pub fn push(&self) -> &PushState {
        &self.inner.push
    }

    /// Starts the notifier task once (called when the first Subscription is accepted).
    pub(crate) fn ensure_notifier(&self) {
        if self.inner.push.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move { notifier(state).await });
    }
}

impl SimState {
    /// Sends the dead letters of `subscription` again (athena's dead-letter replay): each the same
    /// bytes and signature (so the same event ids and timestamps) with a fresh retry period,
    /// parked again if it still fails. Returns how many were replayed (0 for an unknown or
    /// deleted subscription, whose letters are kept). Needs a Tokio runtime.
    pub fn replay_dead_letters(&self, subscription: &str) -> usize {
        let Some(sub) = self.push().subscriptions.lock().get(subscription).cloned() else {
            return 0;
        };
        let bodies: Vec<String> = {
            let mut letters = self.push().dead_letters.lock();
            let (mine, rest): (Vec<DeadDelivery>, Vec<DeadDelivery>) = letters
                .drain(..)
                .partition(|d| d.subscription == subscription);
            *letters = rest;
            mine.into_iter().map(|d| d.body).collect()
        };
        let http = reqwest::Client::new();
        for body in &bodies {
            tokio::spawn(deliver(
                self.clone(),
                http.clone(),
                sub.clone(),
                body.clone(),
            ));
        }
        bodies.len()
    }
}

async fn notifier(state: SimState) {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    loop {
        tick.tick().await;
        let changes: Vec<(u64, PushChange)> = {
            let mut w = state.inner.world.lock();
            w.practices
                .iter_mut()
                .flat_map(|(pid, p)| {
                    p.push_outbox
                        .drain(..)
                        .map(|c| (*pid, c))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        if changes.is_empty() {
            continue;
        }
        let subs: Vec<SimSubscription> = state
            .push()
            .subscriptions
            .lock()
            .values()
            .cloned()
            .collect();
        for (pid, change) in changes {
            for topic in topics_for(&change) {
                for sub in subs
                    .iter()
                    .filter(|s| s.practice == pid && s.topic == topic)
                {
                    let event_id = uuid::Uuid::new_v4().to_string();
                    let body = notification_bundle(sub, &event_id, &change).to_string();
                    state.push().notifications.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(deliver(state.clone(), http.clone(), sub.clone(), body));
                }
            }
        }
    }
}

/// Adds `dead` to the dead letters, dropping its subscription's oldest beyond the bound.
fn park(state: &SimState, dead: DeadDelivery) {
    let mut letters = state.push().dead_letters.lock();
    let mine = letters
        .iter()
        .filter(|d| d.subscription == dead.subscription)
        .count();
    if mine >= DEAD_LETTERS_PER_SUBSCRIPTION
        && let Some(i) = letters
            .iter()
            .position(|d| d.subscription == dead.subscription)
    {
        letters.remove(i);
    }
    letters.push(dead);
}

async fn deliver(state: SimState, http: reqwest::Client, sub: SimSubscription, body: String) {
    let retry_for = state.config().push_retry_for;
    let interval = state.config().push_retry_interval;
    let sig = sub.secret.as_deref().map(|s| sign(s, body.as_bytes()));
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        state.push().attempts.fetch_add(1, Ordering::Relaxed);
        let mut rb = http
            .post(&sub.endpoint)
            .timeout(DELIVERY_TIMEOUT)
            .header("Content-Type", "application/fhir+json")
            .body(body.clone());
        if let Some(s) = &sig {
            rb = rb.header("X-Hub-Signature", s);
        }
        let ok = matches!(rb.send().await, Ok(r) if r.status().is_success());
        if ok {
            state.push().delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tracing::debug!(subscription = %sub.id, attempts, "Push delivery failed; will retry.");
        if start.elapsed() + interval > retry_for {
            park(
                &state,
                DeadDelivery {
                    subscription: sub.id.clone(),
                    body,
                    attempts,
                },
            );
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_and_topics() {
        let mut o = Vec::new();
        record(
            &mut o,
            "patients",
            "AddPatient",
            None,
            Some("12".into()),
            &json!({"patientid": "12"}),
        );
        record(
            &mut o,
            "appointments",
            "CheckIn",
            Some("1".into()),
            Some("12".into()),
            &json!({"appointmentid": 7}),
        );
        record(&mut o, "unknown", "X", None, None, &json!({}));
        assert_eq!(o.len(), 2);
        assert_eq!(topics_for(&o[0]), vec!["Patient.create"]);
        assert_eq!(
            topics_for(&o[1]),
            vec!["Appointment.check-in", "Encounter.check-in"]
        );
        assert_eq!(o[1].entity_id, "7");
        assert!(sign("k", b"{}").starts_with("sha256="));
        let ext = audit_extensions(195_900, &o[1]);
        assert_eq!(
            ext[0]["valueReference"]["reference"],
            "Patient/a-195900.E-12"
        );
        assert_eq!(
            ext[1]["valueReference"]["reference"],
            "Organization/a-195900.Department-1"
        );
    }

    #[test]
    fn every_alpha_family_has_a_topic_the_simulator_emits() {
        let families = [
            "Appointment",
            "Claim",
            "ClinicalEncounterDiagnosis",
            "Encounter",
            "HistoricalMedication",
            "HistoricalVaccine",
            "ImagingResult",
            "LabResult",
            "Order",
            "Patient",
            "PatientCase",
            "PatientProblem",
            "Prescription",
            "Provider",
            "ReferringProvider",
        ];
        let emitted: std::collections::BTreeSet<&str> = crate::feeds::FEEDS
            .iter()
            .flat_map(|f| {
                f.events.iter().flat_map(move |e| {
                    topics_for(&PushChange {
                        feed: f.path.into(),
                        event: (*e).into(),
                        entity_id: "1".into(),
                        patient_id: None,
                        department_id: None,
                    })
                })
            })
            .chain(["Claim.create"])
            .collect();
        for t in &emitted {
            assert!(SIM_TOPICS.contains(t), "{t} not listed");
        }
        for f in families {
            assert!(
                emitted.iter().any(|t| t.split('.').next() == Some(f)),
                "{f} has no topic"
            );
        }
    }
}

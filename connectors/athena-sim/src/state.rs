//! `SimState`: the shared state behind every handler (an `Arc` of a few mutexes over plain data)
//! and the test-facing methods of the contract (faults, tokens, counters, ledger, seeding).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::api::export::ExportJob;
use crate::config::SimConfig;
use crate::faults::FaultRule;
use crate::model::{LedgerEntry, NewPatient, Practice, patient_fields};
use crate::util::{ApiError, ApiResult, Params};

/// The mutable data model: practices, the ledger and the generator's random stream.
#[derive(Debug)]
pub struct World {
    /// Practices by id.
    pub practices: BTreeMap<u64, Practice>,
    /// Every accepted write.
    pub ledger: Vec<LedgerEntry>,
    /// The generator's deterministic random stream.
    pub rng: ChaCha8Rng,
}

impl World {
    /// Appends a ledger entry.
    pub fn record(
        &mut self,
        practice_id: u64,
        operation: &str,
        entity_id: &str,
        params: BTreeMap<String, String>,
    ) {
        let seq = self.ledger.len() as u64 + 1;
        self.ledger.push(LedgerEntry {
            seq,
            practice_id,
            operation: operation.into(),
            entity_id: entity_id.into(),
            params,
        });
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Rejected after this instant.
    pub expires: Instant,
    /// Granted scope.
    pub scope: String,
}

/// Token bucket for the QPS limit.
#[derive(Debug)]
pub struct Bucket {
    /// Available tokens.
    pub tokens: f64,
    /// Last refill.
    pub last: Instant,
}

/// Shared internals of `SimState`.
#[derive(Debug)]
pub struct Inner {
    /// The configuration the simulator was started with.
    pub config: SimConfig,
    /// The data model.
    pub world: Mutex<World>,
    /// Scripted faults, consumed in order.
    pub faults: Mutex<Vec<FaultRule>>,
    /// Issued tokens by value.
    pub tokens: Mutex<HashMap<String, IssuedToken>>,
    /// Token requests seen.
    pub token_requests: AtomicU64,
    /// Token grants in the current minute: (minute since epoch, count).
    pub token_window: Mutex<(i64, u32)>,
    /// Requests by (method, route template).
    pub counts: Mutex<BTreeMap<(String, String), u64>>,
    /// QPS bucket.
    pub qps: Mutex<Bucket>,
    /// API requests answered with the over-QPS throttle.
    pub qps_throttled: AtomicU64,
    /// Daily quota: (UTC day, requests used).
    pub quota: Mutex<(NaiveDate, u64)>,
    /// Bulk exports by job id.
    pub exports: Mutex<BTreeMap<String, ExportJob>>,
    /// The push platform (subscriptions, deliveries).
    pub push: crate::push::PushState,
    /// Scopes the token endpoint leaves out of every grant (starts as
    /// `SimConfig::withheld_scopes`; `PUT /_sim/scopes/withheld` changes it).
    pub withheld_scopes: Mutex<Vec<String>>,
}

/// Handle on one simulated athenahealth environment; cheap to clone.
#[derive(Debug, Clone)]
pub struct SimState {
    pub(crate) inner: Arc<Inner>,
}

impl SimState {
    /// A fresh environment seeded from `config.seed`.
    pub fn new(config: SimConfig) -> Self {
        let practices = config
            .practices
            .iter()
            .map(|&p| (p, Practice::seeded(p, config.seed)))
            .collect();
        let world = World {
            practices,
            ledger: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        let qps = config.qps_limit.unwrap_or(0) as f64;
        SimState {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                faults: Mutex::new(Vec::new()),
                tokens: Mutex::new(HashMap::new()),
                token_requests: AtomicU64::new(0),
                token_window: Mutex::new((0, 0)),
                counts: Mutex::new(BTreeMap::new()),
                qps: Mutex::new(Bucket {
                    tokens: qps,
                    last: Instant::now(),
                }),
                qps_throttled: AtomicU64::new(0),
                quota: Mutex::new((Utc::now().date_naive(), 0)),
                exports: Mutex::new(BTreeMap::new()),
                push: Default::default(),
                withheld_scopes: Mutex::new(config.withheld_scopes.clone()),
                config,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Appends a scripted fault; rules are matched in insertion order.
    pub fn inject(&self, rule: FaultRule) {
        self.inner.faults.lock().push(rule);
    }

    /// The scripted faults not used up yet (a test helper: did a rule fire?).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.inner.faults.lock().clone()
    }

    /// Removes every scripted fault.
    pub fn clear_faults(&self) {
        self.inner.faults.lock().clear();
    }

    /// From now on, token grants leave out these scopes (an app that lacks them); tokens
    /// already issued keep theirs, so call [`SimState::revoke_tokens`] too for an immediate effect.
    pub fn withhold_scopes(&self, scopes: Vec<String>) {
        *self.inner.withheld_scopes.lock() = scopes;
    }

    /// Invalidates every issued token (later requests with them get 401).
    pub fn revoke_tokens(&self) {
        self.inner.tokens.lock().clear();
    }

    /// How many requests reached `POST /oauth2/v1/token`.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::Relaxed)
    }

    /// Requests received for a route template, e.g.
    /// `("PUT", "/v1/{practiceid}/appointments/{appointmentid}")`. Throttled and faulted
    /// requests count too.
    pub fn request_count(&self, method: &str, route_template: &str) -> u64 {
        self.inner
            .counts
            .lock()
            .get(&(method.to_ascii_uppercase(), route_template.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// API requests answered with the over-QPS throttle (`qps_limit`).
    pub fn qps_throttled(&self) -> u64 {
        self.inner
            .qps_throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every request count, keyed `"METHOD template"` (for `GET /_sim/stats`).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .counts
            .lock()
            .iter()
            .map(|((m, t), n)| (format!("{m} {t}"), *n))
            .collect()
    }

    /// Every write the simulator accepted, in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.inner.world.lock().ledger.clone()
    }

    /// Runs the change generator `n` steps (deterministic for a seed).
    pub fn generate(&self, n: usize) {
        let mut w = self.inner.world.lock();
        for _ in 0..n {
            crate::generator::step(&mut w, &self.inner.config);
        }
    }

    /// Seeds a patient directly (no ledger entry; an `AddPatient` change if subscribed).
    ///
    /// # Panics
    /// If `practice` is not in `SimConfig::practices` (a test setup error).
    pub fn add_patient(&self, practice: u64, p: NewPatient) -> String {
        let mut w = self.inner.world.lock();
        let pr = w.practices.get_mut(&practice).expect("configured practice");
        let id = pr.insert_patient(patient_fields(&p), Utc::now());
        pr.patient_changed(id, "AddPatient");
        id.to_string()
    }

    /// Makes a patient disappear, as a delete or a merge into another chart does (a test helper
    /// beyond the contract): `GET /patients/{id}` answers 404 afterwards, while a bulk export
    /// kicked off before still lists it. No ledger entry, no feed row. Returns whether it existed.
    pub fn remove_patient(&self, practice: u64, patient_id: u64) -> bool {
        let mut w = self.inner.world.lock();
        w.practices
            .get_mut(&practice)
            .is_some_and(|p| p.patients.remove(&patient_id).is_some())
    }

    /// Seeds open slots (no ledger entry; `AddAppointmentSlot` changes if subscribed).
    ///
    /// # Panics
    /// If `practice` is not in `SimConfig::practices` (a test setup error).
    pub fn add_open_slots(
        &self,
        practice: u64,
        department_id: &str,
        provider_id: &str,
        date: NaiveDate,
        times: &[&str],
    ) -> Vec<String> {
        let mut w = self.inner.world.lock();
        let pr = w.practices.get_mut(&practice).expect("configured practice");
        let ids = pr.create_slots(department_id, provider_id, "82", date, times, Utc::now());
        for id in &ids {
            pr.appointment_changed(*id, "AddAppointmentSlot");
        }
        ids.iter().map(u64::to_string).collect()
    }

    /// Unprocessed rows queued on a feed (a test helper beyond the contract).
    pub fn pending_changes(&self, practice: u64, feed: &str) -> usize {
        let w = self.inner.world.lock();
        w.practices
            .get(&practice)
            .and_then(|p| p.feeds.get(feed))
            .map(|f| f.rows.iter().filter(|r| r.processed_at.is_none()).count())
            .unwrap_or(0)
    }

    /// Inserts or replaces a clinical FHIR resource (a test helper beyond the contract; see
    /// [`crate::clinical`]): `meta.lastUpdated` becomes now. Returns its id, or `None` for a
    /// resource without an id or a patient subject of that practice.
    pub fn put_clinical(&self, practice: u64, resource: serde_json::Value) -> Option<String> {
        let mut w = self.inner.world.lock();
        w.practices
            .get_mut(&practice)?
            .put_clinical(resource, Utc::now())
    }

    /// Makes one clinical change now, as the generator would (a test helper beyond the
    /// contract): see [`crate::clinical_changes`]. `None` for an unknown practice or patient.
    pub fn clinical_change(
        &self,
        practice: u64,
        kind: crate::clinical_changes::ClinicalKind,
        patient: u64,
        update: bool,
    ) -> Option<crate::clinical_changes::ClinicalChange> {
        let mut w = self.inner.world.lock();
        let variant = w.rng.random_range(0..1000);
        w.practices
            .get_mut(&practice)?
            .clinical_change(kind, patient, variant, update, Utc::now())
    }

    /// Adds a problem to `patient`'s chart now, or with `resolve` ends the latest one (a test
    /// helper beyond the contract; see [`Practice::problem_change`]).
    pub fn problem_change(
        &self,
        practice: u64,
        patient: u64,
        resolve: bool,
    ) -> Option<crate::clinical_changes::ClinicalChange> {
        let mut w = self.inner.world.lock();
        let variant = w.rng.random_range(0..1000);
        w.practices
            .get_mut(&practice)?
            .problem_change(patient, variant, resolve, Utc::now())
    }

    /// The FHIR resource `reference` (`Type/id`) as the simulator serves it now (a test helper
    /// beyond the contract).
    pub fn fhir_resource(&self, practice: u64, reference: &str) -> Option<serde_json::Value> {
        let (ty, id) = reference.split_once('/')?;
        self.with_practice(practice, |p| {
            crate::api::fhir::resources(p, ty, None)
                .into_iter()
                .map(|(_, v)| v)
                .find(|v| v["id"] == id)
        })
        .flatten()
    }

    /// Read access to one practice (a test helper beyond the contract).
    pub fn with_practice<T>(&self, practice: u64, f: impl FnOnce(&Practice) -> T) -> Option<T> {
        self.inner.world.lock().practices.get(&practice).map(f)
    }

    /// Runs a read on a practice; 404 `Invalid practice.` when unknown.
    pub(crate) fn read<T>(
        &self,
        practice: u64,
        f: impl FnOnce(&mut Practice) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut w = self.inner.world.lock();
        let p = w
            .practices
            .get_mut(&practice)
            .ok_or_else(|| ApiError::not_found("Invalid practice."))?;
        f(p)
    }

    /// Runs a write on a practice and, if it is accepted, appends it to the ledger.
    /// `f` returns the answer and the written entity's id.
    pub(crate) fn write(
        &self,
        practice: u64,
        operation: &str,
        params: &Params,
        f: impl FnOnce(&mut Practice, &Params) -> ApiResult<(Value, String)>,
    ) -> ApiResult<Value> {
        let mut w = self.inner.world.lock();
        apply_write(&mut w, practice, operation, params, f)
    }
}

/// The body of `SimState::write`, shared with the generator (which already holds the lock).
pub(crate) fn apply_write(
    w: &mut World,
    practice: u64,
    operation: &str,
    params: &Params,
    f: impl FnOnce(&mut Practice, &Params) -> ApiResult<(Value, String)>,
) -> ApiResult<Value> {
    let p = w
        .practices
        .get_mut(&practice)
        .ok_or_else(|| ApiError::not_found("Invalid practice."))?;
    let (answer, entity) = f(p, params)?;
    w.record(practice, operation, &entity, redact(params.to_map()));
    Ok(answer)
}

/// Masks card data before it reaches the ledger: the ledger is test-visible and logged.
fn redact(mut m: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if let Some(pan) = m.get_mut("accountnumber") {
        let last4: String = pan
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        *pan = format!("************{last4}");
    }
    m.remove("cardsecuritycode");
    m.remove("trackdata");
    m
}

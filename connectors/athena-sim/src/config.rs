//! Simulator configuration: one plain struct whose defaults suit in-process tests, deserialisable
//! from TOML (`athena-sim --config sim.toml`) and overridable from command-line flags.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that shapes one simulated athenahealth environment.
///
/// `Default` gives test-friendly values (no throttling, no subscription delay, one practice).
/// Construct with `SimConfig { qps_limit: Some(5), ..Default::default() }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// OAuth client id accepted by `POST /oauth2/v1/token` (Basic auth user).
    pub client_id: String,
    /// OAuth client secret accepted by the token endpoint (Basic auth password).
    pub client_secret: String,
    /// Practice ids served; each is seeded with departments, providers, patients and open slots.
    pub practices: Vec<u64>,
    /// Lifetime of an issued access token; afterwards the token is rejected with 401.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Delay before a subscribe/unsubscribe takes effect (athena: up to 5 min prod, 10-15 min preview).
    #[serde(with = "humantime_serde")]
    pub subscription_delay: Duration,
    /// Sustained requests per second on API routes (token bucket over 1 s); `None` = unthrottled.
    pub qps_limit: Option<u32>,
    /// HTTP status used when throttling: 403 (Mashery style, non-JSON body) or 429.
    pub throttle_status: u16,
    /// Daily request quota reported in `X-RateLimit-Limit` and enforced (resets at 00:00 GMT).
    pub daily_quota: u64,
    /// Seed for the synthetic data and the change generator.
    pub seed: u64,
    /// Background change generator; `None` = only `SimState::generate` produces changes.
    pub generator: Option<GeneratorConfig>,
    /// Token grants allowed per minute (athena preview: 5, production: 50). Extra field beyond
    /// the original contract.
    pub token_rate_limit_per_minute: u32,
    /// `Retry-After` seconds sent with throttling answers; `None` = no header (athena: none observed).
    pub throttle_retry_after: Option<u64>,
    /// How many polls of a bulk-export status URL answer 202 before the manifest is ready.
    pub export_polls: u32,
    /// `Retry-After` seconds sent on a 202 bulk-export status answer.
    pub export_retry_after: u64,
    /// Maximum lines per NDJSON file of a bulk export; a type with more lines is split.
    pub export_max_lines: usize,
    /// How long a failed push notification is retried before it is dead-lettered (athena: 1 h).
    #[serde(with = "humantime_serde")]
    pub push_retry_for: Duration,
    /// Pause between push delivery attempts.
    #[serde(with = "humantime_serde")]
    pub push_retry_interval: Duration,
    /// Scopes the token endpoint never grants even when asked (an app that lacks them in the
    /// Developer Console); requests needing them get the gateway's 403.
    pub withheld_scopes: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            practices: vec![195_900],
            token_ttl: Duration::from_secs(3600),
            subscription_delay: Duration::ZERO,
            qps_limit: None,
            throttle_status: 403,
            daily_quota: 50_000,
            seed: 42,
            generator: None,
            token_rate_limit_per_minute: 5,
            throttle_retry_after: None,
            export_polls: 1,
            export_retry_after: 1,
            export_max_lines: 1000,
            push_retry_for: Duration::from_secs(3600),
            push_retry_interval: Duration::from_secs(1),
            withheld_scopes: Vec::new(),
        }
    }
}

/// The kinds of change the generator can make. An empty mix means all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Register a new patient.
    NewPatient,
    /// Update a patient's demographics.
    UpdatePatient,
    /// Book an open slot for a patient.
    Booking,
    /// Cancel a booked appointment.
    Cancellation,
    /// Check in a booked appointment.
    CheckIn,
    /// Add a problem to a patient's chart.
    Problem,
    /// Add an allergy to a patient's chart.
    Allergy,
    /// Add a historical medication to a patient's chart.
    Medication,
    /// Add a lab result for a patient.
    LabResult,
    /// Create a claim for a checked-in appointment.
    Claim,
    /// Update a provider record.
    Provider,
    /// Record a historical vaccine (Immunization).
    Vaccine,
    /// Write a prescription (MedicationRequest).
    Prescription,
    /// Add an imaging result (DiagnosticReport).
    ImagingResult,
    /// Place a referral order (ServiceRequest).
    Referral,
    /// Sign off a visit (Encounter, vital signs, progress note, encounter diagnosis).
    Visit,
    /// Change a patient's insurance (Coverage).
    Coverage,
    /// Update an earlier clinical record (lab result corrected, prescription stopped, ...).
    ClinicalUpdate,
    /// A change on one of the remaining feeds (family history, patient cases, referring
    /// providers, provider numbers, CCM enrolment, charge codes, stays, OR and surgery cases).
    OtherFeed,
}

impl ChangeKind {
    /// Every kind, in the order the generator's weights are defined.
    pub const ALL: [ChangeKind; 19] = [
        ChangeKind::NewPatient,
        ChangeKind::UpdatePatient,
        ChangeKind::Booking,
        ChangeKind::Cancellation,
        ChangeKind::CheckIn,
        ChangeKind::Problem,
        ChangeKind::Allergy,
        ChangeKind::Medication,
        ChangeKind::LabResult,
        ChangeKind::Claim,
        ChangeKind::Provider,
        ChangeKind::Vaccine,
        ChangeKind::Prescription,
        ChangeKind::ImagingResult,
        ChangeKind::Referral,
        ChangeKind::Visit,
        ChangeKind::Coverage,
        ChangeKind::ClinicalUpdate,
        ChangeKind::OtherFeed,
    ];
}

/// Background change generator settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Steps per second of the background task (0 = no background task).
    pub rate_per_sec: f64,
    /// Practices to change; empty = every configured practice.
    pub practices: Vec<u64>,
    /// Kinds of change to make, chosen uniformly; empty = all kinds.
    pub mix: Vec<ChangeKind>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate_per_sec: 1.0,
            practices: Vec::new(),
            mix: Vec::new(),
        }
    }
}

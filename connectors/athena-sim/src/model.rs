//! The simulated athenaOne data: one `Practice` per practice id with its departments, providers,
//! patients, appointment slots, claims, payments, documents, insurances, chart items and
//! changed-data feeds. Plain data behind the single mutex in `SimState`; no I/O here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::feeds::{FEEDS, FeedState, feed_def};
use crate::util::{eastern_stamp, today_eastern, us_date};

/// Obviously fake first names for synthetic patients and providers.
pub const FIRST_NAMES: &[&str] = &[
    "Testa",
    "Samplia",
    "Demoe",
    "Fakey",
    "Mocka",
    "Placeholda",
    "Dummin",
    "Synthia",
    "Exemplo",
    "Fixturo",
];
/// Obviously fake surnames for synthetic patients and providers.
pub const LAST_NAMES: &[&str] = &[
    "Testperson",
    "Sampleton",
    "Demoson",
    "Fakerly",
    "Mockwell",
    "Placeholder",
    "Dummyfield",
    "Synthetica",
    "Fixtureman",
    "Examplar",
];

/// Procedure codes the simulated fee schedule knows; others are a business failure.
pub const PROCEDURE_CODES: &[&str] = &[
    "99201", "99202", "99203", "99204", "99205", "99211", "99212", "99213", "99214", "99215",
    "99385", "99395", "90471", "36415", "81002", "85025", "80053", "93000",
];

/// A patient the tests seed directly (`SimState::add_patient`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NewPatient {
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Date of birth.
    pub dob: NaiveDate,
    /// Registration department (default "1", seeded in every practice).
    pub department_id: String,
    /// Optional email.
    pub email: Option<String>,
    /// Optional mobile phone.
    pub mobilephone: Option<String>,
    /// Optional sex (`M`/`F`).
    pub sex: Option<String>,
    /// Optional zip code.
    pub zip: Option<String>,
}

impl Default for NewPatient {
    fn default() -> Self {
        NewPatient {
            firstname: "Testa".into(),
            lastname: "Testperson".into(),
            dob: NaiveDate::from_ymd_opt(1980, 1, 1).expect("valid date"),
            department_id: "1".into(),
            email: None,
            mobilephone: None,
            sex: None,
            zip: Some("02472".into()),
        }
    }
}

impl NewPatient {
    /// A patient with the given name and date of birth, other fields defaulted.
    pub fn new(firstname: &str, lastname: &str, dob: NaiveDate) -> Self {
        NewPatient {
            firstname: firstname.into(),
            lastname: lastname.into(),
            dob,
            ..Default::default()
        }
    }
}

/// A department.
#[derive(Debug, Clone)]
pub struct Department {
    /// Department id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A rendering provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Provider id.
    pub id: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Specialty.
    pub specialty: String,
    /// Home department.
    pub department_id: String,
    /// Last change.
    pub modified: DateTime<Utc>,
}

impl Provider {
    /// The `GET /providers/{id}` shape.
    pub fn to_json(&self) -> Value {
        json!({
            "providerid": self.id.parse::<u64>().unwrap_or_default(), // athena: a number here
            "firstname": self.firstname, "lastname": self.lastname,
            "displayname": format!("{} {}", self.firstname, self.lastname),
            "specialty": self.specialty, "providertype": "MD", "entitytype": "Person",
            "homedepartment": self.department_id, "billable": true,
            "lastmodified": eastern_stamp(self.modified),
        })
    }
}

/// A patient: athena's flat string fields.
#[derive(Debug, Clone)]
pub struct Patient {
    /// Patient id.
    pub id: u64,
    /// Demographic fields as sent in forms (`firstname`, `dob` MM/DD/YYYY, …).
    pub fields: BTreeMap<String, String>,
    /// Last change.
    pub modified: DateTime<Utc>,
}

impl Patient {
    /// The `GET /patients/{id}` element shape.
    pub fn to_json(&self) -> Value {
        let mut m: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        m.insert("patientid".into(), json!(self.id.to_string()));
        m.entry("status").or_insert(json!("active"));
        m.insert("lastmodified".into(), json!(eastern_stamp(self.modified)));
        Value::Object(m)
    }

    /// A field, empty when absent.
    pub fn field(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }

    /// The registration department.
    pub fn department(&self) -> Option<String> {
        self.fields.get("departmentid").cloned()
    }
}

/// An appointment slot, open or booked.
#[derive(Debug, Clone)]
pub struct Appointment {
    /// Appointment id (the slot id; booking keeps it).
    pub id: u64,
    /// Department.
    pub department_id: String,
    /// Provider.
    pub provider_id: String,
    /// Appointment type.
    pub appointment_type_id: String,
    /// Date.
    pub date: NaiveDate,
    /// Start `HH:MM`.
    pub start_time: String,
    /// Minutes.
    pub duration: u32,
    /// `o` open, `f` booked, `2` checked in, `3` checked out, `4` charge entered, `x` cancelled.
    pub status: String,
    /// Booked patient.
    pub patient_id: Option<u64>,
    /// Cancel reason.
    pub cancel_reason_id: Option<String>,
    /// Cancelled at (Eastern stamp).
    pub cancelled: Option<String>,
    /// Booked at (Eastern stamp).
    pub scheduled: Option<String>,
    /// `startcheckin` was called.
    pub checkin_started: bool,
    /// Check-in stamp.
    pub checkin: Option<String>,
    /// Id of the appointment this one replaced / was replaced by.
    pub rescheduled_appointment_id: Option<u64>,
    /// Claim created from this appointment.
    pub claim_id: Option<u64>,
    /// Free-text booking note.
    pub booking_note: Option<String>,
    /// Held by `PUT /appointments/{id}/freeze` (an open slot nobody can book until unfrozen).
    pub frozen: bool,
    /// Supervising provider set by `PUT /appointments/booked/{id}`.
    pub supervising_provider_id: Option<String>,
    /// Notes added by `POST /appointments/{id}/notes`.
    pub notes: Vec<AppointmentNote>,
    /// Last change.
    pub modified: DateTime<Utc>,
}

/// A note on an appointment (`POST /appointments/{id}/notes`).
#[derive(Debug, Clone)]
pub struct AppointmentNote {
    /// Note id.
    pub id: u64,
    /// The text. May hold PHI.
    pub text: String,
    /// Shown on the schedule.
    pub display_on_schedule: bool,
    /// Created (Eastern stamp).
    pub created: String,
}

impl Appointment {
    /// The `GET /appointments/{id}` element shape (ids as strings, `duration` a number).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "appointmentid": self.id.to_string(),
            "departmentid": self.department_id,
            "providerid": self.provider_id,
            "appointmenttypeid": self.appointment_type_id,
            "appointmenttype": if self.appointment_type_id == "2" { "New Patient" } else { "Office Visit" },
            "date": us_date(self.date),
            "starttime": self.start_time,
            "duration": self.duration,
            "appointmentstatus": self.status,
            "lastmodified": eastern_stamp(self.modified),
            "lastmodifiedby": "API-SIM",
        });
        let m = v.as_object_mut().expect("object");
        if self.status == "o" {
            m.insert("reasonid".into(), json!(["-1"]));
        }
        let mut put = |k: &str, val: &Option<String>| {
            if let Some(x) = val {
                m.insert(k.into(), json!(x));
            }
        };
        put("patientid", &self.patient_id.map(|p| p.to_string()));
        put("cancelreasonid", &self.cancel_reason_id);
        put("cancelleddatetime", &self.cancelled);
        put("scheduleddatetime", &self.scheduled);
        put("checkindatetime", &self.checkin);
        put(
            "rescheduledappointmentid",
            &self.rescheduled_appointment_id.map(|p| p.to_string()),
        );
        put("claimid", &self.claim_id.map(|p| p.to_string()));
        put("bookingnote", &self.booking_note);
        put("supervisingproviderid", &self.supervising_provider_id);
        // Guess: athena's flag name; present only on a frozen slot so other snapshots keep
        // their shape.
        if self.frozen {
            m.insert("frozenyn".into(), json!("Y"));
        }
        v
    }
}

/// A claim (charge entry).
#[derive(Debug, Clone)]
pub struct Claim {
    /// Claim id.
    pub id: u64,
    /// Patient.
    pub patient_id: u64,
    /// Department.
    pub department_id: String,
    /// Supervising provider.
    pub supervising_provider_id: String,
    /// Rendering provider.
    pub rendering_provider_id: String,
    /// Service date.
    pub service_date: NaiveDate,
    /// Source appointment for appointment-based claims.
    pub appointment_id: Option<u64>,
    /// The `claimcharges` elements as sent.
    pub charges: Vec<Value>,
    /// Payments applied, in cents.
    pub paid_cents: i64,
    /// Last change.
    pub modified: DateTime<Utc>,
}

impl Claim {
    /// The `GET /claims/{id}` element shape.
    pub fn to_json(&self) -> Value {
        let charges: Vec<Value> = self
            .charges
            .iter()
            .map(|c| {
                json!({
                    "procedurecode": c.get("procedurecode").cloned().unwrap_or(Value::Null),
                    "units": c.get("units").cloned().unwrap_or(json!("1")),
                    "icd10code1": c.get("icd10code1").cloned().unwrap_or(Value::Null),
                    "chargeamount": "100.00",
                })
            })
            .collect();
        let mut v = json!({
            "claimid": self.id.to_string(),
            "patientid": self.patient_id.to_string(),
            "departmentid": self.department_id,
            "supervisingproviderid": self.supervising_provider_id,
            "renderingproviderid": self.rendering_provider_id,
            "servicedate": us_date(self.service_date),
            "billedservices": charges,
            "claimstatus": "HOLD",
            "paidamount": format!("{}.{:02}", self.paid_cents / 100, self.paid_cents % 100),
            "lastmodified": eastern_stamp(self.modified),
        });
        if let Some(a) = self.appointment_id {
            v["appointmentid"] = json!(a.to_string());
        }
        v
    }
}

/// A recorded or collected payment.
#[derive(Debug, Clone)]
pub struct Payment {
    /// Payment batch / receipt id.
    pub id: u64,
    /// Patient.
    pub patient_id: u64,
    /// `CASH`, `CHECK`, a card method, or `CARD` for collectpayment.
    pub method: String,
    /// Total amount in cents.
    pub amount_cents: i64,
    /// When it was accepted.
    pub at: DateTime<Utc>,
}

/// A clinical document uploaded through the API.
#[derive(Debug, Clone)]
pub struct ClinicalDocument {
    /// Document id.
    pub id: u64,
    /// Patient.
    pub patient_id: u64,
    /// Form fields except the attachment itself.
    pub fields: BTreeMap<String, String>,
    /// Decoded attachment size.
    pub attachment_bytes: usize,
    /// Upload time.
    pub created: DateTime<Utc>,
}

/// A patient insurance package.
#[derive(Debug, Clone)]
pub struct Insurance {
    /// Insurance id.
    pub id: u64,
    /// Patient.
    pub patient_id: u64,
    /// Form fields as sent.
    pub fields: BTreeMap<String, String>,
}

/// Kinds of chart items the generator makes (each has its own feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// `chart/healthhistory/problems`.
    Problem,
    /// `chart/healthhistory/allergies`.
    Allergy,
    /// `chart/healthhistory/medication`.
    Medication,
    /// `labresults`.
    LabResult,
}

/// A chart item snapshot.
#[derive(Debug, Clone)]
pub struct ChartItem {
    /// Item id.
    pub id: u64,
    /// Kind.
    pub kind: ChartKind,
    /// Patient.
    pub patient_id: u64,
    /// Department.
    pub department_id: String,
    /// The item as athena shows it.
    pub json: Value,
    /// Last change.
    pub modified: DateTime<Utc>,
}

/// Per-practice id counters (athena ids are numbers, sent as strings).
#[derive(Debug, Clone)]
pub struct IdGen {
    /// Next patient id.
    pub patient: u64,
    /// Next appointment id.
    pub appointment: u64,
    /// Next claim id.
    pub claim: u64,
    /// Next payment batch id.
    pub payment: u64,
    /// Next document id.
    pub document: u64,
    /// Next insurance id.
    pub insurance: u64,
    /// Next chart item id.
    pub chart: u64,
    /// Next clinical FHIR resource number (`crate::clinical`).
    pub clinical: u64,
    /// Next appointment note id.
    pub note: u64,
}

impl Default for IdGen {
    fn default() -> Self {
        // Patient ids start at the documented sandbox test patients (60178-60184).
        IdGen {
            patient: 60_178,
            appointment: 1_000_001,
            claim: 50_001,
            payment: 501,
            document: 9_001,
            insurance: 801,
            chart: 3_001,
            clinical: 7_000_001,
            note: 4_001,
        }
    }
}

fn bump(c: &mut u64) -> u64 {
    let v = *c;
    *c += 1;
    v
}

/// One simulated practice.
#[derive(Debug, Clone)]
pub struct Practice {
    /// Practice id.
    pub id: u64,
    /// Departments.
    pub departments: Vec<Department>,
    /// Providers by id.
    pub providers: BTreeMap<String, Provider>,
    /// Patients by id.
    pub patients: BTreeMap<u64, Patient>,
    /// Appointments (open and booked) by id.
    pub appointments: BTreeMap<u64, Appointment>,
    /// Claims by id.
    pub claims: BTreeMap<u64, Claim>,
    /// Payments in order.
    pub payments: Vec<Payment>,
    /// Clinical documents by id.
    pub documents: BTreeMap<u64, ClinicalDocument>,
    /// Insurances by id.
    pub insurances: BTreeMap<u64, Insurance>,
    /// Chart items in order.
    pub chart: Vec<ChartItem>,
    /// Chart writes of kinds `chart` does not hold (vitals, vaccines, ...; `api/chart.rs`).
    pub chart_writes: Vec<crate::api::chart::ChartWrite>,
    /// Clinical FHIR resources by logical id (`crate::clinical`).
    pub clinical: BTreeMap<String, crate::clinical::ClinicalResource>,
    /// Changed-data feeds by path.
    pub feeds: BTreeMap<&'static str, FeedState>,
    /// Id counters.
    pub ids: IdGen,
    /// Changes waiting for the push notifier (`push.rs`).
    pub push_outbox: Vec<crate::push::PushChange>,
    /// Latest changed-data snapshot of records push notifications name only by identifier
    /// (lab and imaging results, orders, patient cases, referring providers), by (feed, id),
    /// for the reads of `api/records.rs`.
    pub records: BTreeMap<(&'static str, String), Value>,
}

impl Practice {
    /// A practice seeded deterministically from `seed`: 3 departments, 4 providers,
    /// 8 patients, and 6 open slots per provider per day for the next 7 days from tomorrow.
    pub fn seeded(id: u64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ id);
        let now = Utc::now();
        let departments = [
            ("1", "Sim Clinic North"),
            ("21", "Sim Clinic South"),
            ("150", "Sim Clinic East"),
        ]
        .iter()
        .map(|(i, n)| Department {
            id: (*i).into(),
            name: (*n).into(),
        })
        .collect::<Vec<_>>();
        let mut p = Practice {
            id,
            departments,
            providers: BTreeMap::new(),
            patients: BTreeMap::new(),
            appointments: BTreeMap::new(),
            claims: BTreeMap::new(),
            payments: Vec::new(),
            documents: BTreeMap::new(),
            insurances: BTreeMap::new(),
            chart: Vec::new(),
            chart_writes: Vec::new(),
            clinical: BTreeMap::new(),
            feeds: FEEDS
                .iter()
                .map(|f| (f.path, FeedState::default()))
                .collect(),
            ids: IdGen::default(),
            push_outbox: Vec::new(),
            records: BTreeMap::new(),
        };
        for (i, pid) in ["71", "72", "73", "74"].iter().enumerate() {
            p.providers.insert(
                (*pid).into(),
                Provider {
                    id: (*pid).into(),
                    firstname: FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())].into(),
                    lastname: format!("Docsim{}", i + 1),
                    specialty: [
                        "Family Medicine",
                        "Internal Medicine",
                        "Pediatrics",
                        "Cardiology",
                    ][i]
                        .into(),
                    department_id: p.departments[i % 3].id.clone(),
                    modified: now,
                },
            );
        }
        for i in 0..8 {
            let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
            // The shared sandbox practice carries athena's documented "Sandboxtest" patients.
            let last = if id == 195_900 {
                "Sandboxtest"
            } else {
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            };
            let dob = NaiveDate::from_ymd_opt(
                1950 + rng.random_range(0..50),
                rng.random_range(1..=12),
                rng.random_range(1..=28),
            )
            .expect("valid date");
            let np = NewPatient {
                firstname: first.into(),
                lastname: format!(
                    "{last}{}",
                    if i == 0 { String::new() } else { i.to_string() }
                ),
                dob,
                department_id: p.departments[i % 3].id.clone(),
                email: Some(format!("patient{i}@example.invalid")),
                ..Default::default()
            };
            let patient = p.insert_patient(patient_fields(&np), now);
            p.seed_clinical(patient, now);
        }
        let tomorrow = today_eastern() + ChronoDuration::days(1);
        let provs: Vec<(String, String)> = p
            .providers
            .values()
            .map(|pr| (pr.department_id.clone(), pr.id.clone()))
            .collect();
        for day in 0..7 {
            for (dept, prov) in &provs {
                p.create_slots(
                    dept,
                    prov,
                    "82",
                    tomorrow + ChronoDuration::days(day),
                    &["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"],
                    now,
                );
            }
        }
        p
    }

    /// Inserts a patient and returns its id (no change row; callers record one).
    pub fn insert_patient(&mut self, fields: BTreeMap<String, String>, now: DateTime<Utc>) -> u64 {
        let id = bump(&mut self.ids.patient);
        self.patients.insert(
            id,
            Patient {
                id,
                fields,
                modified: now,
            },
        );
        id
    }

    /// Creates open slots and returns their ids in time order.
    pub fn create_slots(
        &mut self,
        dept: &str,
        provider: &str,
        appointment_type: &str,
        date: NaiveDate,
        times: &[&str],
        now: DateTime<Utc>,
    ) -> Vec<u64> {
        times
            .iter()
            .map(|t| {
                let id = bump(&mut self.ids.appointment);
                self.appointments.insert(
                    id,
                    Appointment {
                        id,
                        department_id: dept.into(),
                        provider_id: provider.into(),
                        appointment_type_id: appointment_type.into(),
                        date,
                        start_time: (*t).into(),
                        duration: 30,
                        status: "o".into(),
                        patient_id: None,
                        cancel_reason_id: None,
                        cancelled: None,
                        scheduled: None,
                        checkin_started: false,
                        checkin: None,
                        rescheduled_appointment_id: None,
                        claim_id: None,
                        booking_note: None,
                        frozen: false,
                        supervising_provider_id: None,
                        notes: Vec::new(),
                        modified: now,
                    },
                );
                id
            })
            .collect()
    }

    /// Queues a change on `feed` if a subscription covers it.
    pub fn change(
        &mut self,
        feed: &str,
        event: &str,
        dept: Option<String>,
        patient: Option<String>,
        snapshot: Value,
    ) {
        let def = feed_def(feed).expect("known feed");
        if let Some(k) = crate::api::records::kept_id_field(def.path)
            && let Some(id) = snapshot
                .get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
        {
            self.records.insert((def.path, id), snapshot.clone());
        }
        crate::push::record(
            &mut self.push_outbox,
            def.path,
            event,
            dept.clone(),
            patient.clone(),
            &snapshot,
        );
        if let Some(f) = self.feeds.get_mut(def.path) {
            f.record(def, Utc::now(), event, dept, patient, snapshot);
        }
    }

    /// Queues an appointment change.
    pub fn appointment_changed(&mut self, id: u64, event: &str) {
        if let Some(a) = self.appointments.get(&id) {
            let (d, p, s) = (
                a.department_id.clone(),
                a.patient_id.map(|x| x.to_string()),
                a.to_json(),
            );
            self.change("appointments", event, Some(d), p, s);
        }
    }

    /// Queues a patient change.
    pub fn patient_changed(&mut self, id: u64, event: &str) {
        if let Some(p) = self.patients.get(&id) {
            let (d, s) = (p.department(), p.to_json());
            self.change("patients", event, d, Some(id.to_string()), s);
        }
    }

    /// Queues a claim change.
    pub fn claim_changed(&mut self, id: u64) {
        if let Some(c) = self.claims.get(&id) {
            let (d, p, s) = (
                c.department_id.clone(),
                c.patient_id.to_string(),
                c.to_json(),
            );
            self.change("claims", "UpdateClaim", Some(d), Some(p), s);
        }
    }

    /// Allocates the next id of a kind.
    pub fn next_claim_id(&mut self) -> u64 {
        bump(&mut self.ids.claim)
    }
    /// Allocates the next payment id.
    pub fn next_payment_id(&mut self) -> u64 {
        bump(&mut self.ids.payment)
    }
    /// Allocates the next document id.
    pub fn next_document_id(&mut self) -> u64 {
        bump(&mut self.ids.document)
    }
    /// Allocates the next insurance id.
    pub fn next_insurance_id(&mut self) -> u64 {
        bump(&mut self.ids.insurance)
    }
    /// Allocates the next appointment note id.
    pub fn next_note_id(&mut self) -> u64 {
        bump(&mut self.ids.note)
    }
    /// Allocates the next chart item id.
    pub fn next_chart_id(&mut self) -> u64 {
        bump(&mut self.ids.chart)
    }

    /// Whether `id` is a department of this practice.
    pub fn has_department(&self, id: &str) -> bool {
        self.departments.iter().any(|d| d.id == id)
    }
}

/// The stored form fields of a seeded patient.
pub fn patient_fields(p: &NewPatient) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("firstname".into(), p.firstname.clone());
    f.insert("lastname".into(), p.lastname.clone());
    f.insert("dob".into(), us_date(p.dob));
    f.insert("departmentid".into(), p.department_id.clone());
    for (k, v) in [
        ("email", &p.email),
        ("mobilephone", &p.mobilephone),
        ("sex", &p.sex),
        ("zip", &p.zip),
    ] {
        if let Some(v) = v {
            f.insert(k.into(), v.clone());
        }
    }
    f
}

/// One accepted write, as recorded by the simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 1-based order of acceptance across all practices.
    pub seq: u64,
    /// Practice written to.
    pub practice_id: u64,
    /// Operation name in command style (`BookAppointment`, `CreatePatient`, …).
    pub operation: String,
    /// Id of the entity written (appointment id, patient id, claim id, …).
    pub entity_id: String,
    /// The request's form fields (card numbers masked, `source=generator` for generated writes).
    pub params: BTreeMap<String, String>,
}

//! The chaos test of issue 11: the real `athena-connect run` binary with a changed-data source,
//! a write-back sink and fhir-push (receiver and inflation) under mixed load (the simulator's
//! change generator, a few hundred commands of every type, a stream of signed notifications),
//! through, in sequence:
//! 1. the binary started while Kafka is down (then Kafka comes up);
//! 2. Kafka stopped for 60 s mid-run;
//! 3. the schema registry unreachable for 60 s;
//! 4. athena answering 5xx for 60 s;
//! 5. one poison notification and one poison command.
//!
//! After each fault every connector is RUNNING again without any admin call, and `/readyz`
//! answered 503 whenever a connector was seen FAILED (status and `/readyz` polled every ~200 ms
//! through the whole run). At the end: every change the simulator handed out is on Kafka (by
//! event id), exactly one result per command, no write twice in the simulator's ledger, every
//! notification answered 2xx inflated, the poisons in their dead-letter topics.
//!
//! Kafka is stopped here, so the test runs its own broker (`./dev broker start`, the jars
//! `./dev up` fetched, its own ports and data dir) and never touches the shared one; the schemas
//! stay in the shared registry, reached through a [`TcpProxy`] that the test stops for the
//! registry outage.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use athena_client::api::changed::Feed;
use athena_connect_tests::{Stack, TcpProxy, unique};
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::{Fault, FaultRule, NewPatient, RunningSim, SimConfig};
use changed_data_source::events;
use common::*;
use connector_core::avro::{AvroCodec, AvroRecord, SubjectStrategy};
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

/// The feeds the changed-data source reads (the generator writes to all of them).
const FEEDS: &[Feed] = &[
    Feed::Patients,
    Feed::Appointments,
    Feed::Problems,
    Feed::LabResults,
    Feed::Claims,
];
/// The three connectors of the run.
const CONNECTORS: &[&str] = &["cds", "wb", "push"];
/// The push secret (the binary reads it from the environment, as in production).
const PUSH_SECRET: &str = "chaos-push-secret-0123456789";
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_secs(60);
/// The focus that crash-looped the push connector in issue 11.
const POISON_FOCUS: &str = "Encounter/a-195900.encounter-1/_history/2";

// ---------------------------------------------------------------------------------------------
// The private broker.

/// A KRaft broker of this test alone, started and stopped through `./dev broker`; stopped on
/// drop (also on panic).
struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
}

impl Broker {
    fn new() -> Broker {
        Broker {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            controller_port: free_port(),
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn dev(&self, action: &str) -> Result<(), String> {
        let dev = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev"));
        let out = std::process::Command::new(&dev)
            .args(["broker", action, "--dir"])
            .arg(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--controller-port", &self.controller_port.to_string()])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", dev.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        Err(format!(
            "`./dev broker {action} --dir {} --port {} --controller-port {}` failed ({}):\n{}",
            self.dir.path().display(),
            self.port,
            self.controller_port,
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    /// Starts the broker and waits until it answers; a failure fails the test, saying how.
    async fn start(&self) {
        // One retry: a JVM start on a loaded machine can fail for reasons a second try does not
        // share; two failures in a row fail the test with both reasons.
        let r = tokio::task::block_in_place(|| {
            self.dev("start").or_else(|first| {
                eprintln!("chaos: private broker start failed once, retrying: {first}");
                self.dev("start")
                    .map_err(|second| format!("{first}\nthen: {second}"))
            })
        });
        if let Err(e) = r {
            panic!(
                "the chaos test needs a private Kafka broker and could not start one: {e}\n\
                 It runs the Kafka jars that `./dev up` fetched into the cache (the repo's .cache, or \
                 ATHENA_CONNECT_CACHE) and needs Java 17+; run `./dev up` once, or point \
                 ATHENA_CONNECT_CACHE at a cache that has them."
            );
        }
    }

    async fn stop(&self) {
        let r = tokio::task::block_in_place(|| self.dev("stop"));
        r.unwrap_or_else(|e| panic!("stop the private broker: {e}"));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Err(e) = self.dev("stop") {
            eprintln!("chaos: could not stop the private broker: {e}");
        }
    }
}

/// Stops the proxy on drop (its task would otherwise outlive a panic only as long as the
/// runtime, but say so explicitly).
struct ProxyGuard(TcpProxy);

impl Drop for ProxyGuard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Watching status and /readyz.

/// What the monitor saw during one phase.
#[derive(Default, Debug)]
struct PhaseObs {
    /// FAILED observations per connector.
    failed: BTreeMap<String, u64>,
    /// `/readyz` answers 503.
    ready_503: u64,
    /// Polls.
    polls: u64,
    /// Restart counts at the start of the phase and the latest seen.
    restarts_first: BTreeMap<String, u64>,
    restarts_last: BTreeMap<String, u64>,
    /// Seconds from the end of the fault until every connector was RUNNING.
    heal_secs: Option<f64>,
}

#[derive(Default)]
struct Monitor {
    phase: String,
    phases: Vec<(String, PhaseObs)>,
    /// Observations where a connector stayed FAILED (same restart count) around a `/readyz`
    /// answer that was not 503 naming it.
    inconsistent: Vec<String>,
    /// The last status JSON seen.
    last: Value,
}

impl Monitor {
    fn current(&mut self) -> &mut PhaseObs {
        if self.phases.last().map(|(p, _)| p != &self.phase) != Some(false) {
            let name = self.phase.clone();
            self.phases.push((name, PhaseObs::default()));
        }
        &mut self.phases.last_mut().expect("phase").1
    }
}

fn state_of(v: &Value, c: &str) -> String {
    v[c]["status"]["connector"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn restarts_of(v: &Value, c: &str) -> u64 {
    v[c]["status"]["restarts"].as_u64().unwrap_or(0)
}

async fn get(client: &reqwest::Client, url: &str, auth: bool) -> Option<(u16, String)> {
    let mut req = client.get(url);
    if auth {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    let resp = req.send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.unwrap_or_default()))
}

async fn statuses(client: &reqwest::Client, admin: &str) -> Option<Value> {
    let (code, text) = get(client, &format!("{admin}/connectors?expand=status"), true).await?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&text).ok()
}

/// Polls status, `/readyz` and status again every ~200 ms until `stop`.
fn spawn_monitor(
    admin: String,
    mon: Arc<Mutex<Monitor>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("client");
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(before) = statuses(&client, &admin).await else {
                continue;
            };
            let Some((ready, body)) = get(&client, &format!("{admin}/readyz"), false).await else {
                continue;
            };
            let Some(after) = statuses(&client, &admin).await else {
                continue;
            };
            let mut m = mon.lock().unwrap();
            let phase = m.phase.clone();
            let mut bad = Vec::new();
            {
                let o = m.current();
                o.polls += 1;
                if ready == 503 {
                    o.ready_503 += 1;
                }
                for c in CONNECTORS {
                    let r = restarts_of(&before, c);
                    o.restarts_first.entry(c.to_string()).or_insert(r);
                    o.restarts_last
                        .insert(c.to_string(), restarts_of(&after, c));
                    if state_of(&before, c) == "FAILED" {
                        *o.failed.entry(c.to_string()).or_default() += 1;
                        // FAILED before and after the /readyz call with no restart in between:
                        // it was FAILED while /readyz answered.
                        let still = state_of(&after, c) == "FAILED" && restarts_of(&after, c) == r;
                        if still && (ready != 503 || !body.contains(c)) {
                            bad.push(format!(
                                "{phase}: {c} FAILED throughout, /readyz answered {ready} {body}"
                            ));
                        }
                    }
                }
            }
            m.inconsistent.extend(bad);
            m.last = after;
        }
    })
}

/// Starts a new phase of the monitor (and says so on stderr, for a run that hangs).
fn phase(mon: &Mutex<Monitor>, name: &str, t0: Instant) {
    eprintln!("chaos: {:>4.0} s: {name}", t0.elapsed().as_secs_f64());
    mon.lock().unwrap().phase = name.into();
}

/// Waits until every connector is RUNNING and `/readyz` answers 200 (no admin call but reads);
/// returns the seconds it took.
async fn wait_all_running(admin: &str, what: &str, proc: &Proc) -> f64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(180);
    loop {
        if let Some(v) = statuses(&client, admin).await
            && CONNECTORS.iter().all(|c| state_of(&v, c) == "RUNNING")
            && get(&client, &format!("{admin}/readyz"), false)
                .await
                .is_some_and(|(code, _)| code == 200)
        {
            return start.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            let v = statuses(&client, admin).await;
            let out = proc.output();
            let tail: Vec<&str> = out.lines().rev().take(60).collect();
            panic!(
                "{what}: not every connector RUNNING and ready 180 s after the fault ended: {v:?}\n\
                 last output lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Load.

/// Notifications the test posted: (patient id, HTTP status or 0 when the request failed).
type Posted = Arc<Mutex<Vec<(String, u16)>>>;

/// Every ~250 ms: a new patient in the simulator and a signed `Patient.update` notification
/// about it.
fn spawn_notifier(
    sim: athena_sim::SimState,
    url: String,
    posted: Posted,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let patient = sim.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Pusha",
                    &format!("Chaostest{n}"),
                    chrono::NaiveDate::from_ymd_opt(1970 + (n % 40) as i32, 1, 1).unwrap(),
                ),
            );
            let body = notification(
                &format!("chaos-{}", uuid_like(n)),
                n,
                "Patient.update",
                &format!("Patient/a-{PRACTICE}.E-{patient}"),
            );
            let code = post_signed(&client, &url, PUSH_SECRET, &body).await;
            posted.lock().unwrap().push((patient, code));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

fn uuid_like(n: u64) -> String {
    format!("{}-{n}", unique("ev").rsplit('.').next().unwrap_or("x"))
}

/// A command to produce: topic, key, encoded value, command id, command type.
type Rec = (String, String, Vec<u8>, String, &'static str);

/// Produces Avro commands to the private broker, with schemas in the shared registry.
struct Commands {
    producer: FutureProducer,
    codec: AvroCodec,
    names: SinkNames,
    /// Every command id produced, with its type and the entity its key names (a slot for the
    /// appointment commands, a patient for the others).
    ids: Vec<(String, &'static str, String)>,
}

impl Commands {
    async fn encode<T: AvroRecord>(&self, topic: &str, v: &T) -> Vec<u8> {
        self.codec
            .encoder::<T>(topic)
            .await
            .expect("encoder")
            .encode(v)
            .expect("encode")
    }

    /// Encodes `v` for `topic` and queues it under `key`.
    async fn add<T: AvroRecord>(
        &self,
        recs: &mut Vec<Rec>,
        topic: &str,
        key: String,
        id: &str,
        v: &T,
        ty: &'static str,
    ) {
        let bytes = self.encode(topic, v).await;
        recs.push((topic.to_string(), key, bytes, id.to_string(), ty));
    }

    /// One batch of every command type: creates, updates, bookings, cancels and check-ins of
    /// booked slots, reschedules, documents, insurances, cash payments, stand-alone claims.
    /// All sends first, then every acknowledgement awaited.
    async fn batch(&mut self, sim: &RunningSim, b: usize) {
        let pid = PRACTICE.to_string();
        let n = self.names.clone();
        let fresh = |tag: &str, i: usize| {
            sim.state.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Sampla",
                    &format!("Chaos{tag}{b}x{i}"),
                    chrono::NaiveDate::from_ymd_opt(1960 + i as i32, 1 + b as u32, 3).unwrap(),
                ),
            )
        };
        let booker = fresh("booker", 0);
        let slots = slots(sim, b, 12);
        let mut recs: Vec<Rec> = Vec::new();
        let id = |kind: &str, i: usize| format!("chaos-{b}-{kind}-{i}");
        for i in 0..5 {
            let c = CreatePatient {
                command_id: id("create", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                department_id: "1".into(),
                first_name: "Sampla".into(),
                last_name: format!("Created{b}x{i}"),
                dob: chrono::NaiveDate::from_ymd_opt(1990, 1 + b as u32, 1 + i as u32)
                    .unwrap()
                    .into(),
                sex: Some("F".into()),
                email: None,
                home_phone: None,
                mobile_phone: None,
                address1: None,
                city: None,
                state: None,
                zip: Some("02139".into()),
            };
            self.add(
                &mut recs,
                &n.patients,
                format!("195900/new-{b}-{i}"),
                &c.command_id,
                &c,
                "CreatePatient",
            )
            .await;
        }
        for i in 0..5 {
            let p = fresh("upd", i);
            let c = UpdatePatient {
                command_id: id("update", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: p.clone(),
                department_id: None,
                first_name: None,
                last_name: None,
                dob: None,
                sex: None,
                email: None,
                home_phone: None,
                mobile_phone: None,
                address1: None,
                city: Some("Boston".into()),
                state: None,
                zip: None,
                status: None,
            };
            self.add(
                &mut recs,
                &n.patients,
                format!("195900/{p}"),
                &c.command_id,
                &c,
                "UpdatePatient",
            )
            .await;
        }
        for (i, slot) in slots.iter().take(10).enumerate() {
            let c = BookAppointment {
                command_id: id("book", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                patient_id: booker.clone(),
                department_id: Some("1".into()),
                appointment_type_id: Some("82".into()),
                reason_id: None,
                booking_note: None,
                ignore_schedulable_permission: true,
                no_patient_case: false,
            };
            self.add(
                &mut recs,
                &n.appointments,
                format!("195900/{slot}"),
                &c.command_id,
                &c,
                "BookAppointment",
            )
            .await;
        }
        for (i, slot) in slots.iter().take(3).enumerate() {
            let c = CancelAppointment {
                command_id: id("cancel", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                patient_id: booker.clone(),
                cancel_reason_id: None,
                cancellation_reason: None,
            };
            self.add(
                &mut recs,
                &n.appointments,
                format!("195900/{slot}"),
                &c.command_id,
                &c,
                "CancelAppointment",
            )
            .await;
        }
        for (i, slot) in slots.iter().skip(3).take(3).enumerate() {
            let c = CheckInAppointment {
                command_id: id("checkin", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                patient_id: Some(booker.clone()),
            };
            self.add(
                &mut recs,
                &n.appointments,
                format!("195900/{slot}"),
                &c.command_id,
                &c,
                "CheckInAppointment",
            )
            .await;
        }
        for i in 0..2 {
            let (from, to) = (&slots[6 + i], &slots[10 + i]);
            let c = RescheduleAppointment {
                command_id: id("resched", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: from.clone(),
                new_appointment_id: to.clone(),
                patient_id: booker.clone(),
                cancel_reason_id: None,
                reason_id: None,
                reschedule_reason: None,
            };
            self.add(
                &mut recs,
                &n.appointments,
                format!("195900/{from}"),
                &c.command_id,
                &c,
                "RescheduleAppointment",
            )
            .await;
        }
        let service_date = chrono::Utc::now().date_naive() - chrono::Duration::days(2);
        for i in 0..5 {
            let p = fresh("misc", i);
            let key = format!("195900/{p}");
            let doc = UploadClinicalDocument {
                command_id: id("doc", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: p.clone(),
                department_id: "1".into(),
                document_subclass: "CLINICALDOCUMENT".into(),
                attachment: b"%PDF-1.4\n% synthetic chaos document\n%%EOF\n".to_vec(),
                attachment_type: "PDF".into(),
                original_filename: None,
                document_type_id: None,
                autoclose: false,
                observation_date: None,
                provider_id: None,
                internal_note: None,
            };
            self.add(
                &mut recs,
                &n.patients,
                key.clone(),
                &doc.command_id,
                &doc,
                "UploadClinicalDocument",
            )
            .await;
            let ins = AddInsurance {
                command_id: id("ins", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: p.clone(),
                insurance_package_id: "100".into(),
                sequence_number: 1,
                insurance_id_number: Some(format!("SYN{b}{i}")),
                policyholder_first_name: Some("Sampla".into()),
                policyholder_last_name: Some(format!("Chaosmisc{b}x{i}")),
                policyholder_dob: Some(
                    chrono::NaiveDate::from_ymd_opt(1960 + i as i32, 1 + b as u32, 3)
                        .unwrap()
                        .into(),
                ),
                policyholder_sex: Some("F".into()),
                relationship_to_insured_id: Some("1".into()),
            };
            self.add(
                &mut recs,
                &n.patients,
                key.clone(),
                &ins.command_id,
                &ins,
                "AddInsurance",
            )
            .await;
            let pay = RecordPayment {
                command_id: id("pay", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: p.clone(),
                department_id: "1".into(),
                payment_method: "CASH".into(),
                check_number: None,
                card_number_last4: None,
                copay_amount: None,
                appointment_id: None,
                other_amount: Some("25.00".into()),
                post_date: None,
                card: None,
            };
            self.add(
                &mut recs,
                &n.billing,
                key.clone(),
                &pay.command_id,
                &pay,
                "RecordPayment",
            )
            .await;
            let claim = CreateClaim {
                command_id: id("claim", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: None,
                patient_id: Some(p.clone()),
                department_id: Some("1".into()),
                supervising_provider_id: Some("71".into()),
                rendering_provider_id: None,
                service_date: Some(service_date.into()),
                primary_patient_insurance_id: None,
                charges: vec![ClaimCharge {
                    procedure_code: "99213".into(),
                    icd10_codes: vec!["Z0000".into()],
                    units: None,
                    unit_amount: None,
                    line_note: None,
                }],
            };
            self.add(
                &mut recs,
                &n.billing,
                key,
                &claim.command_id,
                &claim,
                "CreateClaim",
            )
            .await;
        }
        let futures: Vec<_> = recs
            .iter()
            .map(|(topic, key, bytes, _, _)| {
                self.producer
                    .send_result(FutureRecord::to(topic).key(key).payload(&bytes[..]))
                    .expect("enqueue")
            })
            .collect();
        for r in futures::future::join_all(futures).await {
            r.expect("delivery").expect("acknowledged");
        }
        self.ids.extend(recs.into_iter().map(|(_, key, _, id, ty)| {
            let entity = key.rsplit('/').next().unwrap_or_default().to_string();
            (id, ty, entity)
        }));
    }
}

/// `n` fresh open slots for batch `b` (own dates, so batches never share a slot).
fn slots(sim: &RunningSim, b: usize, n: usize) -> Vec<String> {
    let times: Vec<String> = (0..8).map(|i| format!("{:02}:00", 8 + i)).collect();
    let times: Vec<&str> = times.iter().map(String::as_str).collect();
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(40 + 3 * b as i64);
    let mut out = Vec::new();
    for provider in ["71", "72"] {
        out.extend(
            sim.state
                .add_open_slots(PRACTICE, "1", provider, date, &times),
        );
    }
    assert!(out.len() >= n, "{} slots", out.len());
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------------------------
// Reading back.

/// Reads `topic` from the beginning to its end (read_committed), every partition.
fn read_to_end(kafka: &KafkaConfig, topic: &str) -> Vec<OwnedMessage> {
    let mut cfg = kafka.consumer_config(&unique("chaos-reader"));
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cfg.create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut eof = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while eof.len() < parts.len() {
        assert!(Instant::now() < deadline, "reading {topic}: no end");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(m.detach()),
        }
    }
    out
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn keys(msgs: &[OwnedMessage]) -> HashSet<String> {
    msgs.iter()
        .filter_map(|m| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .collect()
}

/// Every row the simulator handed out on `feed`, as event ids (with multiplicity).
fn handed_out(sim: &athena_sim::SimState, feed: Feed) -> Vec<String> {
    let codec = events::codec_with_id(feed, 1).expect("codec");
    sim.with_practice(PRACTICE, |p| {
        p.feeds
            .get(feed.path())
            .map(|f| {
                f.rows
                    .iter()
                    .filter(|r| r.processed_at.is_some())
                    .map(|r| codec.event_id(&PRACTICE.to_string(), &r.snapshot))
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

fn pending(sim: &athena_sim::SimState) -> usize {
    FEEDS
        .iter()
        .map(|f| sim.pending_changes(PRACTICE, f.path()))
        .sum()
}

/// `athena_connect_errors_total{connector, class="permanent"}` from `/metrics` (0 when absent).
async fn permanent_errors(admin: &str, connector: &str) -> f64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let text = get(&client, &format!("{admin}/metrics"), true)
        .await
        .map(|(_, t)| t)
        .unwrap_or_default();
    let series =
        format!("athena_connect_errors_total{{connector=\"{connector}\",class=\"permanent\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `f` every 500 ms until it holds or `within` passes; returns whether it held.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if tokio::task::block_in_place(&mut f) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_connector_heals_through_kafka_registry_athena_outages_and_poison() {
    let t0 = Instant::now();
    let shared = Stack::get().await;
    let broker = Broker::new();
    // The binary and the test use the private broker; schemas stay in the shared registry.
    let stack = Stack {
        bootstrap: broker.bootstrap(),
        registry_url: shared.registry_url.clone(),
    };
    let kafka = stack.kafka();
    let url = url::Url::parse(&shared.registry_url).expect("registry URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port_or_known_default().unwrap_or(80)
    );
    let mut proxy = ProxyGuard(TcpProxy::new(&upstream));
    proxy.0.start().await;
    let mut proxied = url.clone();
    proxied.set_port(Some(proxy.0.addr().port())).unwrap();
    let proxied = proxied.as_str().trim_end_matches('/').to_string();

    let sim = RunningSim::start(SimConfig {
        token_rate_limit_per_minute: 10_000,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let names = SinkNames::new();
    let prefix = unique("chaos.cds");
    let push_port = free_port();
    let push_base = unique("chaos.push");
    let notifications = format!("{push_base}.notifications");
    let push_patients = format!("{push_base}.patients");
    let mut feeds = String::new();
    for f in FEEDS {
        let key = serde_json::to_value(f).unwrap();
        feeds.push_str(&format!(
            "[sources.changed_data.cds.feeds.{}]\n",
            key.as_str().unwrap()
        ));
    }
    let extra = format!(
        r#"
[restart]
backoff_initial = "200ms"
backoff_max = "3s"

[sources.changed_data.cds]
practices = ["{PRACTICE}"]
topic_prefix = "{prefix}."
state_topic = "{prefix}.state"
topic_partitions = 3
poll_interval = "200ms"
max_poll_interval = "1s"
page_size = 50
{feeds}
{sink}
{push}"#,
        sink = names.section("wb"),
        push = push_section("push", push_port, "${CHAOS_PUSH_SECRET}", &push_base),
    );
    let config = base_config(&stack, &sim.base_url, "json", &extra).replace(
        &format!("url = \"{}\"", shared.registry_url),
        &format!("url = \"{proxied}\""),
    );
    assert!(config.contains(&proxied), "{config}");

    // ---- Fault 1: the binary starts while Kafka is down.
    let mon = Arc::new(Mutex::new(Monitor::default()));
    phase(&mon, "1 Kafka down at start", t0);
    let mut proc = Proc::start(&config, &[("CHAOS_PUSH_SECRET", PUSH_SECRET)]);
    let admin = proc.admin.clone();
    let stop_mon = Arc::new(AtomicBool::new(false));
    let monitor = spawn_monitor(admin.clone(), mon.clone(), stop_mon.clone());
    tokio::time::sleep(Duration::from_secs(15)).await;
    broker.start().await;
    ensure_topics(
        &kafka.build_admin().expect("admin"),
        1,
        &[
            TopicSpec::new(&names.patients, 3),
            TopicSpec::new(&names.appointments, 3),
            TopicSpec::new(&names.billing, 3),
        ],
    )
    .await
    .expect("command topics");
    let heal = wait_all_running(&admin, "fault 1 (Kafka down at start)", &proc).await;
    mon.lock().unwrap().current().heal_secs = Some(heal);

    // ---- Load: generator, notifications, commands.
    let stop_load = Arc::new(AtomicBool::new(false));
    let generator = {
        let (state, stop) = (sim.state.clone(), stop_load.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                state.generate(1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let posted: Posted = Arc::default();
    let push_url = format!("http://127.0.0.1:{push_port}/notifications");
    let notifier = spawn_notifier(
        sim.state.clone(),
        push_url.clone(),
        posted.clone(),
        stop_load.clone(),
    );
    let mut registry = stack.registry();
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    registry.auto_register = true;
    let mut cmds = Commands {
        producer: kafka.build_producer().expect("producer"),
        codec: AvroCodec::new(registry).expect("codec"),
        names: names.clone(),
        ids: Vec::new(),
    };
    cmds.batch(&sim, 0).await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    // ---- Fault 2: Kafka stopped for 60 s.
    cmds.batch(&sim, 1).await;
    phase(&mon, "2 Kafka stopped 60 s", t0);
    broker.stop().await;
    tokio::time::sleep(OUTAGE).await;
    broker.start().await;
    let heal = wait_all_running(&admin, "fault 2 (Kafka stopped)", &proc).await;
    mon.lock().unwrap().current().heal_secs = Some(heal);

    // ---- Fault 3: the registry unreachable for 60 s.
    cmds.batch(&sim, 2).await;
    phase(&mon, "3 registry unreachable 60 s", t0);
    proxy.0.stop();
    tokio::time::sleep(OUTAGE).await;
    proxy.0.start().await;
    let heal = wait_all_running(&admin, "fault 3 (registry unreachable)", &proc).await;
    mon.lock().unwrap().current().heal_secs = Some(heal);

    // ---- Fault 4: athena answers 5xx for 60 s.
    phase(&mon, "4 athena 5xx 60 s", t0);
    sim.state.inject(FaultRule::new(
        Fault::Status {
            code: 503,
            retry_after: None,
            body: None,
        },
        u32::MAX,
    ));
    cmds.batch(&sim, 3).await;
    tokio::time::sleep(OUTAGE).await;
    sim.state.clear_faults();
    let heal = wait_all_running(&admin, "fault 4 (athena 5xx)", &proc).await;
    mon.lock().unwrap().current().heal_secs = Some(heal);

    // ---- Fault 5: one poison notification and one poison command.
    phase(&mon, "5 poison notification + command", t0);
    cmds.batch(&sim, 4).await;
    let poison_body = notification(
        &format!("chaos-poison-{}", uuid_like(0)),
        1,
        "Encounter.check-in",
        POISON_FOCUS,
    );
    let client = reqwest::Client::new();
    let permanent_before = permanent_errors(&admin, "push").await;
    // A 503 means the receiver could not make it durable within athena's deadline (the machine
    // is loaded, the producer is still reconnecting after the outages): athena sends it again.
    let mut poison_code = 0;
    for _ in 0..10 {
        poison_code = post_signed(&client, &push_url, PUSH_SECRET, &poison_body).await;
        if poison_code != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        (200..300).contains(&poison_code),
        "the poison notification is authentic and must be accepted: {poison_code}"
    );
    let poison_cmd = b"\x07chaos: not avro at all".to_vec();
    cmds.producer
        .send(
            FutureRecord::to(&names.patients)
                .key("195900/poison")
                .payload(&poison_cmd[..]),
            Duration::from_secs(30),
        )
        .await
        .expect("produce the poison command");
    let notif_dlq = format!("{notifications}.dlq");
    let cmd_dlq = format!("{}.dlq", names.patients);
    let poisons_dead = eventually(Duration::from_secs(90), || {
        !read_to_end(&kafka, &cmd_dlq).is_empty()
    })
    .await;
    // The versioned reference parses; the simulator has no such Encounter, so inflation gets a
    // 404: by the fhir-push page that event is counted as permanent and skipped, while any
    // other permanent failure dead-letters the notification. Either way it is handled once.
    let mut notif_outcome = "";
    let deadline = Instant::now() + Duration::from_secs(60);
    while notif_outcome.is_empty() && Instant::now() < deadline {
        if !tokio::task::block_in_place(|| read_to_end(&kafka, &notif_dlq)).is_empty() {
            notif_outcome = "dead-lettered";
        } else if permanent_errors(&admin, "push").await > permanent_before {
            notif_outcome = "counted as permanent (404) and skipped";
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let handled = !notif_outcome.is_empty();
    assert!(
        handled,
        "the poison notification was neither dead-lettered nor counted as a permanent error"
    );
    eprintln!("chaos: poison notification {notif_outcome}");
    let heal = wait_all_running(&admin, "fault 5 (poison)", &proc).await;
    mon.lock().unwrap().current().heal_secs = Some(heal);

    // ---- Drain.
    phase(&mon, "drain", t0);
    cmds.batch(&sim, 5).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_load.store(true, Ordering::Relaxed);
    generator.await.expect("generator");
    notifier.await.expect("notifier");
    let drained = eventually(Duration::from_secs(120), || pending(&sim.state) == 0).await;
    assert!(drained, "{} changes never handed out", pending(&sim.state));
    let want = cmds.ids.len();
    let results_in = eventually(Duration::from_secs(180), || {
        keys(&read_to_end(&kafka, &names.results)).len() >= want
    })
    .await;
    let accepted: Vec<String> = posted
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| (200..300).contains(c))
        .map(|(p, _)| format!("{PRACTICE}/{p}"))
        .collect();
    let inflated_all = eventually(Duration::from_secs(120), || {
        let got = keys(&read_to_end(&kafka, &push_patients));
        accepted.iter().all(|k| got.contains(k))
    })
    .await;
    // Let the source publish its last polls before the final read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_mon.store(true, Ordering::Relaxed);
    monitor.await.expect("monitor");
    let last_status = mon.lock().unwrap().last.clone();
    proc.stop_cleanly().await;

    // ---- The figures.
    let m = std::mem::take(&mut *mon.lock().unwrap());
    println!(
        "chaos: per phase (FAILED observations, restarts, /readyz 503, time to all RUNNING and ready):"
    );
    for (phase, o) in &m.phases {
        let restarts: BTreeMap<&String, u64> = o
            .restarts_last
            .iter()
            .map(|(c, last)| {
                (
                    c,
                    last.saturating_sub(o.restarts_first.get(c).copied().unwrap_or(0)),
                )
            })
            .collect();
        println!(
            "  {phase}: {} polls, FAILED seen {:?}, restarts {:?}, /readyz 503 x{}, all RUNNING and ready {}",
            o.polls,
            o.failed,
            restarts,
            o.ready_503,
            o.heal_secs
                .map(|s| format!("{s:.1} s after the fault ended"))
                .unwrap_or_else(|| "-".into())
        );
    }
    let total_changes: usize = FEEDS.iter().map(|f| handed_out(&sim.state, *f).len()).sum();
    let posted_v = posted.lock().unwrap().clone();
    let by_code = posted_v.iter().fold(BTreeMap::new(), |mut acc, (_, c)| {
        *acc.entry(*c).or_insert(0usize) += 1;
        acc
    });
    println!(
        "chaos: {} commands, {total_changes} changes handed out, {} notifications posted \
         (answers {by_code:?}; 0 = no answer), {:.0} s in all",
        want,
        posted_v.len(),
        t0.elapsed().as_secs_f64()
    );

    // ---- The assertions.
    assert!(
        m.inconsistent.is_empty(),
        "/readyz did not answer 503 while a connector was FAILED: {:?}",
        &m.inconsistent[..m.inconsistent.len().min(5)]
    );
    drop(m);
    for c in CONNECTORS {
        assert_eq!(state_of(&last_status, c), "RUNNING", "{c}: {last_status}");
    }

    // Every change the simulator handed out is on Kafka, by event id.
    for feed in FEEDS {
        let expected: HashSet<String> = handed_out(&sim.state, *feed).into_iter().collect();
        let topic = format!("{prefix}.{}", events::spec(*feed).default_topic);
        let got: HashSet<String> = read_to_end(&kafka, &topic)
            .iter()
            .filter_map(|m| header(m, "event_id"))
            .collect();
        let missing = expected.difference(&got).count();
        assert_eq!(
            missing,
            0,
            "{feed:?}: {missing} of {} changes handed out are not on Kafka",
            expected.len()
        );
        let unknown = got.difference(&expected).count();
        assert_eq!(unknown, 0, "{feed:?}: {unknown} event ids never handed out");
    }

    // Exactly one result per command.
    assert!(results_in, "not every command got a result within 180 s");
    let mut results: HashMap<String, Vec<CommandResult>> = HashMap::new();
    // Where each result sits, so a doubled one can be told apart: the same `completed_at` and
    // `attempts` twice is one result published again, `attempts = 0` is the command re-run.
    let mut placed: HashMap<String, Vec<String>> = HashMap::new();
    for msg in read_to_end(&kafka, &names.results) {
        let r: CommandResult = cmds
            .codec
            .decode(msg.payload().expect("payload"))
            .await
            .expect("result decodes");
        placed.entry(r.command_id.clone()).or_default().push(format!(
            "partition {} offset {} status {:?} attempts {} received {} completed {} error {:?}",
            msg.partition(),
            msg.offset(),
            r.status,
            r.attempts,
            r.received_at.0,
            r.completed_at.0,
            r.error.as_ref().map(|e| e.code.clone())
        ));
        results.entry(r.command_id.clone()).or_default().push(r);
    }
    let doubled: Vec<_> = results
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k, v.iter().map(|r| r.status).collect::<Vec<_>>()))
        .take(5)
        .collect();
    for (id, v) in placed.iter().filter(|(_, v)| v.len() > 1).take(5) {
        println!("chaos: results of {id}: {v:?}");
    }
    assert!(doubled.is_empty(), "more than one result for {doubled:?}");
    let ids: HashSet<&String> = cmds.ids.iter().map(|(id, _, _)| id).collect();
    let without: Vec<_> = ids
        .iter()
        .filter(|id| !results.contains_key(**id))
        .take(5)
        .collect();
    assert!(without.is_empty(), "commands without a result: {without:?}");
    assert_eq!(results.len(), ids.len(), "results for unknown command ids");
    let mut statuses: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (id, ty, _) in &cmds.ids {
        *statuses
            .entry((ty, format!("{:?}", results[id][0].status)))
            .or_default() += 1;
    }
    println!("chaos: results by (type, status): {statuses:?}");
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for v in results.values() {
        if let Some(e) = &v[0].error {
            *codes
                .entry(format!("{:?} {}", v[0].status, e.code))
                .or_default() += 1;
        }
    }
    println!("chaos: error codes of the results: {codes:?}");

    // No write twice in the simulator's ledger: entity writes at most once each, and each
    // operation as often as its commands were APPLIED.
    let (generated, ledger): (Vec<_>, Vec<_>) = sim
        .state
        .ledger()
        .into_iter()
        .partition(|e| e.params.get("source").map(String::as_str) == Some("generator"));
    // The generator cancels and checks in random booked appointments, the commands' slots
    // among them; a command that then finds its appointment already in the state it asked for
    // reads that back as APPLIED without a write of its own (as after a crash that hid its
    // write). Such commands are left out of the per-operation bounds below.
    let by_generator: HashSet<(String, String)> = generated
        .iter()
        .map(|e| (e.operation.clone(), e.entity_id.clone()))
        .collect();
    let mut per_entity: HashMap<(String, String), usize> = HashMap::new();
    let mut per_op: BTreeMap<String, usize> = BTreeMap::new();
    for e in &ledger {
        *per_entity
            .entry((e.operation.clone(), e.entity_id.clone()))
            .or_default() += 1;
        *per_op.entry(e.operation.clone()).or_default() += 1;
    }
    // A FAILED result may hide a write athena applied (an answer cut by the outage that could
    // not be read back: AMBIGUOUS_UNRESOLVED, or ATHENA_UNAVAILABLE for the naturally idempotent
    // UpdatePatient), so per operation: APPLIED <= written <= APPLIED + FAILED. Entity-keyed
    // writes (a slot, a patient's update) are held to at most once per entity (UpdatePatient
    // sets the same fields again, so a repeat of it is counted, not refused).
    let updates_written = per_entity
        .keys()
        .filter(|(o, _)| o == "UpdatePatient")
        .count();
    let updates_repeated = per_op.get("UpdatePatient").copied().unwrap_or(0) - updates_written;
    per_op.insert("UpdatePatient".into(), updates_written);
    println!(
        "chaos: {} writes in athena's ledger (generator excluded); UpdatePatient repeated {updates_repeated} times (naturally idempotent)",
        ledger.len()
    );
    for op in [
        "BookAppointment",
        "CancelAppointment",
        "CheckIn",
        "RescheduleAppointment",
    ] {
        let twice: Vec<_> = per_entity
            .iter()
            .filter(|((o, _), n)| o == op && **n > 1)
            .take(5)
            .collect();
        assert!(twice.is_empty(), "{op} written twice: {twice:?}");
    }
    // The ledger also holds the calls around the commands (`StartCheckIn`, the source's
    // `SubscribeChangedData`): compare the commands' own operations.
    let mut bounds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut raced = 0;
    for (id, ty, entity) in &cmds.ids {
        let op = if *ty == "CheckInAppointment" {
            "CheckIn"
        } else {
            ty
        };
        // Only a state change (a slot booked, cancelled, checked in) is precluded by the
        // generator's write; an update of the same patient is written again.
        let transition = matches!(
            op,
            "BookAppointment" | "CancelAppointment" | "CheckIn" | "RescheduleAppointment"
        );
        if transition && by_generator.contains(&(op.to_string(), entity.clone())) {
            // The generator got there first, so this command wrote nothing of its own.
            raced += 1;
            continue;
        }
        let e = bounds.entry(op).or_default();
        match results[id][0].status {
            CommandStatus::Applied => {
                e.0 += 1;
                e.1 += 1;
            }
            CommandStatus::Failed => e.1 += 1,
            _ => {}
        }
    }
    for (op, (applied, most)) in &bounds {
        let written = per_op.get(*op).copied().unwrap_or(0);
        assert!(
            *applied <= written && written <= *most,
            "{op}: {written} writes in athena's ledger, {applied} APPLIED results, at most {most} \
             commands that may have written"
        );
    }
    println!(
        "chaos: per operation (APPLIED, APPLIED + FAILED) vs written: {bounds:?} vs {per_op:?}; \
         {raced} commands left out (the generator wrote their appointment first)"
    );

    // Every notification answered 2xx was inflated.
    let got = keys(&read_to_end(&kafka, &push_patients));
    let lost: Vec<_> = accepted
        .iter()
        .filter(|k| !got.contains(*k))
        .take(5)
        .collect();
    assert!(
        inflated_all && lost.is_empty(),
        "{} of {} notifications answered 2xx were not inflated, e.g. {lost:?}",
        accepted.iter().filter(|k| !got.contains(*k)).count(),
        accepted.len()
    );
    assert!(
        accepted.len() > 100,
        "too few notifications accepted to mean anything: {}",
        accepted.len()
    );

    // The poisons are in their dead-letter topics, with Connect's error headers.
    assert!(poisons_dead, "a poison never reached its dead-letter topic");
    let dead = read_to_end(&kafka, &cmd_dlq);
    let m = dead
        .iter()
        .find(|m| m.key() == Some(b"195900/poison".as_slice()))
        .expect("the poison command in its DLQ");
    assert_eq!(m.payload(), Some(&poison_cmd[..]), "byte for byte");
    assert_eq!(
        header(m, "__connect.errors.topic").as_deref(),
        Some(names.patients.as_str())
    );
    assert!(header(m, "__connect.errors.stage").is_some());
    assert!(header(m, "__connect.errors.exception.class.name").is_some());
    let dead = read_to_end(&kafka, &notif_dlq);
    if notif_outcome == "dead-lettered" {
        let m = dead
            .iter()
            .find(|m| m.payload() == Some(poison_body.as_bytes()))
            .unwrap_or_else(|| panic!("the poison notification in its DLQ ({} dead)", dead.len()));
        assert_eq!(
            header(m, "__connect.errors.topic").as_deref(),
            Some(notifications.as_str())
        );
        assert!(header(m, "__connect.errors.stage").is_some());
    }
    println!("chaos: poison notification {notif_outcome}; poison command dead-lettered");

    sim.shutdown().await;
    drop(proxy);
    drop(broker);
}

//! `athena-connect conformance --config FILE [--writes]`: does the athena this config points at
//! (the simulator, preview practice 195900, production) still answer the way the connectors
//! expect, with the scopes the config needs? Decision 0022.
//!
//! The read pass never changes athena: token and granted scopes against what the enabled paths
//! need, each practice's departments, every configured feed's subscription status and one
//! `leaveunprocessed=true` poll (it never takes rows from a feed), one search per FHIR type the
//! config reads, a small `$export` (cancelled afterwards) when `[backfill]` is set, and the
//! Subscription list when push is enabled. `--writes` adds a pass on synthetic data when a
//! write-back sink is configured, through the same athena-client calls the sink's commands use:
//! create (or match) a synthetic patient, update it with its own values, add a self-pay
//! insurance and remove it, add a problem to its chart, freeze and unfreeze an open slot, book a
//! slot and cancel it, and book another slot, check it in and out. athena cannot delete patients
//! or chart entries, nor cancel a checked-in appointment: those stay on the synthetic patient, as
//! the table says. Every row is PHI-free: counts, statuses, ids and athena's own error text.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use athena_client::api::appointments::{BookAppointment, CancelAppointment, OpenSlotQuery};
use athena_client::api::bulk::{ExportPolling, ExportRequest};
use athena_client::api::changed::PollParams;
use athena_client::api::chart::ChartPath;
use athena_client::api::insurances::InsuranceFields;
use athena_client::api::patients::PatientFields;
use athena_client::{AthenaClient, PracticeClient, PracticeId};

use crate::config::RootConfig;
use crate::connectors::{AthenaUse, athena_use};
use crate::{exit, run};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// athena answered as expected.
    Pass,
    /// athena refused or answered in an unexpected shape.
    Fail,
    /// Not run (nothing configured needs it, or an earlier check failed).
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// One table row: the check, its outcome and athena's answer in one PHI-free line.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was checked, e.g. `feed patients@195900 subscription`.
    pub check: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// athena's answer, one line.
    pub answer: String,
}

/// Longest answer kept in the table.
const ANSWER_MAX: usize = 110;

fn row(check: impl Into<String>, outcome: Outcome, answer: impl Into<String>) -> Row {
    let mut answer: String = answer.into().replace(['\n', '\r'], " ");
    if answer.len() > ANSWER_MAX {
        let mut cut = ANSWER_MAX;
        while !answer.is_char_boundary(cut) {
            cut -= 1;
        }
        answer.truncate(cut);
        answer.push('…');
    }
    Row {
        check: check.into(),
        outcome,
        answer,
    }
}

fn result_row<T>(
    check: impl Into<String>,
    r: &Result<T, athena_client::Error>,
    ok: impl FnOnce(&T) -> String,
) -> Row {
    match r {
        Ok(v) => row(check, Outcome::Pass, ok(v)),
        Err(e) => row(check, Outcome::Fail, e.to_string()),
    }
}

/// `athena-connect conformance`: prints the table; exit 0 when nothing failed, 1 otherwise,
/// 2 on an invalid config.
pub async fn conformance(path: &Path, writes: bool, out: &mut impl Write) -> i32 {
    let config = match run::load_without_admin(path, out) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rows = run_checks(&config, writes).await;
    print_table(&rows, out);
    if rows.iter().any(|r| r.outcome == Outcome::Fail) {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Prints `rows` as a fixed-width table with a summary line.
pub fn print_table(rows: &[Row], out: &mut impl Write) {
    let w = rows.iter().map(|r| r.check.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:w$}  result  athena's answer", "check");
    for r in rows {
        let _ = writeln!(out, "{:w$}  {:6}  {}", r.check, r.outcome.label(), r.answer);
    }
    let count = |o| rows.iter().filter(|r| r.outcome == o).count();
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} skipped",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip)
    );
}

/// Runs every check the config calls for (no Kafka, no registry: athena only).
pub async fn run_checks(config: &RootConfig, writes: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let usage = match athena_use(config) {
        Ok(u) => u,
        Err(e) => {
            rows.push(row("config", Outcome::Fail, e.to_string()));
            return rows;
        }
    };
    let host = config.athena.base_url.host_str().unwrap_or("?").to_string();
    let athena = match AthenaClient::new(config.athena.clone()) {
        Ok(c) => c,
        Err(e) => {
            rows.push(row("client", Outcome::Fail, e.to_string()));
            return rows;
        }
    };
    let token = athena.check_credentials().await;
    rows.push(result_row("token", &token, |_| {
        format!("granted by {host}")
    }));
    if token.is_err() {
        return rows;
    }
    let needed = usage.scopes();
    match athena.granted_scopes().await {
        Ok(granted) => {
            let missing = athena_client::scopes::missing(&needed, &granted);
            rows.push(if missing.is_empty() {
                row(
                    "scopes",
                    Outcome::Pass,
                    format!("{} needed, all granted", needed.len()),
                )
            } else {
                row(
                    "scopes",
                    Outcome::Fail,
                    format!("missing from the token: {}", missing.join(" ")),
                )
            });
        }
        Err(e) => rows.push(row("scopes", Outcome::Fail, e.to_string())),
    }
    for pid in &usage.practices {
        let r = athena.practice(*pid).departments().await;
        rows.push(result_row(format!("departments@{pid}"), &r, |d| {
            format!("{} department(s)", d.len())
        }));
    }
    feed_checks(&athena, &usage, &mut rows).await;
    let patient = first_patient(&athena, &usage).await;
    fhir_checks(&athena, &usage, patient.as_deref(), &mut rows).await;
    export_check(&athena, &usage, &mut rows).await;
    if !usage.push.is_empty() {
        let r = athena.list_subscriptions().await;
        rows.push(result_row("push subscriptions list", &r, |s| {
            format!("{} subscription(s)", s.len())
        }));
    }
    if writes {
        write_checks(&athena, &usage, &mut rows).await;
        if !usage.sinks.is_empty() {
            rows.extend(unexercised_commands());
        }
    }
    rows
}

/// Command types the write pass exercises (through the calls their `WriteBack` impls use).
const EXERCISED: &[&str] = &[
    "CreatePatient",
    "UpdatePatient",
    "AddInsurance",
    "RemoveInsurance",
    "AddProblem",
    "FreezeAppointment",
    "UnfreezeAppointment",
    "BookAppointment",
    "CancelAppointment",
    "CheckInAppointment",
    "CheckOutAppointment",
];

/// One `skip` row per command type the sink applies that the write pass does not exercise, so
/// the table says what was not checked instead of staying silent: each would leave a record
/// athena cannot undo (claims, payments, documents, chart history) or change an appointment the
/// pass does not own. Try those by hand against preview with a synthetic patient.
fn unexercised_commands() -> Vec<Row> {
    write_back_sink::commands::REGISTRY
        .iter()
        .map(|e| e.schema_name.rsplit('.').next().unwrap_or(e.schema_name))
        .filter(|name| !EXERCISED.contains(name))
        .map(|name| {
            row(
                format!("write: {name}"),
                Outcome::Skip,
                "not exercised: athena cannot undo it on shared data; try it by hand on a synthetic patient",
            )
        })
        .collect()
}

async fn feed_checks(athena: &AthenaClient, usage: &AthenaUse, rows: &mut Vec<Row>) {
    for (_, pid, feed) in &usage.feeds {
        let p = athena.practice(*pid);
        let name = format!("feed {feed}@{pid}");
        match p.changed_subscription(*feed).await {
            Ok(s) if s.status == "ACTIVE" || s.status == "PARTIAL" => rows.push(row(
                format!("{name} subscription"),
                Outcome::Pass,
                format!("{} ({} event(s))", s.status, s.subscriptions.len()),
            )),
            Ok(s) => rows.push(row(
                format!("{name} subscription"),
                Outcome::Fail,
                format!(
                    "status {:?}: not subscribed (the connector subscribes when it starts with \
                     manage_subscriptions)",
                    s.status
                ),
            )),
            Err(e) => rows.push(row(
                format!("{name} subscription"),
                Outcome::Fail,
                e.to_string(),
            )),
        }
        // Never destructive: leaveunprocessed keeps every row for the real connector.
        let params = PollParams {
            leave_unprocessed: true,
            limit: Some(1),
            ..PollParams::default()
        };
        let r = p.poll_changed(*feed, &params).await;
        rows.push(result_row(
            format!("{name} poll (leaveunprocessed)"),
            &r,
            |page| {
                format!(
                    "{} record(s) on the first page, totalcount {}",
                    page.items.len(),
                    page.total_count
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "absent".into())
                )
            },
        ));
    }
}

/// athena's documented test patient of the shared preview practice 195900.
const PREVIEW_TEST_PATIENT: &str = "60178";

/// A patient id to scope FHIR searches with: the first one a non-destructive patients or
/// appointments poll shows, else athena's documented preview test patient (in 195900) or 1.
async fn first_patient(athena: &AthenaClient, usage: &AthenaUse) -> Option<String> {
    use athena_client::api::changed::Feed;
    let pid = *usage.practices.first()?;
    let params = PollParams {
        leave_unprocessed: true,
        limit: Some(5),
        ..PollParams::default()
    };
    for feed in [Feed::Patients, Feed::Appointments] {
        let Ok(page) = athena.practice(pid).poll_changed(feed, &params).await else {
            continue;
        };
        if let Some(id) = page.items.iter().find_map(|i| id_of(i, "patientid")) {
            return Some(id);
        }
    }
    Some(
        if pid == 195_900 {
            PREVIEW_TEST_PATIENT
        } else {
            "1"
        }
        .to_string(),
    )
}

async fn fhir_checks(
    athena: &AthenaClient,
    usage: &AthenaUse,
    patient: Option<&str>,
    rows: &mut Vec<Row>,
) {
    let Some(pid) = usage.practices.first().copied() else {
        return;
    };
    let patient_ref =
        athena_client::api::fhir::ids::patient(PracticeId(pid), patient.unwrap_or("1"));
    for ty in &usage.fhir_types {
        let key = if ty == "Patient" { "_id" } else { "patient" };
        let r = athena
            .fhir_search(PracticeId(pid), ty, &[(key, &patient_ref), ("_count", "1")])
            .await;
        rows.push(result_row(format!("fhir {ty} search"), &r, |b| {
            format!(
                "Bundle with {} resource(s) on the first page",
                b.resources().len()
            )
        }));
    }
}

async fn export_check(athena: &AthenaClient, usage: &AthenaUse, rows: &mut Vec<Row>) {
    let Some((pid, types)) = &usage.backfill else {
        return;
    };
    // Small: only changes of the last hour.
    let req = ExportRequest {
        types: types.clone(),
        since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    };
    let job = match athena.bulk_export_kickoff(PracticeId(*pid), &req).await {
        Ok(j) => j,
        Err(e) => {
            rows.push(row("$export kick-off", Outcome::Fail, e.to_string()));
            return;
        }
    };
    let polling = ExportPolling {
        min_interval: Duration::from_millis(200),
        max_interval: Duration::from_secs(10),
        timeout: Duration::from_secs(120),
    };
    let r = athena.bulk_export_wait(&job, &polling).await;
    rows.push(result_row("$export", &r, |m| {
        format!("manifest with {} file(s)", m.output.len())
    }));
    let _ = athena.bulk_export_cancel(&job).await;
}

async fn write_checks(athena: &AthenaClient, usage: &AthenaUse, rows: &mut Vec<Row>) {
    if usage.sinks.is_empty() {
        rows.push(row(
            "writes",
            Outcome::Skip,
            "no write-back sink configured",
        ));
        return;
    }
    let Some(pid) = usage.practices.first().copied() else {
        rows.push(row(
            "writes",
            Outcome::Fail,
            "no practice id in the config (feeds, push or backfill name one)",
        ));
        return;
    };
    let p = athena.practice(pid);
    let dept = match p.departments().await {
        Ok(d) => d.first().and_then(|d| id_of(d, "departmentid")),
        Err(_) => None,
    };
    let Some(dept) = dept else {
        rows.push(row(
            "write: create patient",
            Outcome::Fail,
            "no department to register a patient in",
        ));
        return;
    };
    // Synthetic and recognisable: athena's best match returns this same record on a rerun.
    let fields = PatientFields {
        firstname: Some("Conformance".into()),
        lastname: Some("Synthetic".into()),
        dob: chrono::NaiveDate::from_ymd_opt(1970, 1, 1),
        departmentid: Some(dept.clone()),
        sex: Some("F".into()),
        email: Some(SYNTHETIC_EMAIL.into()),
        ..PatientFields::default()
    };
    let created = p.create_patient(&fields).await;
    rows.push(result_row("write: create patient", &created, |id| {
        format!("patient {id} (synthetic; athena cannot delete patients)")
    }));
    let Ok(patient) = created else {
        return;
    };
    patient_writes(&p, &patient, &dept, rows).await;
    // From tomorrow: athena books schedulable (future) slots only.
    let from = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
    let q = OpenSlotQuery {
        department_id: dept.clone(),
        reason_ids: vec!["-1".into()],
        start_date: Some(from),
        end_date: Some(from + chrono::Duration::days(14)),
        limit: Some(5),
        ..OpenSlotQuery::default()
    };
    let slots = p.open_slots(&q).await;
    rows.push(result_row("write: open slots", &slots, |s| {
        format!("{} open slot(s)", s.len())
    }));
    let slots: Vec<serde_json::Value> = slots
        .map(|s| s.into_iter().map(|x| x.raw).collect())
        .unwrap_or_default();
    let mut slots = slots.iter();
    let Some(slot) = slots.next() else {
        rows.push(row(
            "write: book appointment",
            Outcome::Skip,
            "no open slot in the next 14 days",
        ));
        return;
    };
    let Some(slot_id) = book(&p, slot, &patient, &dept, "write: book appointment", rows).await
    else {
        return;
    };
    let reason = p
        .cancel_reasons()
        .await
        .ok()
        .and_then(|r| r.into_iter().next())
        .map(|r| r.appointmentcancelreasonid);
    let cancel = CancelAppointment {
        patient_id: patient.clone(),
        cancel_reason_id: reason,
        cancellation_reason: Some("athena-connect conformance clean-up".into()),
    };
    let r = p.cancel_appointment(&slot_id, &cancel).await;
    rows.push(result_row(
        "write: cancel appointment (clean-up)",
        &r,
        |_| format!("slot {slot_id} cancelled"),
    ));
    freeze_writes(&p, slots.next(), rows).await;
    visit_writes(&p, slots.next(), &patient, &dept, rows).await;
}

/// The synthetic patient's email (a reserved domain: nothing is ever sent).
const SYNTHETIC_EMAIL: &str = "conformance@example.invalid";

/// UpdatePatient (its own email again: nothing changes), AddInsurance + RemoveInsurance (self-pay
/// needs no policy holder), AddProblem (a chart write athena keeps).
async fn patient_writes(p: &PracticeClient, patient: &str, dept: &str, rows: &mut Vec<Row>) {
    let same = PatientFields {
        email: Some(SYNTHETIC_EMAIL.into()),
        ..PatientFields::default()
    };
    let r = p.update_patient(patient, &same).await;
    rows.push(result_row("write: update patient", &r, |id| {
        format!("patient {id} updated with its own values")
    }));
    let ins = InsuranceFields {
        insurance_package_id: Some("0".into()),
        sequence_number: Some(1),
        ..InsuranceFields::default()
    };
    let added = p.create_insurance(patient, &ins).await;
    let id = added.as_ref().ok().and_then(|v| match v {
        serde_json::Value::Array(a) => a.first().and_then(|x| id_of(x, "insuranceid")),
        other => id_of(other, "insuranceid"),
    });
    rows.push(match (&added, &id) {
        (Ok(_), Some(id)) => row(
            "write: add insurance",
            Outcome::Pass,
            format!("self-pay insurance {id}"),
        ),
        (Ok(_), None) => row(
            "write: add insurance",
            Outcome::Fail,
            "answer without insuranceid",
        ),
        (Err(e), _) => row("write: add insurance", Outcome::Fail, e.to_string()),
    });
    if let Some(id) = id {
        let r = p.delete_insurance(patient, &id).await;
        rows.push(result_row("write: remove insurance (clean-up)", &r, |_| {
            format!("insurance {id} removed")
        }));
    }
    // Essential hypertension: a code every problem list knows; synthetic patient only.
    let form = vec![
        ("departmentid".to_string(), dept.to_string()),
        ("snomedcode".to_string(), "38341003".to_string()),
    ];
    let r = p.chart_post(&ChartPath::problems(patient), form).await;
    rows.push(result_row("write: add problem", &r, |_| {
        "SNOMED 38341003 on the synthetic patient (athena keeps chart entries)".to_string()
    }));
}

/// Books `slot` for `patient` (a row named `check`); the slot's id when booked.
async fn book(
    p: &PracticeClient,
    slot: &serde_json::Value,
    patient: &str,
    dept: &str,
    check: &str,
    rows: &mut Vec<Row>,
) -> Option<String> {
    let Some(slot_id) = id_of(slot, "appointmentid") else {
        rows.push(row(check, Outcome::Fail, "open slot without appointmentid"));
        return None;
    };
    let book = BookAppointment {
        patient_id: patient.to_string(),
        appointment_type_id: id_of(slot, "appointmenttypeid"),
        department_id: Some(dept.to_string()),
        ignore_schedulable_permission: true,
        ..BookAppointment::default()
    };
    let booked = p.book_appointment(&slot_id, &book).await;
    rows.push(result_row(check, &booked, |_| {
        format!("slot {slot_id} booked")
    }));
    booked.ok().map(|_| slot_id)
}

/// FreezeAppointment + UnfreezeAppointment of an open slot (left open as found).
async fn freeze_writes(p: &PracticeClient, slot: Option<&serde_json::Value>, rows: &mut Vec<Row>) {
    let Some(slot_id) = slot.and_then(|s| id_of(s, "appointmentid")) else {
        rows.push(row(
            "write: freeze slot",
            Outcome::Skip,
            "no second open slot in the next 14 days",
        ));
        return;
    };
    let r = p.freeze_appointment(&slot_id, true).await;
    rows.push(result_row("write: freeze slot", &r, |_| {
        format!("slot {slot_id} frozen")
    }));
    if r.is_ok() {
        let r = p.freeze_appointment(&slot_id, false).await;
        rows.push(result_row("write: unfreeze slot (clean-up)", &r, |_| {
            format!("slot {slot_id} open again")
        }));
    }
}

/// CheckInAppointment + CheckOutAppointment of a freshly booked slot. athena cannot cancel a
/// checked-in appointment, so this visit stays on the synthetic patient.
async fn visit_writes(
    p: &PracticeClient,
    slot: Option<&serde_json::Value>,
    patient: &str,
    dept: &str,
    rows: &mut Vec<Row>,
) {
    let Some(slot) = slot else {
        rows.push(row(
            "write: check in",
            Outcome::Skip,
            "no third open slot in the next 14 days",
        ));
        return;
    };
    let Some(id) = book(p, slot, patient, dept, "write: book visit", rows).await else {
        return;
    };
    let r = match p.start_checkin(&id).await {
        Ok(()) => p.checkin(&id).await,
        Err(e) => Err(e),
    };
    rows.push(result_row("write: check in", &r, |_| {
        format!("appointment {id} checked in")
    }));
    if r.is_ok() {
        let r = p.checkout(&id).await;
        rows.push(result_row("write: check out", &r, |_| {
            format!("appointment {id} checked out (athena keeps the visit)")
        }));
    }
}

fn id_of(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

//! The appointment-lifecycle and insurance commands of issue 14 (UpdateAppointment,
//! AddAppointmentNote, CheckOutAppointment, FreezeAppointment, UnfreezeAppointment,
//! UpdateInsurance, RemoveInsurance) as a workload the shared fault and kill runs add to
//! theirs: the simulator state they need is made through the athena client before the run,
//! the commands are produced one chain per key (per-key order makes each chain's order hold),
//! and afterwards the simulator's ledger must hold each write exactly once.

use std::collections::HashMap;

use athena_client::AthenaClient;
use athena_client::api::appointments::BookAppointment as BookReq;
use athena_client::api::insurances::InsuranceFields;
use athena_contracts::commands::*;
use athena_contracts::{CommandResult, CommandStatus};
use athena_sim::RunningSim;

use super::{Names, PRACTICE, Producer, open_slots, test_patient};

/// The prepared state and the commands of one run.
pub struct Lifecycle {
    prefix: String,
    /// Booked and checked-in appointments: update, note, check-out (key: the appointment).
    checked_in: Vec<String>,
    /// Open slots: freeze then unfreeze (key: the slot).
    open: Vec<String>,
    /// The patient holding `insurances`.
    patient: String,
    /// Primary packages: update then remove (key: the patient).
    insurances: Vec<String>,
}

impl Lifecycle {
    /// Books and checks in `n` appointments, leaves `n` slots open and adds `n` insurance
    /// packages, all through `athena` (call before any fault is injected).
    pub async fn prepare(sim: &RunningSim, athena: &AthenaClient, prefix: &str, n: usize) -> Self {
        let patient = test_patient(sim);
        let slots = open_slots(sim, 2 * n);
        let (checked_in, open) = slots.split_at(n);
        for slot in checked_in {
            check_in(athena, slot, &patient).await;
        }
        let mut insurances = Vec::with_capacity(n);
        for i in 0..n {
            insurances.push(add_insurance(athena, &patient, &insurance_fields(i)).await);
        }
        Lifecycle {
            prefix: prefix.to_string(),
            checked_in: checked_in.to_vec(),
            open: open.to_vec(),
            patient,
            insurances,
        }
    }

    fn id(&self, what: &str, i: usize) -> String {
        format!("{}-{what}-{i}", self.prefix)
    }

    /// Encodes every command, in per-key order, as (topic, key, bytes); and their ids.
    pub async fn encode(
        &self,
        n: &Names,
        p: &Producer,
    ) -> (Vec<(String, String, Vec<u8>)>, Vec<String>) {
        let mut records = Vec::new();
        let mut ids = Vec::new();
        let pid = PRACTICE.to_string();
        for (i, slot) in self.checked_in.iter().enumerate() {
            let key = format!("195900/{slot}");
            let update = UpdateAppointment {
                command_id: self.id("update", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                patient_id: Some(self.patient.clone()),
                appointment_type_id: None,
                department_id: None,
                provider_id: Some("72".into()),
                // Not set before: the read-back cannot mistake the old state for the write.
                supervising_provider_id: Some("73".into()),
            };
            let note = AddAppointmentNote {
                command_id: self.id("note", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                note_text: format!("synthetic note {i}"),
                display_on_schedule: i % 2 == 0,
                patient_id: None,
            };
            let checkout = CheckOutAppointment {
                command_id: self.id("checkout", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
                patient_id: Some(self.patient.clone()),
            };
            records.push((
                n.appointments.clone(),
                key.clone(),
                p.encode(&n.appointments, &update).await,
            ));
            records.push((
                n.appointments.clone(),
                key.clone(),
                p.encode(&n.appointments, &note).await,
            ));
            records.push((
                n.appointments.clone(),
                key,
                p.encode(&n.appointments, &checkout).await,
            ));
            ids.extend([update.command_id, note.command_id, checkout.command_id]);
        }
        for (i, slot) in self.open.iter().enumerate() {
            let key = format!("195900/{slot}");
            let freeze = FreezeAppointment {
                command_id: self.id("freeze", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
            };
            let unfreeze = UnfreezeAppointment {
                command_id: self.id("unfreeze", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                appointment_id: slot.clone(),
            };
            records.push((
                n.appointments.clone(),
                key.clone(),
                p.encode(&n.appointments, &freeze).await,
            ));
            records.push((
                n.appointments.clone(),
                key,
                p.encode(&n.appointments, &unfreeze).await,
            ));
            ids.extend([freeze.command_id, unfreeze.command_id]);
        }
        let key = format!("195900/{}", self.patient);
        for (i, ins) in self.insurances.iter().enumerate() {
            let update = UpdateInsurance {
                command_id: self.id("insupdate", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: self.patient.clone(),
                insurance_id: ins.clone(),
                insurance_package_id: None,
                sequence_number: None,
                insurance_id_number: Some(format!("SYNNEW{i:04}")),
                policyholder_first_name: None,
                policyholder_last_name: None,
                policyholder_dob: None,
                policyholder_sex: None,
                relationship_to_insured_id: None,
            };
            let remove = RemoveInsurance {
                command_id: self.id("insremove", i),
                practice_id: pid.clone(),
                correlation_id: None,
                issued_at: None,
                patient_id: self.patient.clone(),
                insurance_id: ins.clone(),
            };
            records.push((
                n.patients.clone(),
                key.clone(),
                p.encode(&n.patients, &update).await,
            ));
            records.push((
                n.patients.clone(),
                key.clone(),
                p.encode(&n.patients, &remove).await,
            ));
            ids.extend([update.command_id, remove.command_id]);
        }
        (records, ids)
    }

    /// Produces every command (each delivery awaited); their ids.
    pub async fn produce(&self, n: &Names, p: &Producer) -> Vec<String> {
        let (records, ids) = self.encode(n, p).await;
        for (topic, key, bytes) in &records {
            p.send_raw(topic, key, bytes).await;
        }
        ids
    }

    /// Every command APPLIED, and the simulator's ledger holds each of their writes exactly
    /// once (operation, entity).
    pub fn assert_written_once(&self, sim: &RunningSim, results: &HashMap<String, CommandResult>) {
        let mut per: HashMap<(String, String), usize> = HashMap::new();
        for e in sim.state.ledger() {
            *per.entry((e.operation, e.entity_id)).or_default() += 1;
        }
        let mut check = |what: &str, i: usize, op: &str, entity: &str| {
            let id = self.id(what, i);
            let r = results
                .get(&id)
                .unwrap_or_else(|| panic!("no result for {id}"));
            assert_eq!(r.status, CommandStatus::Applied, "{r:?}");
            let writes = per
                .remove(&(op.to_string(), entity.to_string()))
                .unwrap_or(0);
            assert_eq!(writes, 1, "{op} {entity}: {writes} writes in athena; {r:?}");
        };
        for (i, slot) in self.checked_in.iter().enumerate() {
            check("update", i, "UpdateAppointment", slot);
            check("note", i, "AddAppointmentNote", slot);
            check("checkout", i, "CheckOutAppointment", slot);
        }
        for (i, slot) in self.open.iter().enumerate() {
            check("freeze", i, "FreezeAppointment", slot);
            check("unfreeze", i, "UnfreezeAppointment", slot);
        }
        for (i, ins) in self.insurances.iter().enumerate() {
            check("insupdate", i, "UpdateInsurance", ins);
            check("insremove", i, "RemoveInsurance", ins);
        }
    }
}

/// Books `slot` for `patient` and checks it in, through athena's API.
pub async fn check_in(athena: &AthenaClient, slot: &str, patient: &str) {
    let p = athena.practice(PRACTICE);
    let req = BookReq {
        patient_id: patient.to_string(),
        appointment_type_id: Some("82".into()),
        ignore_schedulable_permission: true,
        ..Default::default()
    };
    p.book_appointment(slot, &req).await.expect("book");
    p.start_checkin(slot).await.expect("start check-in");
    p.checkin(slot).await.expect("check in");
}

/// Adds a package to `patient` through athena's API; its insurance id.
pub async fn add_insurance(athena: &AthenaClient, patient: &str, f: &InsuranceFields) -> String {
    let v = athena
        .practice(PRACTICE)
        .create_insurance(patient, f)
        .await
        .expect("add insurance");
    let first = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
    first["insuranceid"]
        .as_str()
        .expect("insuranceid")
        .to_string()
}

/// A primary package with its policy holder (synthetic).
pub fn insurance_fields(i: usize) -> InsuranceFields {
    InsuranceFields {
        insurance_package_id: Some("100".into()),
        sequence_number: Some(1),
        insurance_id_number: Some(format!("SYN{i:06}")),
        policyholder_firstname: Some("Testa".into()),
        policyholder_lastname: Some("Testperson".into()),
        policyholder_dob: chrono::NaiveDate::from_ymd_opt(1980, 2, 3),
        policyholder_sex: Some("F".into()),
        relationship_to_insured_id: Some("1".into()),
        extra: Vec::new(),
    }
}

/// Fault rules on the lifecycle routes, on top of a run's own: lost answers (applied, then the
/// connection dropped) and 5xx answers on each write route.
pub fn inject_faults(sim: &RunningSim, times: u32) {
    use athena_sim::{Fault, FaultRule};
    for (method, path) in [
        ("PUT", "/appointments/booked/"),
        ("POST", "/checkout"),
        ("PUT", "/freeze"),
        ("POST", "/notes"),
        ("PUT", "/insurances/"),
        ("DELETE", "/insurances/"),
    ] {
        sim.state.inject(
            FaultRule::new(Fault::ApplyThenDrop, times)
                .method(method)
                .path(path),
        );
        sim.state.inject(
            FaultRule::new(
                Fault::Status {
                    code: 500,
                    retry_after: None,
                    body: None,
                },
                times,
            )
            .method(method)
            .path(path),
        );
    }
}

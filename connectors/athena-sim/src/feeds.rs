//! Changed Data Subscriptions (§4 of the athena reference): the feed table, per-(practice, feed)
//! subscription state with delayed effect, the queue of change rows and the destructive read.
//!
//! Invariant: a change is queued only if, at the moment it happens, an *effective* subscription
//! covers its event name and department. Subscribe/unsubscribe requests wait in `pending` until
//! their effective time and are applied lazily, in order, whenever the feed is touched.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One feed athena lets you subscribe to.
#[derive(Debug, Clone, Copy)]
pub struct FeedDef {
    /// Path prefix under `/v1/{practiceid}/` (`chart/healthhistory/problems`).
    pub path: &'static str,
    /// Key of the item array in a poll answer.
    pub items_key: &'static str,
    /// Event names listed by `GET …/changed/subscription/events`.
    pub events: &'static [&'static str],
}

// Guess: for feeds whose items key or event names the reference does not know (marked "—" in
// §4.3), we use the plural entity name as key and `<Entity>Add/Update/Delete` as events, the
// pattern athena uses for providers, problems and prescriptions.
/// Every feed of §4.3.
pub const FEEDS: &[FeedDef] = &[
    FeedDef {
        path: "appointments",
        items_key: "appointments",
        events: &[
            "ScheduleAppointment",
            "CheckIn",
            "CheckOut",
            "UpdateAppointment",
            "CancelAppointment",
            "FreezeAppointment",
            "UnfreezeAppointment",
            "DeleteAppointment",
            "AddAppointmentSlot",
        ],
    },
    FeedDef {
        path: "patients",
        items_key: "patients",
        events: &[
            "AddPatient",
            "UpdatePatient",
            "DeletePatient",
            "MergePatient",
            "UpdatePatientCustomField",
        ],
    },
    FeedDef {
        path: "chart/healthhistory/problems",
        items_key: "problems",
        events: &["ProblemAdd", "ProblemUpdate"],
    },
    FeedDef {
        path: "chart/healthhistory/allergies",
        items_key: "allergies",
        events: &["AllergyAdd", "AllergyUpdate"],
    },
    FeedDef {
        path: "chart/healthhistory/medication",
        items_key: "medications",
        events: &[
            "MedicationHxAdd",
            "MedicationHxUpdate",
            "MedicationHxDelete",
        ],
    },
    FeedDef {
        path: "chart/healthhistory/vaccine",
        items_key: "vaccines",
        events: &["VaccineAdd", "VaccineUpdate", "VaccineDelete"],
    },
    FeedDef {
        path: "chart/healthhistory/familyhistory",
        items_key: "familyhistory",
        events: &["FamilyHistoryAdd", "FamilyHistoryUpdate"],
    },
    FeedDef {
        path: "prescriptions",
        items_key: "prescriptions",
        events: &[
            "PrescriptionAdd",
            "PrescriptionUpdate",
            "PrescriptionDelete",
            "PrescriptionRefillAdd",
            "PrescriptionRefillUpdate",
            "PrescriptionReopen",
            "PrescriptionPreApproval",
        ],
    },
    FeedDef {
        path: "labresults",
        items_key: "labresults",
        events: &["LabResultAdd", "LabResultUpdate", "LabResultClose"],
    },
    FeedDef {
        path: "imagingresults",
        items_key: "imagingresults",
        events: &["ImagingResultAdd", "ImagingResultUpdate"],
    },
    FeedDef {
        path: "orders",
        items_key: "orders",
        events: &["OrderAdd", "OrderUpdate", "OrderSignOff"],
    },
    FeedDef {
        path: "documents/patientcase",
        items_key: "patientcases",
        events: &["PatientCaseAdd", "PatientCaseUpdate"],
    },
    FeedDef {
        path: "claims",
        items_key: "claims",
        events: &["UpdateClaim"],
    },
    FeedDef {
        path: "providers",
        items_key: "providers",
        events: &[
            "ProviderAdd",
            "ProviderUpdate",
            "ProviderDelete",
            "ProviderUndelete",
        ],
    },
    FeedDef {
        path: "referringproviders",
        items_key: "referringproviders",
        events: &[
            "ReferringProviderAdd",
            "ReferringProviderUpdate",
            "ReferringProviderDelete",
        ],
    },
    FeedDef {
        path: "providernumbers",
        items_key: "providernumbers",
        events: &["ProviderNumberAdd", "ProviderNumberUpdate"],
    },
    FeedDef {
        path: "referringprovidernumbers",
        items_key: "referringprovidernumbers",
        events: &[
            "ReferringProviderNumberAdd",
            "ReferringProviderNumberUpdate",
        ],
    },
    FeedDef {
        path: "ccmenrollmentstatus",
        items_key: "ccmenrollmentstatus",
        events: &["CCMEnrollmentStatusUpdate"],
    },
    FeedDef {
        path: "chargecodes",
        items_key: "chargecodes",
        events: &["ChargeCodeAdd", "ChargeCodeUpdate"],
    },
    FeedDef {
        path: "stays",
        items_key: "stays",
        events: &["StayAdd", "StayUpdate"],
    },
    FeedDef {
        path: "visits",
        items_key: "visits",
        events: &["VisitAdd", "VisitUpdate"],
    },
    FeedDef {
        path: "orcase",
        items_key: "orcases",
        events: &["ORCaseAdd", "ORCaseUpdate"],
    },
    FeedDef {
        path: "surgerycases",
        items_key: "surgerycases",
        events: &["SurgeryCaseAdd", "SurgeryCaseUpdate"],
    },
];

/// Looks a feed up by path.
pub fn feed_def(path: &str) -> Option<&'static FeedDef> {
    FEEDS.iter().find(|f| f.path == path)
}

/// An effective subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// `None` = all events; otherwise the subscribed event names.
    pub events: Option<BTreeSet<String>>,
    /// `None` = the whole practice; otherwise the subscribed departments.
    pub departments: Option<Vec<String>>,
}

/// A subscribe/unsubscribe waiting for its effective time.
#[derive(Debug, Clone)]
pub enum SubOp {
    /// `POST …/changed/subscription`.
    Subscribe {
        /// One event name or all.
        event: Option<String>,
        /// The complete department list, or the whole practice.
        departments: Option<Vec<String>>,
    },
    /// `DELETE …/changed/subscription`.
    Unsubscribe {
        /// One event name or all.
        event: Option<String>,
    },
}

// Guess: a row holds the snapshot taken when the change happened (one row per change), not the
// record's state at read time; the reference only says items are whole-record snapshots.
/// One queued change: a whole-record snapshot taken when the change happened.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    /// Queue order.
    pub seq: u64,
    /// Event name (not part of the delivered item; athena sends no event field).
    pub event: String,
    /// Department of the record, for the `departmentid` filter and department subscriptions.
    pub department_id: Option<String>,
    /// Patient of the record, for the `patientid` filter.
    pub patient_id: Option<String>,
    /// The delivered item.
    pub snapshot: Value,
    /// When the row was marked processed by a destructive read.
    pub processed_at: Option<DateTime<Utc>>,
}

/// Subscription and queue of one (practice, feed).
#[derive(Debug, Clone, Default)]
pub struct FeedState {
    /// The effective subscription.
    pub active: Option<Subscription>,
    /// Requests not yet effective, ordered by effective time.
    pub pending: Vec<(DateTime<Utc>, SubOp)>,
    /// Every queued row (processed ones stay for `showprocessed*` re-delivery).
    pub rows: Vec<ChangeRow>,
    /// The destructive polls answered (the last [`MAX_POLL_TIMES`]), when and by whom: tests
    /// measure how long a feed went unpolled while its poller changed, and check that two
    /// clients never polled it in turns.
    pub polled: std::collections::VecDeque<Poll>,
    next_seq: u64,
}

/// One answered destructive poll of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// When it was answered.
    pub at: DateTime<Utc>,
    /// Who polled: [`crate::guard::Caller`] of the access token used (empty if none was seen).
    pub caller: String,
}

/// Destructive polls kept per feed.
pub const MAX_POLL_TIMES: usize = 10_000;

impl FeedState {
    /// Applies every pending op whose effective time is not after `now`.
    pub fn settle(&mut self, def: &FeedDef, now: DateTime<Utc>) {
        while let Some((at, _)) = self.pending.first() {
            if *at > now {
                break;
            }
            let (_, op) = self.pending.remove(0);
            self.apply(def, op);
        }
    }

    fn apply(&mut self, def: &FeedDef, op: SubOp) {
        match op {
            SubOp::Subscribe { event, departments } => {
                let mut sub = self.active.take().unwrap_or(Subscription {
                    events: Some(BTreeSet::new()),
                    departments: None,
                });
                match event {
                    None => sub.events = None,
                    Some(e) => {
                        if let Some(set) = sub.events.as_mut() {
                            set.insert(e);
                        }
                    }
                }
                // athena: "send the complete list on every create/update; omit = whole practice".
                sub.departments = departments;
                self.active = Some(sub);
            }
            SubOp::Unsubscribe { event: None } => self.active = None,
            SubOp::Unsubscribe { event: Some(e) } => {
                if let Some(sub) = self.active.as_mut() {
                    let set = sub
                        .events
                        .get_or_insert_with(|| def.events.iter().map(|s| s.to_string()).collect());
                    set.remove(&e);
                    if set.is_empty() {
                        self.active = None;
                    }
                }
            }
        }
    }

    /// `ACTIVE`, `PARTIAL` or `INACTIVE`, and the subscribed event names.
    pub fn status(&self, def: &FeedDef) -> (&'static str, Vec<String>) {
        match &self.active {
            None => ("INACTIVE", Vec::new()),
            Some(Subscription { events: None, .. }) => {
                ("ACTIVE", def.events.iter().map(|s| s.to_string()).collect())
            }
            Some(Subscription {
                events: Some(set), ..
            }) => {
                let all = def.events.iter().all(|e| set.contains(*e));
                (
                    if all { "ACTIVE" } else { "PARTIAL" },
                    set.iter().cloned().collect(),
                )
            }
        }
    }

    /// Queues a change if the effective subscription covers it. Returns whether it was queued.
    pub fn record(
        &mut self,
        def: &FeedDef,
        now: DateTime<Utc>,
        event: &str,
        department_id: Option<String>,
        patient_id: Option<String>,
        snapshot: Value,
    ) -> bool {
        self.settle(def, now);
        let Some(sub) = &self.active else {
            return false;
        };
        if let Some(set) = &sub.events
            && !set.contains(event)
        {
            return false;
        }
        if let (Some(depts), Some(d)) = (&sub.departments, &department_id)
            && !depts.contains(d)
        {
            return false;
        }
        self.next_seq += 1;
        self.rows.push(ChangeRow {
            seq: self.next_seq,
            event: event.to_string(),
            department_id,
            patient_id,
            snapshot,
            processed_at: None,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_subscription_filters_events_and_unsubscribe_is_delayed() {
        let def = feed_def("appointments").unwrap();
        let mut f = FeedState::default();
        let t0 = Utc::now();
        f.pending.push((
            t0,
            SubOp::Subscribe {
                event: Some("CheckIn".into()),
                departments: None,
            },
        ));
        assert!(!f.record(def, t0, "ScheduleAppointment", None, None, json!({})));
        assert!(f.record(def, t0, "CheckIn", None, None, json!({})));
        assert_eq!(f.status(def).0, "PARTIAL");
        let later = t0 + chrono::Duration::seconds(60);
        f.pending.push((later, SubOp::Unsubscribe { event: None }));
        assert!(
            f.record(def, t0, "CheckIn", None, None, json!({})),
            "not yet effective"
        );
        assert!(!f.record(def, later, "CheckIn", None, None, json!({})));
        assert_eq!(f.status(def).0, "INACTIVE");
    }

    #[test]
    fn department_subscription_drops_other_departments() {
        let def = feed_def("patients").unwrap();
        let mut f = FeedState::default();
        let t0 = Utc::now();
        f.pending.push((
            t0,
            SubOp::Subscribe {
                event: None,
                departments: Some(vec!["1".into()]),
            },
        ));
        assert!(f.record(def, t0, "AddPatient", Some("1".into()), None, json!({})));
        assert!(!f.record(def, t0, "AddPatient", Some("2".into()), None, json!({})));
        assert_eq!(f.status(def).0, "ACTIVE");
    }
}

//! Changed Data Subscriptions: subscription management and destructive polling of every known feed.
//!
//! Endpoints (all under `/v1/{practiceid}`):
//! * `GET /{feed}/changed/subscription/events` — [`PracticeClient::changed_events`]
//! * `GET /{feed}/changed/subscription` — [`PracticeClient::changed_subscription`]
//! * `POST /{feed}/changed/subscription` — [`PracticeClient::subscribe`]
//! * `DELETE /{feed}/changed/subscription` — [`PracticeClient::unsubscribe`]
//! * `GET /{feed}/changed` — [`PracticeClient::poll_changed`] and [`ChangedPager`]
//!
//! **Destructive read.** Every record a poll returns is marked processed by athena at once; a retried poll
//! (after a timeout) would come back without the records the lost answer carried. So a destructive poll is
//! treated like a non-idempotent write: a lost answer is `Error::Ambiguous`, never retried, and the
//! connector recovers by replaying a window with `showprocessedstartdatetime`/`showprocessedenddatetime`
//! ([`PollParams::replay`]) from its last durable checkpoint (minus a safety margin), deduplicating by id.
//!
//! **Paging hazard.** Because read rows leave the unprocessed set, offset paging (`offset=N`, or following
//! `next`) can skip rows. [`ChangedPager`] never sends `offset`: it repeats `limit=N` until a short or empty
//! page. Persist each page (Kafka ack) before asking for the next one.

use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use http::Method;
use serde::Deserialize;

use crate::client::{Form, PracticeClient, from_value};
use crate::error::Error;
use crate::model::de;

/// Every changed-data feed documented or seen in public clients (§4.3 of the API reference).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the variant names are the feed paths
pub enum Feed {
    Appointments,
    Patients,
    Problems,
    Allergies,
    Medications,
    Vaccines,
    FamilyHistory,
    Prescriptions,
    LabResults,
    ImagingResults,
    Orders,
    PatientCases,
    Claims,
    Providers,
    ReferringProviders,
    ProviderNumbers,
    ReferringProviderNumbers,
    CcmEnrollmentStatus,
    ChargeCodes,
    Stays,
    Visits,
    OrCase,
    SurgeryCases,
}

impl Feed {
    /// All feeds.
    pub const ALL: [Feed; 23] = [
        Feed::Appointments,
        Feed::Patients,
        Feed::Problems,
        Feed::Allergies,
        Feed::Medications,
        Feed::Vaccines,
        Feed::FamilyHistory,
        Feed::Prescriptions,
        Feed::LabResults,
        Feed::ImagingResults,
        Feed::Orders,
        Feed::PatientCases,
        Feed::Claims,
        Feed::Providers,
        Feed::ReferringProviders,
        Feed::ProviderNumbers,
        Feed::ReferringProviderNumbers,
        Feed::CcmEnrollmentStatus,
        Feed::ChargeCodes,
        Feed::Stays,
        Feed::Visits,
        Feed::OrCase,
        Feed::SurgeryCases,
    ];

    /// The feed path prefix under `/v1/{practiceid}` (e.g. `chart/healthhistory/problems`).
    pub fn path(self) -> &'static str {
        match self {
            Feed::Appointments => "appointments",
            Feed::Patients => "patients",
            Feed::Problems => "chart/healthhistory/problems",
            Feed::Allergies => "chart/healthhistory/allergies",
            Feed::Medications => "chart/healthhistory/medication",
            Feed::Vaccines => "chart/healthhistory/vaccine",
            Feed::FamilyHistory => "chart/healthhistory/familyhistory",
            Feed::Prescriptions => "prescriptions",
            Feed::LabResults => "labresults",
            Feed::ImagingResults => "imagingresults",
            Feed::Orders => "orders",
            Feed::PatientCases => "documents/patientcase",
            Feed::Claims => "claims",
            Feed::Providers => "providers",
            Feed::ReferringProviders => "referringproviders",
            Feed::ProviderNumbers => "providernumbers",
            Feed::ReferringProviderNumbers => "referringprovidernumbers",
            Feed::CcmEnrollmentStatus => "ccmenrollmentstatus",
            Feed::ChargeCodes => "chargecodes",
            Feed::Stays => "stays",
            Feed::Visits => "visits",
            Feed::OrCase => "orcase",
            Feed::SurgeryCases => "surgerycases",
        }
    }

    /// The key holding the records in a poll response. Where athena's key is unconfirmed this is a best
    /// guess; [`ChangedPage::from_json`] falls back to the only array in the body.
    pub fn items_key(self) -> &'static str {
        match self {
            Feed::Appointments => "appointments",
            Feed::Patients => "patients",
            Feed::Problems => "problems",
            Feed::Allergies => "allergies",
            Feed::Medications => "medications",
            Feed::Vaccines => "vaccines",
            Feed::FamilyHistory => "familyhistory",
            Feed::Prescriptions => "prescriptions",
            Feed::LabResults => "labresults",
            Feed::ImagingResults => "imagingresults",
            Feed::Orders => "orders",
            Feed::PatientCases => "patientcases",
            Feed::Claims => "claims",
            Feed::Providers => "providers",
            Feed::ReferringProviders => "referringproviders",
            Feed::ProviderNumbers => "providernumbers",
            Feed::ReferringProviderNumbers => "referringprovidernumbers",
            Feed::CcmEnrollmentStatus => "ccmenrollmentstatus",
            Feed::ChargeCodes => "chargecodes",
            Feed::Stays => "stays",
            Feed::Visits => "visits",
            Feed::OrCase => "orcases",
            Feed::SurgeryCases => "surgerycases",
        }
    }

    /// The id field of one record, used for Kafka keys and dedup (best guess where unconfirmed).
    pub fn id_field(self) -> &'static str {
        match self {
            Feed::Appointments => "appointmentid",
            Feed::Patients => "patientid",
            Feed::Problems => "problemid",
            Feed::Allergies => "allergyid",
            Feed::Medications => "medicationentryid",
            Feed::Vaccines => "vaccineid",
            Feed::FamilyHistory => "familyhistoryid",
            Feed::Prescriptions => "documentid",
            Feed::LabResults => "labresultid",
            Feed::ImagingResults => "imagingresultid",
            Feed::Orders => "orderid",
            Feed::PatientCases => "patientcaseid",
            Feed::Claims => "claimid",
            Feed::Providers => "providerid",
            Feed::ReferringProviders => "referringproviderid",
            Feed::ProviderNumbers => "providernumberid",
            Feed::ReferringProviderNumbers => "referringprovidernumberid",
            Feed::CcmEnrollmentStatus => "patientid",
            Feed::ChargeCodes => "chargecodeid",
            Feed::Stays => "stayid",
            Feed::Visits => "visitid",
            Feed::OrCase => "orcaseid",
            Feed::SurgeryCases => "surgerycaseid",
        }
    }

    /// Event names seen in public material; always discover the live list with
    /// [`PracticeClient::changed_events`].
    pub fn known_events(self) -> &'static [&'static str] {
        match self {
            Feed::Appointments => &[
                "ScheduleAppointment",
                "CheckIn",
                "CheckOut",
                "UpdateAppointment",
                "CancelAppointment",
                "FreezeAppointment",
                "UnfreezeAppointment",
                "DeleteAppointment",
                "AddAppointmentSlot",
                "UpdateReminderCall",
                "UpdateSuggestedOverbooking",
            ],
            Feed::Patients => &[
                "AddPatient",
                "UpdatePatient",
                "DeletePatient",
                "MergePatient",
                "UpdatePatientCustomField",
            ],
            Feed::Problems => &["ProblemAdd", "ProblemUpdate"],
            Feed::Allergies => &["AllergyAdd", "AllergyUpdate"],
            Feed::Medications => &[
                "MedicationHxAdd",
                "MedicationHxUpdate",
                "MedicationHxDelete",
            ],
            Feed::Prescriptions => &[
                "PrescriptionAdd",
                "PrescriptionUpdate",
                "PrescriptionDelete",
                "PrescriptionRefillAdd",
                "PrescriptionRefillUpdate",
                "PrescriptionReopen",
                "PrescriptionPreApproval",
            ],
            Feed::Claims => &["UpdateClaim"],
            Feed::Providers => &[
                "ProviderAdd",
                "ProviderUpdate",
                "ProviderDelete",
                "ProviderUndelete",
            ],
            _ => &[],
        }
    }

    /// Route template of the poll, e.g. `/v1/{practiceid}/appointments/changed`.
    pub fn poll_route(self) -> String {
        format!("/v1/{{practiceid}}/{}/changed", self.path())
    }

    fn segments(self, tail: &[&'static str]) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.path().split('/').collect();
        v.push("changed");
        v.extend_from_slice(tail);
        v
    }
}

impl std::fmt::Display for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// Format a UTC instant as athena's `showprocessed*datetime`: US Eastern `MM/DD/YYYY HH24:MI:SS`
/// (EST or EDT as in force at that instant).
pub fn format_eastern(t: DateTime<Utc>) -> String {
    t.with_timezone(&New_York)
        .format("%m/%d/%Y %H:%M:%S")
        .to_string()
}

/// Parameters of `GET /{feed}/changed`.
#[derive(Debug, Clone, Default)]
pub struct PollParams {
    /// `leaveunprocessed=true`: do not mark records processed (tests and dry runs only).
    pub leave_unprocessed: bool,
    /// Replay window of already-processed records (UTC; sent as US Eastern).
    pub replay: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `departmentid` filter (sent comma-separated).
    pub department_ids: Vec<String>,
    /// `patientid` filter (sent comma-separated).
    pub patient_ids: Vec<String>,
    /// `limit` page size (athena default 1500, max 5000).
    pub limit: Option<u32>,
    /// Feed-specific extras, e.g. `("showpreviouspatientids", "true")`.
    pub extra: Vec<(String, String)>,
}

impl PollParams {
    /// The query string pairs. Never contains `offset` (see the module docs).
    pub fn to_query(&self) -> Vec<(String, String)> {
        let mut f = Form::new();
        if self.leave_unprocessed {
            f = f.put("leaveunprocessed", "true");
        }
        if let Some((start, end)) = self.replay {
            f = f
                .put("showprocessedstartdatetime", format_eastern(start))
                .put("showprocessedenddatetime", format_eastern(end));
        }
        f.list("departmentid", &self.department_ids)
            .list("patientid", &self.patient_ids)
            .opt("limit", self.limit)
            .extend(&self.extra)
            .into_vec()
    }
}

/// One page of a changed feed. Records are kept as raw JSON: they are whole-record snapshots whose shape
/// equals the entity's normal GET, and connectors forward them verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedPage {
    /// The feed polled.
    pub feed: Feed,
    /// The records, in athena's order.
    pub items: Vec<serde_json::Value>,
    /// `totalcount`, when athena sent it.
    pub total_count: Option<u64>,
}

impl ChangedPage {
    /// Extract the records of `feed` from a poll body.
    pub fn from_json(feed: Feed, body: serde_json::Value) -> Self {
        let total_count = body
            .get("totalcount")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let items = match body {
            serde_json::Value::Object(mut o) => match o.remove(feed.items_key()) {
                Some(serde_json::Value::Array(a)) => a,
                _ => o
                    .into_iter()
                    .find_map(|(_, v)| {
                        if let serde_json::Value::Array(a) = v {
                            Some(a)
                        } else {
                            None
                        }
                    })
                    .unwrap_or_default(),
            },
            serde_json::Value::Array(a) => a,
            _ => Vec::new(),
        };
        ChangedPage {
            feed,
            items,
            total_count,
        }
    }

    /// The id of each record (`Feed::id_field`), as a string.
    pub fn ids(&self) -> Vec<Option<String>> {
        self.items
            .iter()
            .map(|i| i.get(self.feed.id_field()).and_then(de::value_to_id))
            .collect()
    }
}

/// `GET /{feed}/changed/subscription`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SubscriptionStatus {
    /// `ACTIVE`, `INACTIVE` or `PARTIAL`.
    #[serde(default)]
    pub status: String,
    /// Subscribed events (empty with status ACTIVE means all).
    #[serde(default)]
    pub subscriptions: Vec<EventName>,
}

/// One event name entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventName {
    /// The event name, e.g. `ScheduleAppointment`.
    pub eventname: String,
}

/// `POST /{feed}/changed/subscription` parameters.
#[derive(Debug, Clone, Default)]
pub struct Subscribe {
    /// One event per call; `None` subscribes to all events.
    pub event_name: Option<String>,
    /// The COMPLETE list of departments (send it on every update); empty = whole practice.
    pub department_ids: Vec<String>,
}

impl PracticeClient {
    /// `GET /v1/{practiceid}/{feed}/changed/subscription/events` — subscribable event names.
    /// Safe to retry.
    pub async fn changed_events(&self, feed: Feed) -> Result<Vec<String>, Error> {
        let route = format!(
            "/v1/{{practiceid}}/{}/changed/subscription/events",
            feed.path()
        );
        let call = self.get(route.clone(), &feed.segments(&["subscription", "events"]));
        let v: serde_json::Value = self.client.json(&call).await?;
        let list = v
            .get("subscriptions")
            .cloned()
            .unwrap_or(serde_json::Value::Array(vec![]));
        let names: Vec<EventName> = from_value(&route, list, false)?;
        Ok(names.into_iter().map(|e| e.eventname).collect())
    }

    /// `GET /v1/{practiceid}/{feed}/changed/subscription` — current subscription.
    /// Safe to retry.
    pub async fn changed_subscription(&self, feed: Feed) -> Result<SubscriptionStatus, Error> {
        let route = format!("/v1/{{practiceid}}/{}/changed/subscription", feed.path());
        self.client
            .json(&self.get(route, &feed.segments(&["subscription"])))
            .await
    }

    /// `POST /v1/{practiceid}/{feed}/changed/subscription` — subscribe (takes effect after minutes).
    /// Retried on ambiguity: subscribing twice to the same events leaves the same state.
    pub async fn subscribe(&self, feed: Feed, req: &Subscribe) -> Result<(), Error> {
        let route = format!("/v1/{{practiceid}}/{}/changed/subscription", feed.path());
        let form = Form::new()
            .opt("eventname", req.event_name.as_ref())
            .list("departmentids", &req.department_ids);
        let call = self.write(
            Method::POST,
            route,
            &feed.segments(&["subscription"]),
            form.into_vec(),
            true,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `DELETE /v1/{practiceid}/{feed}/changed/subscription` — unsubscribe one event or (None) all.
    /// Safe to retry.
    pub async fn unsubscribe(&self, feed: Feed, event_name: Option<&str>) -> Result<(), Error> {
        let route = format!("/v1/{{practiceid}}/{}/changed/subscription", feed.path());
        let mut call = self.write(
            Method::DELETE,
            route,
            &feed.segments(&["subscription"]),
            Vec::new(),
            true,
        );
        call.form = None;
        call.query = Form::new().opt("eventname", event_name).into_vec();
        self.client.send(&call).await.map(|_| ())
    }

    /// `GET /v1/{practiceid}/{feed}/changed` — one destructive poll (see the module docs).
    /// Throttling and 401 are retried (athena did not process the request). A destructive poll whose answer
    /// is lost (timeout, reset, 5xx) is NOT retried: it fails with `Error::Ambiguous`, because athena may
    /// already have marked the records processed; recover them with [`PollParams::replay`] from the last
    /// durable checkpoint. Polls with `leave_unprocessed` or a replay window are plain reads and retried.
    pub async fn poll_changed(
        &self,
        feed: Feed,
        params: &PollParams,
    ) -> Result<ChangedPage, Error> {
        let mut call = self
            .get(feed.poll_route(), &feed.segments(&[]))
            .query(params.to_query());
        // A destructive poll is a GET that changes state: a lost answer may have marked records processed.
        // It is therefore NOT idempotent: a timeout/reset/5xx becomes Error::Ambiguous and the caller
        // replays its window instead of the client silently skipping what the lost answer carried.
        call.idempotent = params.leave_unprocessed || params.replay.is_some();
        let body: serde_json::Value = self.client.json(&call).await?;
        Ok(ChangedPage::from_json(feed, body))
    }

    /// A pager that drains a feed with repeated `limit=N` polls and no offset.
    pub fn changed_pager(&self, feed: Feed, params: PollParams, page_size: u32) -> ChangedPager {
        ChangedPager {
            client: self.clone(),
            feed,
            params,
            page_size: page_size.max(1),
            done: false,
        }
    }
}

/// Drains a destructive feed without offsets: each [`ChangedPager::next_page`] polls `limit=page_size`; a
/// page shorter than that (or empty) ends the drain. Persist each page before asking for the next.
#[derive(Debug, Clone)]
pub struct ChangedPager {
    client: PracticeClient,
    feed: Feed,
    params: PollParams,
    page_size: u32,
    done: bool,
}

impl ChangedPager {
    /// The next page, or `None` once a short/empty page was seen.
    pub async fn next_page(&mut self) -> Result<Option<ChangedPage>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut params = self.params.clone();
        params.limit = Some(self.page_size);
        let page = self.client.poll_changed(self.feed, &params).await?;
        // A replay window is not destructive but has no cursor either: one page only.
        if page.items.len() < self.page_size as usize
            || params.leave_unprocessed
            || params.replay.is_some()
        {
            self.done = true;
        }
        if page.items.is_empty() {
            return Ok(None);
        }
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn eastern_time_across_dst() {
        // 2024 DST starts Sun Mar 10 02:00 EST (07:00 UTC) and ends Sun Nov 3 02:00 EDT (06:00 UTC).
        let f = |y, mo, d, h, mi| format_eastern(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap());
        assert_eq!(f(2024, 1, 15, 17, 30), "01/15/2024 12:30:00"); // EST, -5
        assert_eq!(f(2024, 3, 10, 6, 59), "03/10/2024 01:59:00"); // just before spring forward
        assert_eq!(f(2024, 3, 10, 7, 0), "03/10/2024 03:00:00"); // 02:00 EST -> 03:00 EDT
        assert_eq!(f(2024, 7, 4, 16, 0), "07/04/2024 12:00:00"); // EDT, -4
        assert_eq!(f(2024, 11, 3, 5, 30), "11/03/2024 01:30:00"); // first 01:30 (EDT)
        assert_eq!(f(2024, 11, 3, 6, 30), "11/03/2024 01:30:00"); // second 01:30 (EST)
        assert_eq!(f(2024, 11, 3, 7, 0), "11/03/2024 02:00:00");
        assert_eq!(f(2024, 12, 31, 23, 59), "12/31/2024 18:59:00");
    }

    #[test]
    fn poll_query_has_no_offset() {
        let p = PollParams {
            leave_unprocessed: true,
            replay: Some((
                Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2024, 7, 1, 13, 0, 0).unwrap(),
            )),
            department_ids: vec!["1".into(), "2".into()],
            patient_ids: vec![],
            limit: Some(100),
            extra: vec![("showpreviouspatientids".into(), "true".into())],
        };
        let q = p.to_query();
        assert!(q.contains(&(
            "showprocessedstartdatetime".into(),
            "07/01/2024 08:00:00".into()
        )));
        assert!(q.contains(&("departmentid".into(), "1,2".into())));
        assert!(q.contains(&("limit".into(), "100".into())));
        assert!(!q.iter().any(|(k, _)| k == "offset"));
    }

    #[test]
    fn feeds_and_pages() {
        assert_eq!(
            Feed::Problems.poll_route(),
            "/v1/{practiceid}/chart/healthhistory/problems/changed"
        );
        assert_eq!(
            Feed::Problems.segments(&["subscription"]),
            vec![
                "chart",
                "healthhistory",
                "problems",
                "changed",
                "subscription"
            ]
        );
        let page = ChangedPage::from_json(
            Feed::Appointments,
            serde_json::json!({"appointments":[{"appointmentid":"1"},{"appointmentid":2}],"totalcount":"2"}),
        );
        assert_eq!(page.ids(), vec![Some("1".into()), Some("2".into())]);
        assert_eq!(page.total_count, Some(2));
        let odd = ChangedPage::from_json(
            Feed::Vaccines,
            serde_json::json!({"historicalvaccines":[{"x":1}]}),
        );
        assert_eq!(odd.items.len(), 1);
        let distinct: std::collections::HashSet<_> = Feed::ALL.iter().map(|f| f.path()).collect();
        assert_eq!(distinct.len(), Feed::ALL.len());
    }
}

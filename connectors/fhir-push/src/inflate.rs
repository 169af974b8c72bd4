//! The inflation stage: a consumer group over the notifications topic that turns each id-only
//! notification into typed events by reading the focus resource through the shared
//! [`athena_client::AthenaClient`] (and so through its per-key rate limiter).
//!
//! - Patients and appointments are read through the proprietary API, as the changed-data source
//!   reads them, and become `PatientChanged` / `AppointmentChanged` with the same deterministic
//!   event ids. A FHIR focus whose type has a typed clinical event (Observation, Condition,
//!   MedicationRequest, Immunization, Encounter, ... `athena_contracts::events::FHIR_RESOURCE_TYPES`)
//!   is read by id (`GET /fhir/r4/{type}/{id}`, the reference's "fetch with" for
//!   ClinicalEncounterDiagnosis, PatientProblem, HistoricalMedication, Prescription,
//!   HistoricalVaccine, Encounter) and mapped by the shared mapper
//!   ([`mapping::encode_typed_fhir`], the backfill's too) to its typed topic, keyed
//!   `practice/patient`; a resource that mapper rejects is dead-lettered like an unreadable
//!   focus. Other FHIR resources become `FhirResourceChanged`.
//! - A focus that is only an athena identifier of a record without a FHIR resource (Claim,
//!   LabResult, ImagingResult, Order, PatientCase, Provider, ReferringProvider) is read through
//!   the reference's "fetch with" call (`GET /claims/{id}`,
//!   `GET /patients/{patientid}/documents/{labresult|imagingresult|order|patientcase}/{id}` with
//!   the patient from the AuditEvent patient extension, `GET /providers/{id}`,
//!   `GET /referringproviders/{id}`) and mapped by the changed-data feed's mapper to that feed's
//!   event (`ClaimChanged`, `LabResultChanged`, ...), so a record version gets the id it gets
//!   on the changed-data path.
//! - A lab result, imaging result or order is also read as its FHIR resources ([`record_fhir`],
//!   decision 0027): the DiagnosticReport (with the Observations its `result` references) or
//!   ServiceRequest named after the record, by id, else a search of the notification's patient
//!   in a `_lastUpdated` window; they become the same typed events (same mapper, event id and
//!   payload) the changed-data enrichment and the bulk backfill produce for that version.
//! - Deduplication: `notificationEvent.id` (or the IG's subscription + event number) is
//!   remembered for the last `dedup_capacity` events of this process; a repeat is dropped. After
//!   a restart the ids are forgotten, but re-inflating a notification gives the same event id as
//!   long as the entity did not change again (the version is its change time).
//! - Ordering: an offset is committed only after every event of the notification was
//!   acknowledged by Kafka (or the notification was dead-lettered), so a crash re-inflates,
//!   never skips.
//! - Errors: athena outages and rate limits retry the same notification with capped backoff;
//!   a focus that no longer exists (404) is counted and skipped; a focus that can never be read
//!   (a reference that does not parse, a `urn:uuid:`, an unmappable record) sends the
//!   notification to the dead-letter queue (`__connect.errors.stage = TASK_PUT`) after its
//!   readable events were produced; a body that is not a notification goes there too
//!   (`VALUE_CONVERTER`). Neither stops the connector, and a failed dead-letter write is
//!   retried like an outage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use athena_client::api::changed::Feed;
use athena_client::api::records::DocumentKind;
use athena_client::model::FhirRef;
use athena_client::{AthenaClient, PracticeId};
use athena_contracts::envelope::event_headers;

use athena_contracts::events::{EventTypeVisitor, FeedEvent};
use athena_contracts::mapping::{self, Observation, TypedEventError};
use athena_contracts::{AppointmentChanged, FhirResourceChanged, PatientChanged, SourceKind};
use connector_core::avro::{AvroCodec, AvroRecord, Encoder};
use connector_core::dlq::{DeadLetterQueue, Stage};
use connector_core::emit::{ErrorRecorded, EventsProduced, InternalEvent};
use connector_core::headers::with_avro_data;
use connector_core::produce::produce_all;
use connector_core::retry::Backoff;
use connector_core::runtime::{TaskControl, TaskState};
use connector_core::{CoreError, ErrorClass};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::Instrument;

use crate::adapter::PushAdapter;
use crate::config::Config;
use crate::error::Error;
use crate::notification::{Notification, NotificationEvent, NotificationKind};

/// Retrying one notification: 200 ms doubling to 30 s, athena's `Retry-After` honoured up to
/// 60 s, without limit (the offset must not pass a notification athena may still answer).
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
    .with_max_retry_after(Duration::from_secs(60));

/// Remembers the last `cap` keys.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Dedup {
    /// An empty set holding at most `cap` keys.
    pub fn new(cap: usize) -> Self {
        Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }
    /// Whether `k` was inserted recently.
    pub fn contains(&self, k: &str) -> bool {
        self.seen.contains(k)
    }
    /// Remembers `k`, forgetting the oldest key when full.
    pub fn insert(&mut self, k: String) {
        if self.seen.insert(k.clone()) {
            self.order.push_back(k);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}

/// An athenaOne record id from outside (identifier value, the tail of a FHIR id): numeric at
/// athena; anything beyond ASCII letters and digits (`..`, `/`, `%`) is refused before it
/// becomes a path segment.
fn athena_id(v: &str) -> Result<&str, Error> {
    if (1..=32).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(v)
    } else {
        Err(Error::UnsupportedFocus(
            "athena id is not alphanumeric".into(),
        ))
    }
}

/// The FHIR resource types whose `system/{Type}.read` scopes inflating a notification of
/// `topic` (`Family.event`, reference §7.4) needs: the focus's own type, plus the FHIR
/// resources a lab result, imaging result or order focus is also read as
/// ([`record_fhir`]); empty when everything is read through the proprietary API ("Fetch
/// with": patients, appointments, claims, patient cases, providers). The scopes
/// `athena-connect` requests for a push connector are derived from this, so it must agree with
/// how [`Inflater`] reads each family.
pub fn focus_fhir_types(topic: &str) -> Vec<&str> {
    let family = topic.split('.').next().unwrap_or(topic);
    match family {
        "" | "Patient" | "Appointment" | "Claim" | "PatientCase" | "Provider"
        | "ReferringProvider" => Vec::new(),
        "LabResult" | "ImagingResult" | "Order" => record_fhir(&family.to_ascii_lowercase())
            .map(|r| r.types.to_vec())
            .unwrap_or_default(),
        "ClinicalEncounterDiagnosis" | "PatientProblem" => vec!["Condition"],
        "HistoricalMedication" | "Prescription" => vec!["MedicationRequest"],
        "HistoricalVaccine" => vec!["Immunization"],
        // Encounter, and any family named after its FHIR resource.
        other => vec![other],
    }
}

/// How the FHIR resources of a record named by athena identifier are read, beside the record
/// itself (decision 0027).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFhir {
    /// `(resource type, id token)`: the resource named `a-{practice}.{token}-{record id}`
    /// (the id guess decision 0023 and the changed-data enrichment use), read by id.
    pub by_id: (&'static str, &'static str),
    /// The types searched by patient and `_lastUpdated` window when that read answers 404.
    pub types: &'static [&'static str],
}

/// The FHIR side of a record focus (`labresult`, `imagingresult`, `order`): the same resources
/// the changed-data enrichment of that record's feed reads, so push and changed data give the
/// same typed events. `None` for records without a FHIR resource (claims, patient cases,
/// providers).
pub fn record_fhir(entity: &str) -> Option<RecordFhir> {
    let r = |by_id, types| Some(RecordFhir { by_id, types });
    match entity {
        // A lab report's analytes are Observations its `result` references.
        "labresult" => r(
            ("DiagnosticReport", "labresult"),
            &["DiagnosticReport", "Observation"],
        ),
        "imagingresult" => r(("DiagnosticReport", "imagingresult"), &["DiagnosticReport"]),
        "order" => r(("ServiceRequest", "order"), &["ServiceRequest"]),
        _ => None,
    }
}

/// How far before a notification's change time the fallback `_lastUpdated` search reaches
/// (clock skew between athena's commit time and `meta.lastUpdated`, as the changed-data
/// enrichment's default window).
pub const RECORD_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Resources of one patient search page (the client follows `next` links).
const SEARCH_COUNT: u32 = 100;

/// Most `result` Observations of one DiagnosticReport read by id (a hostile report cannot
/// make one notification read without bound).
const MAX_RESULTS: usize = 100;

/// The athena patient id of a document focus, from the AuditEvent patient extension.
fn document_patient(e: &NotificationEvent) -> Result<&str, Error> {
    let patient = e
        .patient
        .as_deref()
        .and_then(|r| r.strip_prefix("Patient/"))
        .and_then(athena_client::api::fhir::ids::patient_id)
        .ok_or_else(|| {
            Error::UnsupportedFocus("a document focus without the AuditEvent patient".into())
        })?;
    athena_id(patient)
}

/// The changed-data feeds whose events records named by athena identifier become
/// ([`record_feed`]).
pub const RECORD_FEEDS: [Feed; 7] = [
    Feed::Claims,
    Feed::LabResults,
    Feed::ImagingResults,
    Feed::Orders,
    Feed::PatientCases,
    Feed::Providers,
    Feed::ReferringProviders,
];

/// The changed-data feed whose event a record named by athena identifier `entity` becomes.
fn record_feed(entity: &str) -> Option<Feed> {
    Some(match entity {
        "claim" => Feed::Claims,
        "labresult" => Feed::LabResults,
        "imagingresult" => Feed::ImagingResults,
        "order" => Feed::Orders,
        "patientcase" => Feed::PatientCases,
        "provider" => Feed::Providers,
        "referringprovider" => Feed::ReferringProviders,
        _ => return None,
    })
}

/// Encodes a proprietary record as its feed's event (the changed-data mapper).
struct EncodeRecord<'a> {
    practice: &'a str,
    raw: &'a serde_json::Value,
    obs: &'a Observation,
    schema_id: u32,
    topic: String,
}

impl EventTypeVisitor for EncodeRecord<'_> {
    type Output = Result<Option<Out>, Error>;
    fn visit<T: FeedEvent>(self) -> Self::Output {
        let Some(ev) = mapping::from_athena::<T>(self.practice, self.raw, self.obs) else {
            return Ok(None);
        };
        let value = Encoder::<T>::with_id(self.schema_id)?.encode(&ev)?;
        let env = ev.envelope();
        Ok(Some(Out {
            event_id: env.event_id.clone(),
            key: format!("{}/{}", self.practice, env.entity_id),
            headers: event_headers(
                env,
                T::SCHEMA_NAME,
                &format!("athena://{}/{}", self.practice, T::ENTITY_TYPE),
            ),
            topic: self.topic,
            value,
        }))
    }
}

/// What inflating one notification did.
#[derive(Debug, Default)]
pub struct Handled {
    /// Events produced and acknowledged.
    pub produced: usize,
    /// The first event whose focus could never be read (permanent), if any.
    pub unreadable: Option<Error>,
}

/// One encoded event ready to produce.
struct Out {
    /// The envelope's event id (one notification's events are deduplicated on it).
    event_id: String,
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: OwnedHeaders,
}

/// The inflation stage of one push connector.
pub struct Inflater {
    connector: String,
    adapter: Arc<dyn PushAdapter>,
    athena: AthenaClient,
    practice: u64,
    producer: FutureProducer,
    patients: (String, Encoder<PatientChanged>),
    appointments: (String, Encoder<AppointmentChanged>),
    resources: (String, Encoder<FhirResourceChanged>),
    /// Topic and registered schema id of each typed FHIR event.
    typed: HashMap<&'static str, (String, u32)>,
    /// Topic and schema id of each feed event a record focus became, resolved on first use
    /// (a deployment that never receives such topics needs no such schema).
    records: std::sync::Mutex<HashMap<Feed, (String, u32)>>,
    record_topics: HashMap<Feed, String>,
    codec: AvroCodec,
    include_original: bool,
    dedup: Dedup,
    dlq: DeadLetterQueue,
    notifications_topic: String,
    /// Set while this inflater holds partition 0 of the notifications topic (see
    /// [`Inflater::with_leader_flag`]).
    leader: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Resolves the encoders (registry lookups) for the configured topics.
    pub async fn new(
        name: &str,
        config: &Config,
        adapter: Arc<dyn PushAdapter>,
        codec: &AvroCodec,
        producer: FutureProducer,
        athena: AthenaClient,
    ) -> Result<Self, Error> {
        let (pt, at, rt) = (
            config.patients_topic(),
            config.appointments_topic(),
            config.fhir_resources_topic(),
        );
        let mut typed = HashMap::new();
        for ty in athena_contracts::events::FHIR_RESOURCE_TYPES {
            let topic = config
                .typed_topic(ty)
                .expect("a typed type has a typed topic");
            let id = mapping::typed_schema_id(codec, ty, &topic)
                .await
                .expect("from the FHIR table")?;
            typed.insert(*ty, (topic, id));
        }
        let record_topics = RECORD_FEEDS
            .into_iter()
            .map(|f| (f, config.record_topic(f)))
            .collect();
        Ok(Inflater {
            typed,
            records: std::sync::Mutex::new(HashMap::new()),
            record_topics,
            codec: codec.clone(),
            connector: name.to_string(),
            adapter,
            athena,
            practice: config.practice_id,
            patients: (pt.clone(), codec.encoder(&pt).await?),
            appointments: (at.clone(), codec.encoder(&at).await?),
            resources: (rt.clone(), codec.encoder(&rt).await?),
            include_original: config.include_original,
            dedup: Dedup::new(config.dedup_capacity),
            dlq: DeadLetterQueue::new(producer.clone(), config.dlq.clone(), name, "inflate"),
            producer,
            notifications_topic: config.notifications_topic.clone(),
            leader: None,
        })
    }

    /// Keeps `flag` set while this inflater holds partition 0 of the notifications topic
    /// (checked every second while it waits for a notification): of the replicas of one push
    /// connector, the one whose flag is set runs the singleton duties, the catch-up read and
    /// the subscription re-check after a gap (decision 0026). The group gives partition 0 to
    /// exactly one member, and a dead member's partition to another after the session timeout.
    pub fn with_leader_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.leader = Some(flag);
        self
    }

    fn note_leadership<C: rdkafka::consumer::ConsumerContext>(&self, consumer: &StreamConsumer<C>) {
        if let Some(flag) = &self.leader {
            let holds = consumer
                .assignment()
                .is_ok_and(|a| holds_first_partition(&a, &self.notifications_topic));
            flag.store(holds, Ordering::Relaxed);
        }
    }

    fn obs(&self, n: &Notification) -> Observation {
        Observation {
            source: SourceKind::FhirPush,
            event_name: n.topic_code().map(str::to_owned),
            snapshot: false,
            include_original: self.include_original,
        }
    }

    /// Reads the focus of event `i` and encodes its event (`None`: nothing to emit).
    async fn inflate_one(&self, n: &Notification, i: usize) -> Result<Option<Out>, Error> {
        let e = &n.events[i];
        let obs = self.obs(n);
        let pid = self.practice.to_string();
        let practice = self.athena.practice(PracticeId(self.practice));
        let by_ident = e.focus.athena_identifier();
        // A reference we cannot use is fine when the athena identifier names the record.
        let by_fhir = match e.focus.fhir_ref() {
            Ok(r) => r,
            Err(_) if by_ident.is_some() => None,
            Err(why) => return Err(Error::UnsupportedFocus(format!("reference: {why}"))),
        };
        let entity = match (&by_fhir, by_ident) {
            (Some(r), _) if r.resource_type == "Patient" => "patient",
            (_, Some(("patient", _, _))) => "patient",
            (_, Some(("appointment", _, _))) => "appointment",
            (Some(_), _) => "fhir",
            (None, Some((e, _, _))) if record_feed(e).is_some() => "record",
            _ => {
                return Err(Error::UnsupportedFocus(
                    "no reference or athena identifier".into(),
                ));
            }
        };
        match entity {
            "patient" => {
                let id = by_ident
                    .map(|(_, _, v)| v.to_string())
                    .or_else(|| {
                        by_fhir.as_ref().and_then(|r| {
                            athena_client::api::fhir::ids::patient_id(&r.id).map(str::to_owned)
                        })
                    })
                    .ok_or_else(|| Error::UnsupportedFocus("patient without athena id".into()))?;
                let rec = practice.get_patient(athena_id(&id)?).await?;
                let Some(ev) = mapping::patient_from_athena(&pid, &rec.raw, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
                    event_id: ev.envelope.event_id.clone(),
                    topic: self.patients.0.clone(),
                    key: format!("{pid}/{}", ev.payload.patient_id),
                    value: self.patients.1.encode(&ev)?,
                    headers: event_headers(
                        &ev.envelope,
                        PatientChanged::SCHEMA_NAME,
                        &format!("athena://{pid}/patients"),
                    ),
                }))
            }
            "appointment" => {
                let (_, _, id) = by_ident.expect("matched above");
                let rec = practice.get_appointment(athena_id(id)?).await?;
                let Some(ev) = mapping::appointment_from_athena(&pid, &rec.raw, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
                    event_id: ev.envelope.event_id.clone(),
                    topic: self.appointments.0.clone(),
                    key: format!("{pid}/{}", ev.payload.appointment_id),
                    value: self.appointments.1.encode(&ev)?,
                    headers: event_headers(
                        &ev.envelope,
                        AppointmentChanged::SCHEMA_NAME,
                        &format!("athena://{pid}/appointments"),
                    ),
                }))
            }
            "record" => {
                let (ident, _, id) = by_ident.expect("matched above");
                let id = athena_id(id)?;
                let feed = record_feed(ident).expect("matched above");
                let raw = match ident {
                    "claim" => practice.get_claim(id).await?.raw,
                    "provider" => practice.get_provider(id).await?,
                    "referringprovider" => practice.get_referring_provider(id).await?,
                    other => {
                        let kind = match other {
                            "labresult" => DocumentKind::LabResult,
                            "imagingresult" => DocumentKind::ImagingResult,
                            "order" => DocumentKind::Order,
                            _ => DocumentKind::PatientCase,
                        };
                        practice
                            .get_patient_document(document_patient(e)?, kind, id)
                            .await?
                    }
                };
                let (topic, schema_id) = self.record_schema(feed).await?;
                athena_contracts::events::visit(
                    feed,
                    EncodeRecord {
                        practice: &pid,
                        raw: &raw,
                        obs: &obs,
                        schema_id,
                        topic,
                    },
                )
            }
            _ => {
                let target = by_fhir.expect("matched above");
                let r = self.athena.fhir_read(&target).await?;
                if let Some(o) = self.typed_out(&pid, &r, &obs)? {
                    return Ok(Some(o));
                }
                let Some(ev) = mapping::resource_from_fhir(&pid, &r, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
                    event_id: ev.envelope.event_id.clone(),
                    topic: self.resources.0.clone(),
                    key: format!("{pid}/{}/{}", ev.resource_type, ev.fhir_id),
                    value: self.resources.1.encode(&ev)?,
                    headers: event_headers(
                        &ev.envelope,
                        FhirResourceChanged::SCHEMA_NAME,
                        &format!("athena://{pid}/fhir/{}", ev.resource_type),
                    ),
                }))
            }
        }
    }

    /// The typed event of FHIR resource `r` through the shared mapper (the one every path
    /// calls), or `None` when its type has no typed event; a resource the mapper rejects is a
    /// permanent error (the notification is dead-lettered).
    fn typed_out(
        &self,
        pid: &str,
        r: &serde_json::Value,
        obs: &Observation,
    ) -> Result<Option<Out>, Error> {
        let ty = r.get("resourceType").and_then(serde_json::Value::as_str);
        let Some((topic, schema_id)) = ty.and_then(|t| self.typed.get(t)) else {
            return Ok(None);
        };
        let e = match mapping::encode_typed_fhir(pid, r, obs, *schema_id)
            .expect("typed types come from the FHIR table")
        {
            Ok(e) => e,
            Err(TypedEventError::Map(e)) => return Err(e.into()),
            Err(TypedEventError::Encode(e)) => return Err(e.into()),
        };
        Ok(Some(Out {
            event_id: e.event_id,
            topic: topic.clone(),
            key: e.key,
            value: e.value,
            headers: e.headers,
        }))
    }

    /// The typed FHIR events of event `i` when its focus is a record with FHIR resources
    /// ([`record_fhir`]: lab result, imaging result, order), beside the record's own event:
    /// the resource named after the record read by id (a lab report with the Observations its
    /// `result` references, also by id), else, when that read answers 404, a search of the
    /// notification's patient in the `_lastUpdated` window reaching [`RECORD_WINDOW`] before
    /// the change, following `next` links. In `meta.lastUpdated` order. Empty for any other
    /// focus.
    async fn inflate_record_fhir(&self, n: &Notification, i: usize) -> Result<Vec<Out>, Error> {
        let e = &n.events[i];
        // A focus with a usable FHIR reference is read as that resource by `inflate_one`.
        if matches!(e.focus.fhir_ref(), Ok(Some(_))) {
            return Ok(Vec::new());
        }
        let Some((entity, _, id)) = e.focus.athena_identifier() else {
            return Ok(Vec::new());
        };
        let Some(plan) = record_fhir(entity) else {
            return Ok(Vec::new());
        };
        let (id, patient) = (athena_id(id)?, document_patient(e)?);
        let pid = self.practice.to_string();
        let (ty, token) = plan.by_id;
        let target = FhirRef {
            base: None,
            resource_type: ty.to_string(),
            id: format!("a-{pid}.{token}-{id}"),
            version: None,
        };
        let mut found = match self.athena.fhir_read(&target).await {
            Ok(report) => {
                let results = if plan.types.contains(&"Observation") {
                    result_refs(&report)
                } else {
                    Vec::new()
                };
                let mut found = vec![report];
                for r in results {
                    match self.athena.fhir_read(&r).await {
                        Ok(o) => found.push(o),
                        // Gone since the report was read: nothing to emit for it.
                        Err(athena_client::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                found
            }
            // The id guess missed (or the resource is gone): search the patient's window.
            Err(athena_client::Error::NotFound { .. }) => {
                let window = chrono::Duration::from_std(RECORD_WINDOW).unwrap_or_default();
                let since = e.timestamp.unwrap_or_else(chrono::Utc::now) - window;
                let mut found = Vec::new();
                for ty in plan.types {
                    match self
                        .athena
                        .fhir_search_patient(
                            PracticeId(self.practice),
                            ty,
                            patient,
                            Some(since),
                            SEARCH_COUNT,
                        )
                        .await
                    {
                        Ok(v) => found.extend(v),
                        Err(athena_client::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                found
            }
            Err(e) => return Err(e.into()),
        };
        // One patient's resources in change order (the changed-data enrichment's order too).
        found.sort_by_key(|r| mapping::fhir_version(r).1);
        let obs = self.obs(n);
        let mut outs = Vec::new();
        for r in &found {
            outs.extend(self.typed_out(&pid, r, &obs)?);
        }
        Ok(outs)
    }

    /// Topic and schema id of `feed`'s event, looked up in the registry on first use.
    async fn record_schema(&self, feed: Feed) -> Result<(String, u32), Error> {
        if let Some(t) = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&feed)
        {
            return Ok(t.clone());
        }
        let topic = self.record_topics[&feed].clone();
        let id = mapping::feed_schema_id(&self.codec, feed, &topic).await?;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(feed, (topic.clone(), id));
        Ok((topic, id))
    }

    /// Inflates one raw notification; returns how many events were produced (all acknowledged).
    /// Events whose focus cannot be read are skipped here; [`Inflater::handle_detailed`] says
    /// which.
    pub async fn handle(&mut self, payload: &[u8]) -> Result<usize, Error> {
        Ok(self.handle_detailed(payload).await?.produced)
    }

    /// Inflates one raw notification. Every readable event is produced and acknowledged; the
    /// first permanent per-event failure (a focus that cannot be parsed, mapped or read) is
    /// returned beside the count, so the caller can dead-letter the notification without
    /// holding up its other events or the partition.
    pub async fn handle_detailed(&mut self, payload: &[u8]) -> Result<Handled, Error> {
        let n = self.adapter.parse(payload)?;
        if n.kind != NotificationKind::EventNotification {
            return Ok(Handled::default());
        }
        let mut outs = Vec::new();
        let mut keys = Vec::new();
        let mut unreadable = None;
        for i in 0..n.events.len() {
            let key = n.dedup_key(i);
            if let Some(k) = &key
                && (self.dedup.contains(k) || keys.contains(k))
            {
                tracing::debug!(connector = %self.connector, "Dropped a duplicate notification event.");
                continue;
            }
            // The focus's own event, then (for a lab result, imaging result or order) the
            // typed FHIR events of the same change. A record that cannot be read is handled
            // (skipped or dead-lettered) once, without its FHIR reads.
            let own = self.inflate_one(&n, i).await.map(Vec::from_iter);
            let fhir = match own {
                Ok(_) => self.inflate_record_fhir(&n, i).await,
                Err(_) => Ok(Vec::new()),
            };
            for read in [own, fhir] {
                match read {
                    Ok(events) => {
                        for o in events {
                            if !outs
                                .iter()
                                .any(|x: &Out| x.event_id == o.event_id && x.topic == o.topic)
                            {
                                outs.push(o);
                            }
                        }
                    }
                    // Deleted since the notification (or never visible to us): nothing to
                    // emit, counted and skipped as the connector page documents.
                    Err(Error::Athena(athena_client::Error::NotFound { .. })) => {
                        tracing::info!(connector = %self.connector, "Skipped a notification event whose focus no longer exists (404).");
                        self.count_permanent();
                    }
                    Err(e) if e.class() == ErrorClass::Permanent => {
                        tracing::warn!(connector = %self.connector, error = %e, "A notification event's focus cannot be read; the notification goes to the dead-letter queue.");
                        self.count_permanent();
                        unreadable.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            keys.extend(key);
        }
        // Send every event, then await every acknowledgement (no one-at-a-time awaits).
        let acked = produce_all(
            &self.producer,
            outs.iter().map(|o| {
                FutureRecord::to(&o.topic)
                    .key(&o.key)
                    .payload(&o.value)
                    .headers(with_avro_data(o.headers.clone(), &o.value))
            }),
        )
        .await
        .map_err(|f| CoreError::Kafka {
            operation: "produce inflated event",
            source: f.source,
        })?;
        for k in keys {
            self.dedup.insert(k);
        }
        EventsProduced {
            connector: &self.connector,
            feed: crate::gap::PUSH_FEED,
            count: acked as u64,
        }
        .emit();
        Ok(Handled {
            produced: acked,
            unreadable,
        })
    }

    fn count_permanent(&self) {
        ErrorRecorded {
            connector: &self.connector,
            class: "permanent",
        }
        .emit();
    }

    /// Consumes the notifications topic until shutdown. Returns Err only for fatal errors.
    pub async fn run<C: rdkafka::consumer::ConsumerContext + 'static>(
        mut self,
        consumer: StreamConsumer<C>,
        mut control: TaskControl,
    ) -> Result<(), Error> {
        consumer
            .subscribe(&[self.notifications_topic.as_str()])
            .map_err(|source| CoreError::Kafka {
                operation: "subscribe to notifications",
                source,
            })?;
        // Partition 0's holder is the connector's leader; looked at every second.
        let mut leadership = tokio::time::interval(Duration::from_secs(1));
        leadership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if control.is_paused() {
                control.wait_resumed().await;
            }
            let msg: OwnedMessage = tokio::select! {
                _ = control.shutdown_requested() => break,
                _ = leadership.tick() => {
                    self.note_leadership(&consumer);
                    continue;
                }
                m = consumer.recv() => match m {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(connector = %self.connector, error = %e, "Notification consumer error; continuing.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            // The notification's CONSUMER span continues the webhook's trace (its
            // `traceparent`); the events inflated from it carry this span's context.
            let span =
                connector_core::telemetry::process_span(msg.topic(), msg.partition(), msg.offset());
            if let Some(h) = msg.headers() {
                connector_core::headers::continue_trace(&span, h);
            }
            // Retries the same notification while athena or Kafka is down; a notification
            // that can never be inflated goes to the dead-letter topic and the offset moves on.
            let mut failures = 0u32;
            loop {
                let payload = msg.payload().unwrap_or_default();
                // A notification with an unreadable focus still had its readable events
                // produced; it is then parked like one that can never be inflated at all.
                let handled = self.handle_detailed(payload).instrument(span.clone()).await;
                let (e, stage) = match handled {
                    Ok(Handled {
                        unreadable: Some(e),
                        ..
                    }) => (e, Stage::Task),
                    Ok(_) => {
                        control.clear_error();
                        break;
                    }
                    Err(e) => {
                        let stage = if matches!(e, Error::BadNotification(_)) {
                            Stage::ValueConverter
                        } else {
                            Stage::Task
                        };
                        (e, stage)
                    }
                };
                failures = failures.saturating_add(1);
                let Some(wait) = RETRY.wait_for(e.class(), failures) else {
                    if e.class() == ErrorClass::Fatal {
                        control.report_error(format!("fatal: {e}"));
                        control.set_state(TaskState::Failed);
                        return Err(e);
                    }
                    // A failed dead-letter write is retried, never fatal: the notification
                    // stays uncommitted until its dead letter is acknowledged.
                    let reason = e.dlq_reason(stage);
                    let parked = connector_core::retry::retry(
                        &RETRY,
                        &control.shutdown_token(),
                        |e: &CoreError| match e.class() {
                            ErrorClass::Fatal => ErrorClass::Fatal,
                            _ => ErrorClass::Retriable,
                        },
                        |e, a| tracing::warn!(connector = %self.connector, error = %e, attempt = a.number, "Dead-letter write failed; retrying."),
                        || self.dlq.send_reason(&msg, &reason),
                    )
                    .await;
                    match parked {
                        Ok(()) => break,
                        Err(_) if control.is_shutdown() => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                };
                control.report_error(format!(
                    "retrying: {}",
                    crate::error::class_label(e.class())
                ));
                tracing::warn!(connector = %self.connector, error = %e, wait_ms = wait.as_millis() as u64, "Inflation failed; retrying the same notification.");
                tokio::select! {
                    _ = control.shutdown_requested() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(
                msg.topic(),
                msg.partition(),
                Offset::Offset(msg.offset() + 1),
            )
            .map_err(|source| CoreError::Kafka {
                operation: "commit notifications",
                source,
            })?;
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(connector = %self.connector, error = %e, "Offset commit failed; the notification may be re-inflated.");
            }
        }
        Ok(())
    }
}

/// The Observations a DiagnosticReport's `result` references (relative `Observation/{id}`
/// only, at most [`MAX_RESULTS`]); anything else is ignored.
fn result_refs(report: &serde_json::Value) -> Vec<FhirRef> {
    report
        .get("result")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("reference")?.as_str())
        .filter_map(|r| FhirRef::parse(r).ok())
        .filter(|r| r.base.is_none() && r.resource_type == "Observation")
        .map(|r| FhirRef { version: None, ..r })
        .take(MAX_RESULTS)
        .collect()
}

/// Whether `assignment` holds partition 0 of `topic` (the push connector's leader, decision 0026).
pub fn holds_first_partition(assignment: &TopicPartitionList, topic: &str) -> bool {
    assignment
        .elements_for_topic(topic)
        .iter()
        .any(|e| e.partition() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_ids_from_outside_are_checked() {
        assert_eq!(athena_id("528595").unwrap(), "528595");
        for bad in ["", "..", "1/2", "1%2F", "a b", &"9".repeat(33)] {
            assert!(athena_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_leader_is_the_holder_of_partition_zero() {
        let mut a = TopicPartitionList::new();
        a.add_partition("notifications", 1);
        a.add_partition("other", 0);
        assert!(!holds_first_partition(&a, "notifications"));
        a.add_partition("notifications", 0);
        assert!(holds_first_partition(&a, "notifications"));
        assert!(!holds_first_partition(
            &TopicPartitionList::new(),
            "notifications"
        ));
    }

    #[test]
    fn dedup_is_bounded() {
        let mut d = Dedup::new(2);
        d.insert("a".into());
        d.insert("b".into());
        d.insert("a".into());
        assert!(d.contains("a") && d.contains("b"));
        d.insert("c".into());
        assert!(!d.contains("a"));
        assert!(d.contains("b") && d.contains("c"));
    }

    #[test]
    fn scopes_follow_how_each_family_is_read() {
        for proprietary in [
            "Patient.update",
            "Appointment.check-in",
            "Claim.create",
            "PatientCase.add-note",
            "Provider.update",
            "ReferringProvider.create",
        ] {
            assert!(focus_fhir_types(proprietary).is_empty(), "{proprietary}");
        }
        assert_eq!(focus_fhir_types("Encounter.signoff"), ["Encounter"]);
        assert_eq!(focus_fhir_types("PatientProblem.create"), ["Condition"]);
        assert_eq!(
            focus_fhir_types("ClinicalEncounterDiagnosis.update"),
            ["Condition"]
        );
        assert_eq!(
            focus_fhir_types("Prescription.refill-create"),
            ["MedicationRequest"]
        );
        assert_eq!(
            focus_fhir_types("HistoricalVaccine.create"),
            ["Immunization"]
        );
        // Records read through "fetch with" and, beside it, as their FHIR resources.
        assert_eq!(
            focus_fhir_types("LabResult.close"),
            ["DiagnosticReport", "Observation"]
        );
        assert_eq!(
            focus_fhir_types("ImagingResult.create"),
            ["DiagnosticReport"]
        );
        assert_eq!(focus_fhir_types("Order.signoff"), ["ServiceRequest"]);
    }

    #[test]
    fn a_lab_report_names_its_observations() {
        let report = serde_json::json!({"resourceType": "DiagnosticReport", "result": [
            {"reference": "Observation/a-1.labanalyte-7"},
            {"reference": "Observation/a-1.labanalyte-8/_history/2"},
            {"reference": "Specimen/a-1.specimen-1"},
            {"reference": "https://elsewhere.example/fhir/Observation/x"},
            {"reference": "Observation/../x"},
            {"display": "no reference"}
        ]});
        let ids: Vec<String> = result_refs(&report).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a-1.labanalyte-7", "a-1.labanalyte-8"]);
        assert!(result_refs(&serde_json::json!({"result": "x"})).is_empty());
    }
}

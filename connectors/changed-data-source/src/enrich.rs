//! Change-driven FHIR enrichment (decision 0023): a clinical changed-data row is a signal that
//! one patient's chart changed; the enricher reads the affected FHIR resources through the
//! shared [`AthenaClient`] (so through its per-key rate limiter) and produces their typed events
//! with the one mapper every path uses ([`mapping::encode_typed_fhir`]), so a resource version
//! gets the same event id and payload here as through push inflation and the bulk backfill.
//!
//! - **What is read**: by id where the row names the resource (the simulator's and, we guess,
//!   athena's `a-{practice}.{token}-{record id}`: problems, allergies, medications, vaccines,
//!   prescriptions, imaging results, orders), falling back to the window search when that read
//!   answers 404; else (lab results, visits, appointments, patients) a `patient` + `_lastUpdated
//!   ge <row time − enrich_window>` search per resource type, following `next` links. A page's
//!   rows are merged per patient (each named resource read once, one search per type with the
//!   widest window). A `patients` row also reads the patient's proprietary insurance packages,
//!   produced as `CoverageChanged` (decision 0028).
//! - **Stateless**: no per-patient cursor. A window that overlaps an earlier one re-emits the
//!   same versions under the same deterministic event ids (resource id + version), which
//!   consumers already deduplicate for push and replay; a million patients cost nothing to
//!   remember.
//! - **Delivery**: the typed events of a page are produced and acknowledged before the feed's
//!   marker is cleared (the caller awaits [`Enricher::enrich`] inside the drain), so a crash
//!   replays the rows and reads again: at-least-once, like the rows. In exactly-once mode the
//!   typed events are written outside the page's transaction (at-least-once, acknowledged before
//!   it commits).
//! - **Bad resources** (decision 0028; missing required fields, wrong type) go to the typed
//!   topic's dead-letter topic with the `__connect.errors.*` context; unknown code systems pass
//!   through as given; an event Kafka refuses for good is sent without `original`, then
//!   dead-lettered; the page completes. athena outages and throttling fail the step, which the
//!   feed retries.
//! - **Order** (decision 0028): events are keyed `practice/patient`; each patient's reads,
//!   mapping and produce run under the patient's lock, shared by all feed tasks, so a later read
//!   is produced later and each resource's versions read back in change order; one read's
//!   resources are produced in `meta.lastUpdated` order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use athena_client::api::changed::Feed;
use athena_client::model::FhirRef;
use athena_client::{AthenaClient, PracticeId};
use athena_contracts::SourceKind;
use athena_contracts::mapping::{self, Observation, TypedEventError};
use chrono::{DateTime, Utc};
use connector_core::avro::AvroCodec;
use connector_core::dlq::{DeadLetterQueue, Reason, Stage};
use connector_core::emit::{EventsProduced, InternalEvent};
use connector_core::produce::produce_each;
use connector_core::{CoreError, ErrorClass};
use futures::{FutureExt, StreamExt};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::config::Config;
use crate::error::Error;

/// Resources of one patient search page (the client follows `next` links).
const SEARCH_COUNT: u32 = 100;

/// Shards of the per-patient lock.
const PATIENT_LOCKS: usize = 256;

/// How the resources a feed's row signals are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Resource types searched by patient and `_lastUpdated` window.
    pub types: &'static [&'static str],
    /// `(row id field, resource type, id token)` when a row names its resource by id.
    pub by_id: Option<(&'static str, &'static str, &'static str)>,
    /// Whether the patient's proprietary insurance packages are read too (decision 0028).
    pub insurances: bool,
}

/// The enrichment plan of `feed` (`None`: the feed signals no FHIR resource).
pub fn plan(feed: Feed) -> Option<Plan> {
    let p = |types, by_id| {
        Some(Plan {
            types,
            by_id,
            insurances: false,
        })
    };
    match feed {
        Feed::Problems => p(&["Condition"], Some(("problemid", "Condition", "problem"))),
        Feed::Allergies => p(
            &["AllergyIntolerance"],
            Some(("allergenid", "AllergyIntolerance", "allergy")),
        ),
        Feed::Medications => p(
            &["MedicationRequest"],
            Some((
                "medicationentryid",
                "MedicationRequest",
                "historicalmedication",
            )),
        ),
        Feed::Vaccines => p(
            &["Immunization"],
            Some(("vaccineid", "Immunization", "vaccine")),
        ),
        Feed::Prescriptions => p(
            &["MedicationRequest"],
            Some(("prescriptionid", "MedicationRequest", "prescription")),
        ),
        Feed::LabResults => p(&["DiagnosticReport", "Observation"], None),
        Feed::ImagingResults => p(
            &["DiagnosticReport"],
            Some(("imagingresultid", "DiagnosticReport", "imagingresult")),
        ),
        Feed::Orders => p(
            &["ServiceRequest"],
            Some(("orderid", "ServiceRequest", "order")),
        ),
        Feed::Visits => p(
            &["Encounter", "Observation", "DocumentReference", "Condition"],
            None,
        ),
        Feed::Appointments => p(&["Encounter"], None),
        // athena keeps insurance on the patient: a patient row signals both readings of it.
        Feed::Patients => Some(Plan {
            types: &["Coverage"],
            by_id: None,
            insurances: true,
        }),
        _ => None,
    }
}

/// One row's signal: which patient, and the resource it names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// athena patient id.
    pub patient: String,
    /// The resource the row names by id.
    pub by_id: Option<FhirRef>,
    /// Start of the `_lastUpdated` window.
    pub since: DateTime<Utc>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An athena id from a row (hostile input): ASCII alphanumerics only, bounded.
fn clean_id(s: String) -> Option<String> {
    ((1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(s)
}

/// The signals of a page of `feed` rows: one per row naming a patient, deduplicated.
pub fn signals(
    feed: Feed,
    practice: &str,
    items: &[Value],
    window: Duration,
    now: DateTime<Utc>,
) -> Vec<Signal> {
    let Some(plan) = plan(feed) else {
        return Vec::new();
    };
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(10));
    let mut out: Vec<Signal> = Vec::new();
    for rec in items {
        let Some(patient) = rec.get("patientid").and_then(text).and_then(clean_id) else {
            continue;
        };
        let changed = mapping::athena_version(rec).1.unwrap_or(now).min(now);
        let by_id = plan.by_id.and_then(|(field, ty, token)| {
            let id = rec.get(field).and_then(text).and_then(clean_id)?;
            Some(FhirRef {
                base: None,
                resource_type: ty.to_string(),
                id: format!("a-{practice}.{token}-{id}"),
                version: None,
            })
        });
        let s = Signal {
            patient,
            by_id,
            since: changed - window,
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// One encoded typed event.
struct Out {
    topic: String,
    /// Full name of the event's schema (to drop `original` from a refused event).
    schema: &'static str,
    key: String,
    value: Vec<u8>,
    headers: OwnedHeaders,
    event_id: String,
}

/// The enrichment stage shared by a connector's feed tasks.
#[derive(Clone)]
pub struct Enricher {
    connector: String,
    athena: AthenaClient,
    producer: FutureProducer,
    dlq: DeadLetterQueue,
    /// Topic and registered schema id of each typed FHIR event.
    typed: HashMap<&'static str, (String, u32)>,
    keep_original: bool,
    window: Duration,
    concurrency: usize,
    /// Per-patient turn taking shared by the feed tasks (see [`Enricher::patient_lock`]).
    locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Enricher {
    /// Resolves the schema id of every typed topic (registry lookups).
    pub async fn new(
        connector: &str,
        config: &Config,
        codec: &AvroCodec,
        athena: AthenaClient,
        producer: FutureProducer,
        dlq: DeadLetterQueue,
    ) -> Result<Self, Error> {
        let mut typed = HashMap::new();
        for ty in athena_contracts::events::FHIR_RESOURCE_TYPES {
            let topic = config.typed_topic(ty);
            let id = mapping::typed_schema_id(codec, ty, &topic)
                .await
                .expect("from the FHIR table")?;
            typed.insert(*ty, (topic, id));
        }
        Ok(Enricher {
            connector: connector.to_string(),
            athena,
            producer,
            dlq,
            typed,
            keep_original: config.keep_original,
            window: config.enrich_window,
            concurrency: config.enrich_concurrency,
            locks: (0..PATIENT_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// The `_lastUpdated` window reaching back from each row's change time.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Reads the resources `signals` point at and produces their typed events; returns how
    /// many were acknowledged. `Err` (athena unreachable or throttled beyond the client's
    /// retries, Kafka down) means the page must be read again.
    pub async fn enrich(
        &self,
        feed: Feed,
        practice: &str,
        signals: &[Signal],
        replayed: bool,
    ) -> Result<usize, Error> {
        let Some(plan) = plan(feed) else {
            return Ok(0);
        };
        let obs = Observation {
            source: SourceKind::ChangedData,
            event_name: None,
            snapshot: true,
            include_original: self.keep_original,
        };
        let _ = replayed;
        // One unit of work per patient: its rows' reads merged (one search per type, one read
        // per named resource), so a page never reads one resource twice.
        let mut patients: Vec<(&str, Vec<&Signal>)> = Vec::new();
        for s in signals {
            match patients.iter_mut().find(|(p, _)| *p == s.patient) {
                Some((_, v)) => v.push(s),
                None => patients.push((&s.patient, vec![s])),
            }
        }
        // Patients overlap (athena answers in ~100 ms; the shared limiter, not this loop,
        // bounds the rate); each patient's events are ordered by its own lock.
        // At most `concurrency` reads of this page in flight (the limiter bounds the rate; an
        // unbounded queue behind it would time requests out).
        let permits = tokio::sync::Semaphore::new(self.concurrency.max(1));
        let futs: Vec<futures::future::BoxFuture<'_, Result<usize, Error>>> = patients
            .into_iter()
            .map(|(patient, sigs)| {
                self.enrich_patient(plan, practice, patient, sigs, &obs, &permits)
                    .boxed()
            })
            .collect();
        let done = futures::stream::iter(futs)
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut acked = 0usize;
        for d in done {
            acked += d?;
        }
        Ok(acked)
    }

    /// Reads, maps and produces one patient's signalled resources while holding the patient's
    /// lock, so that across every feed task of the connector a later read of the patient is
    /// produced after an earlier one: a resource's versions never read back out of order (a
    /// read returns the resource's current version), and one read's resources go out in
    /// `meta.lastUpdated` order.
    async fn enrich_patient(
        &self,
        plan: Plan,
        practice: &str,
        patient: &str,
        signals: Vec<&Signal>,
        obs: &Observation,
        permits: &tokio::sync::Semaphore,
    ) -> Result<usize, Error> {
        let pid = PracticeId(practice.parse::<u64>().unwrap_or_default());
        let _turn = self.patient_lock(patient).lock().await;
        let mut found = self.read(pid, plan, patient, &signals, permits).await?;
        found.sort_by_key(|r| mapping::fhir_version(r).1);
        let mut seen: HashSet<String> = HashSet::new();
        let mut outs: Vec<Out> = Vec::new();
        for r in &found {
            if let Some(o) = self.encode(practice, r, obs).await?
                && seen.insert(o.event_id.clone())
            {
                outs.push(o);
            }
        }
        if plan.insurances {
            let _permit = permits.acquire().await;
            outs.extend(self.insurances(pid, practice, patient, obs).await?);
        }
        self.produce(outs).await
    }

    /// The Coverage events of the patient's proprietary insurance packages (`GET
    /// /patients/{id}/insurances`, decision 0028); a package that does not map is
    /// dead-lettered, a patient athena no longer knows (404) has none.
    async fn insurances(
        &self,
        pid: PracticeId,
        practice: &str,
        patient: &str,
        obs: &Observation,
    ) -> Result<Vec<Out>, Error> {
        let Some((topic, schema_id)) = self.typed.get("Coverage") else {
            return Ok(Vec::new());
        };
        let list = match self.athena.practice(pid).insurances(patient).await {
            Ok(l) => l,
            Err(athena_client::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Error::Athena(e)),
        };
        let mut outs = Vec::new();
        for i in &list {
            match mapping::encode_insurance(practice, patient, &i.raw, obs, *schema_id) {
                Ok(e) => outs.push(Out {
                    topic: topic.clone(),
                    schema: <athena_contracts::events::coverages::CoverageChanged as connector_core::avro::AvroRecord>::SCHEMA_NAME,
                    key: e.key,
                    value: e.value,
                    headers: e.headers,
                    event_id: e.event_id,
                }),
                Err(TypedEventError::Map(e)) => self.unmappable(topic, &i.raw, &e).await?,
                Err(TypedEventError::Encode(e)) => return Err(e.into()),
            }
        }
        Ok(outs)
    }

    /// Parks a record the typed mapper rejects in `topic`'s dead-letter topic.
    async fn unmappable(
        &self,
        topic: &str,
        r: &Value,
        e: &athena_contracts::events::fhir::FhirMapError,
    ) -> Result<(), Error> {
        let reason = Reason::new(
            Stage::ValueConverter,
            ErrorClass::Permanent,
            "changed_data_source::Unmappable",
            e,
        );
        tracing::warn!(connector = %self.connector, error = %e, "A resource does not map; parking it in the dead-letter topic.");
        let body = r.to_string();
        self.dlq
            .send_unwritten(topic, None, Some(body.as_bytes()), None, &reason)
            .await?;
        Ok(())
    }

    /// The lock of `patient`'s shard (a fixed number of shards: bounded memory for any number
    /// of patients; two patients sharing a shard only wait for each other).
    fn patient_lock(&self, patient: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        patient.hash(&mut h);
        &self.locks[(h.finish() % self.locks.len() as u64) as usize]
    }

    /// The resources one patient's signals point at: each named resource read by id; the
    /// types searched once in the widest `_lastUpdated` window of the signals that name none
    /// (or whose read answered 404).
    async fn read(
        &self,
        pid: PracticeId,
        plan: Plan,
        patient: &str,
        signals: &[&Signal],
        permits: &tokio::sync::Semaphore,
    ) -> Result<Vec<Value>, Error> {
        let mut found: Vec<Value> = Vec::new();
        let mut since: Option<DateTime<Utc>> = None;
        let widen = |since: &mut Option<DateTime<Utc>>, s: &Signal| {
            *since = Some(since.map_or(s.since, |t| t.min(s.since)));
        };
        // Each named resource once; the reads overlap (the shared limiter bounds the rate).
        let mut named: Vec<(&FhirRef, &Signal)> = Vec::new();
        for s in signals {
            match &s.by_id {
                Some(r) => {
                    match named
                        .iter_mut()
                        .find(|(x, _)| x.id == r.id && x.resource_type == r.resource_type)
                    {
                        // The earliest change time, should the read fall back to the window.
                        Some((_, first)) if s.since < first.since => *first = s,
                        Some(_) => {}
                        None => named.push((r, s)),
                    }
                }
                None => widen(&mut since, s),
            }
        }
        let reads = futures::future::join_all(named.iter().map(|(r, _)| async move {
            let _permit = permits.acquire().await;
            self.athena.fhir_read(r).await
        }))
        .await;
        for ((_, s), read) in named.iter().zip(reads) {
            match read {
                Ok(v) => found.push(v),
                // The id guess missed (or the resource is gone): search the window.
                Err(athena_client::Error::NotFound { .. }) => widen(&mut since, s),
                Err(e) => return Err(Error::Athena(e)),
            }
        }
        let Some(since) = since else {
            return Ok(found);
        };
        for ty in plan.types {
            let _permit = permits.acquire().await;
            match self
                .athena
                .fhir_search_patient(pid, ty, patient, Some(since), SEARCH_COUNT)
                .await
            {
                Ok(v) => found.extend(v),
                Err(athena_client::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::Athena(e)),
            }
        }
        Ok(found)
    }

    /// Encodes one resource; a resource the mapper rejects is dead-lettered (`None`).
    async fn encode(
        &self,
        practice: &str,
        r: &Value,
        obs: &Observation,
    ) -> Result<Option<Out>, Error> {
        let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
        let Some((topic, schema_id)) = self.typed.get(ty) else {
            return Ok(None);
        };
        let e = match mapping::encode_typed_fhir(practice, r, obs, *schema_id)
            .expect("typed types come from the FHIR table")
        {
            Ok(e) => e,
            Err(TypedEventError::Map(e)) => {
                self.unmappable(topic, r, &e).await?;
                return Ok(None);
            }
            Err(TypedEventError::Encode(e)) => return Err(e.into()),
        };
        Ok(Some(Out {
            topic: topic.clone(),
            schema: athena_contracts::events::fhir_spec(ty).map_or("", |s| s.schema_name),
            key: e.key,
            value: e.value,
            headers: e.headers,
            event_id: e.event_id,
        }))
    }

    /// Produces every event and awaits every acknowledgement. An event Kafka refuses for good
    /// (too large, invalid) is sent once more without `original` (the PHI-minimised form, same
    /// event id); refused again, it is parked in its topic's dead-letter topic with a
    /// `KAFKA_PRODUCE` reason: the full event, else the minimised one, else the headers alone
    /// (they name the event id), so not even a dead-letter topic's size limit stalls the feed.
    /// A transient failure fails the step (the page is read again).
    async fn produce(&self, outs: Vec<Out>) -> Result<usize, Error> {
        if outs.is_empty() {
            return Ok(0);
        }
        let results = produce_each(
            &self.producer,
            outs.iter().map(|o| {
                FutureRecord::to(&o.topic)
                    .key(&o.key)
                    .payload(&o.value)
                    .headers(o.headers.clone())
            }),
        )
        .await;
        let mut acked = 0usize;
        for (o, r) in outs.iter().zip(results) {
            match r {
                Ok(_) => acked += 1,
                Err(source) => {
                    let e = permanent(source)?;
                    if self.refused(o, e).await? {
                        acked += 1;
                    }
                }
            }
        }
        EventsProduced {
            connector: &self.connector,
            feed: "fhir_enrichment",
            count: acked as u64,
        }
        .emit();
        Ok(acked)
    }

    /// Event `o` was refused for good: its minimised form, else the dead-letter topic. Returns
    /// whether the (minimised) event itself landed.
    async fn refused(&self, o: &Out, mut e: CoreError) -> Result<bool, Error> {
        // Our own encoding, so a failure here cannot happen; it only means "no slim form".
        let slim = connector_core::avro::without_optional_field(&o.value, o.schema, "original")
            .ok()
            .flatten();
        if let Some(slim) = &slim {
            tracing::warn!(connector = %self.connector, event_id = %o.event_id, "Kafka refused an enriched event for good; sending it without `original`.");
            let r = produce_each(
                &self.producer,
                std::iter::once(
                    FutureRecord::to(&o.topic)
                        .key(&o.key)
                        .payload(slim)
                        .headers(o.headers.clone()),
                ),
            )
            .await;
            match r.into_iter().next().expect("one record") {
                Ok(_) => return Ok(true),
                Err(source) => e = permanent(source)?,
            }
        }
        tracing::warn!(connector = %self.connector, event_id = %o.event_id, error = %e, "Kafka refused an enriched event for good; parking it in the dead-letter topic.");
        let reason = Reason::from_core(&e, Stage::KafkaProduce);
        let mut values = vec![Some(o.value.as_slice())];
        values.extend(slim.as_deref().map(Some));
        values.push(None);
        let mut last = None;
        for value in values {
            match self
                .dlq
                .send_unwritten(
                    &o.topic,
                    Some(o.key.as_bytes()),
                    value,
                    Some(&o.headers),
                    &reason,
                )
                .await
            {
                Ok(()) => return Ok(false),
                Err(e) if e.class() == ErrorClass::Permanent => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.expect("at least one dead letter was tried").into())
    }
}

/// The error of a refused produce when it is permanent (`Err` when the step must fail).
fn permanent(source: rdkafka::error::KafkaError) -> Result<CoreError, Error> {
    let e = CoreError::Kafka {
        operation: "produce enriched event",
        source,
    };
    if e.class() == ErrorClass::Permanent {
        Ok(e)
    } else {
        Err(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_signals_by_id_or_window() {
        let now = Utc::now();
        let rows = [
            json!({"vaccineid": 3001, "patientid": 60178, "lastmodified": "12/07/2026 10:00:00"}),
            json!({"vaccineid": 3001, "patientid": 60178, "lastmodified": "12/07/2026 10:00:00"}),
            json!({"vaccineid": "../x", "patientid": 60179}),
            json!({"vaccineid": 3002}),
        ];
        let s = signals(
            Feed::Vaccines,
            "195900",
            &rows,
            Duration::from_secs(60),
            now,
        );
        assert_eq!(s.len(), 2, "deduplicated, patientless row dropped: {s:?}");
        assert_eq!(
            s[0].by_id.as_ref().map(|r| r.id.as_str()),
            Some("a-195900.vaccine-3001")
        );
        assert!(s[1].by_id.is_none(), "a hostile id is not a path segment");
        assert!(s[1].since <= now - chrono::Duration::seconds(60));
        let labs = signals(
            Feed::LabResults,
            "195900",
            &[json!({"labresultid": 1, "patientid": "60178"})],
            Duration::from_secs(60),
            now,
        );
        assert!(labs[0].by_id.is_none());
        assert!(signals(Feed::Claims, "1", &rows, Duration::ZERO, now).is_empty());
    }
}

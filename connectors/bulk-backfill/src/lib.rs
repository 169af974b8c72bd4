//! The FHIR Bulk `$export` backfill: onboard a practice or re-sync it periodically by streaming
//! `Group/a-1.C-{practiceid}/$export` output into Avro snapshot events (`snapshot = true`,
//! `source = BULK_EXPORT`), with the same event ids the changed-data and push paths give.
//!
//! # Layout
//! - [`config`]: the `backfill` config section.
//! - [`state`]: the checkpoint (status URL, manifest, per-file progress, next `_since`).
//! - [`progress`]: `indicatif` bar on a terminal, log lines otherwise.
//! - [`lock`]: one run per export at a time, a Kafka consumer group as the lock (a second run
//!   is refused with [`Error::AlreadyRunning`]).
//! - [`run_backfill`]: the whole run; `bin/bulk-backfill.rs` is a thin CLI around it.
//!
//! # Resumption and delivery
//! Kick-off, manifest and per-file progress are checkpointed on a compacted topic
//! ([`connector_core::checkpoint::KafkaCheckpointStore`]). A file's progress moves only after
//! Kafka acknowledged every event of the lines it covers, every `checkpoint_every` records and
//! at the end of each file. A restarted backfill skips finished files, re-downloads the file it
//! was in and skips the acknowledged lines, so it loses nothing and re-emits at most
//! `checkpoint_every` records (with unchanged event ids), never a whole file. The manifest's
//! `transactionTime` becomes the next run's `_since` only once every file is done.
//!
//! # Patient event ids
//! With `patient_source = "athena"` (the default, decision record 0010) each exported `Patient`
//! is re-read through `GET /patients/{id}` and mapped like the push path maps it, so its event id
//! is the changed-data/push id of the patient's current state. The reads run
//! `patient_lookup_concurrency` at a time through an ordered buffer, so events still leave in
//! NDJSON line order and "lines acknowledged" keeps meaning a prefix of the file. A patient gone
//! since the export (404) falls back to the FHIR mapping and is counted in
//! [`Summary::patients_fallback`].
//!
//! # Typed clinical events
//! Every exported type with a typed event (Observation, Condition, Encounter, ... as listed by
//! `athena_contracts::events::FHIR_RESOURCE_TYPES`) is mapped by the same mapper push inflation
//! and enrichment use ([`mapping::typed_from_fhir`]) to its own topic ([`Config::typed_topic`]),
//! keyed `practice/patient`; the rest stays `FhirResourceChanged`. A resource the typed mapper
//! rejects (a field US Core requires is missing) is skipped, counted in [`Summary::skipped`] and
//! logged by resource type, line and field, never content.

pub mod config;
pub mod lock;
pub mod progress;
pub mod state;

use std::time::Duration;

use athena_client::api::bulk::{ExportJob, ExportPolling, ExportRequest, ManifestFile};
use athena_client::{AthenaClient, PracticeClient, PracticeId};
use std::collections::HashMap;

use athena_contracts::envelope::event_headers;
use athena_contracts::events::fhir::{FhirEvent, FhirMapError};
use athena_contracts::events::{FhirEventVisitor, fhir_visit};
use athena_contracts::mapping::{self, Observation, TypedEventError};
use athena_contracts::{FhirResourceChanged, PatientChanged, SourceKind};
use chrono::{DateTime, Utc};
use connector_core::avro::{AvroCodec, AvroRecord, Encoder};
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
use connector_core::config::Validate;
use connector_core::headers::{retrace, with_avro_data};
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::produce::produce_all;
use connector_core::retry::Backoff;
use connector_core::runtime::{RunEnv, TaskControl, TaskState};
use connector_core::{CoreError, ErrorClass};
use futures::StreamExt;
use futures::future::BoxFuture;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tracing::Instrument;

pub use config::{Config, PatientSource};
use state::{BackfillState, FileState, JobState, ManifestState};

/// Errors of the backfill.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An athena call failed.
    #[error("athena: {0}")]
    Athena(#[from] athena_client::Error),
    /// Kafka, the registry or configuration failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The stored checkpoint cannot be read (someone else's value under our key?).
    #[error("backfill checkpoint `{key}` is unreadable: {message}")]
    Checkpoint {
        /// Checkpoint key.
        key: String,
        /// Decoder message (no payload).
        message: String,
    },
    /// Another run of the same backfill (name and practice) holds its lock.
    #[error(
        "backfill already running: consumer group `{group}` (the lock of this backfill) has \
         members {holders}; wait for that run to finish or stop it (a crashed run's lock frees \
         itself after the session timeout)"
    )]
    AlreadyRunning {
        /// The lock group.
        group: String,
        /// Who holds it (`client_id@host`, or how it was found).
        holders: String,
    },
    /// This run lost its lock (it stalled past the group session timeout); it stopped before
    /// writing its checkpoint again.
    #[error("backfill lock lost; stopped before the next checkpoint write (rerun to resume)")]
    LockLost,
    /// The lock could not be set up (a thread or task failed).
    #[error("backfill lock: {0}")]
    Lock(String),
    /// An output file kept failing mid-download.
    #[error("download of a {resource_type} file failed {attempts} times")]
    Download {
        /// Resource type of the file.
        resource_type: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl Error {
    /// The one place errors are classified.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Athena(e) => match e.class() {
                athena_client::ErrorClass::Retriable | athena_client::ErrorClass::Ambiguous => {
                    ErrorClass::Retriable
                }
                athena_client::ErrorClass::RateLimited { retry_after } => {
                    ErrorClass::RateLimited { retry_after }
                }
                athena_client::ErrorClass::Permanent => ErrorClass::Permanent,
                athena_client::ErrorClass::Fatal => ErrorClass::Fatal,
            },
            Error::Core(e) => e.class(),
            Error::Checkpoint { .. }
            | Error::AlreadyRunning { .. }
            | Error::LockLost
            | Error::Lock(_) => ErrorClass::Fatal,
            Error::Download { .. } => ErrorClass::Retriable,
        }
    }
}

/// Waiting before an interrupted download is resumed (at most 5 attempts per file).
const DOWNLOAD_RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Output files in the manifest.
    pub files: usize,
    /// Files already finished by an earlier, interrupted run.
    pub files_resumed_done: usize,
    /// Events produced and acknowledged by this run.
    pub events: u64,
    /// Records that could not be decoded or mapped (logged by line number, never content).
    pub skipped: u64,
    /// Patients whose proprietary record was gone (404) with `patient_source = "athena"`, so
    /// their snapshot was mapped from the FHIR resource (FHIR event id). Logged by patient id.
    pub patients_fallback: u64,
    /// The manifest's `transactionTime` (the next `_since`).
    pub transaction_time: Option<String>,
    /// Shutdown was requested before the end; the checkpoint holds the progress.
    pub interrupted: bool,
}

struct Out {
    topic: String,
    key: String,
    value: Vec<u8>,
    headers: OwnedHeaders,
}

/// What one NDJSON line became.
enum Line {
    /// Acknowledged by an earlier run: skipped without a read.
    Acknowledged,
    /// The event of the line.
    Event(Out),
    /// A `Patient` whose proprietary record is gone: the FHIR-mapped event.
    Fallback {
        /// The event.
        out: Out,
        /// athena patient id (an id, never PHI).
        patient_id: String,
    },
    /// A resource without a usable id.
    NoId,
    /// A resource its typed mapper rejects.
    Unmappable(FhirMapError),
    /// A line that is not JSON.
    NotJson,
    /// The download broke before this line.
    Broken,
}

/// Whether a failed `GET /patients/{id}` means the patient is gone (deleted or merged since the
/// export), so the line falls back to the FHIR mapping instead of failing the run. Only a 404:
/// throttling and 5xx were already retried by the client and fail the run (resumable), and any
/// other error says nothing about the patient.
pub fn patient_gone(e: &athena_client::Error) -> bool {
    matches!(e, athena_client::Error::NotFound { .. })
}

struct Sink {
    producer: FutureProducer,
    practice: String,
    patients: (String, Encoder<PatientChanged>),
    resources: (String, Encoder<FhirResourceChanged>),
    /// Topic and registered schema id of each exported type with a typed event.
    typed: HashMap<&'static str, (String, u32)>,
    obs: Observation,
    /// `Some` with `patient_source = "athena"`: where patients are re-read.
    patient_reader: Option<PracticeClient>,
}

impl Sink {
    /// The event of one exported resource, reading the patient's proprietary record first when
    /// configured to.
    async fn line(&self, r: &Value) -> Result<Line, Error> {
        let is_patient = r.get("resourceType").and_then(Value::as_str) == Some("Patient");
        let Some(reader) = self.patient_reader.as_ref().filter(|_| is_patient) else {
            return self.encode_fhir_line(r);
        };
        let Some(id) = r
            .get("id")
            .and_then(Value::as_str)
            .and_then(athena_client::api::fhir::ids::patient_id)
        else {
            return Ok(Line::NoId);
        };
        match reader.get_patient(id).await {
            Ok(rec) => {
                if let Some(out) = self.encode_patient_athena(&rec.raw)? {
                    return Ok(Line::Event(out));
                }
                // A record without `patientid` cannot give the changed-data id either.
            }
            Err(e) if patient_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(match self.encode_fhir(r)? {
            Some(out) => Line::Fallback {
                out,
                patient_id: id.to_string(),
            },
            None => Line::NoId,
        })
    }

    /// `PatientChanged` from a proprietary `GET /patients/{id}` record: the push inflater's
    /// mapping, hence the changed-data source's event id for the same record.
    fn encode_patient_athena(&self, raw: &Value) -> Result<Option<Out>, Error> {
        let Some(ev) = mapping::patient_from_athena(&self.practice, raw, &self.obs) else {
            return Ok(None);
        };
        Ok(Some(Out {
            topic: self.patients.0.clone(),
            key: format!("{}/{}", self.practice, ev.payload.patient_id),
            value: self.patients.1.encode(&ev)?,
            headers: event_headers(
                &ev.envelope,
                PatientChanged::SCHEMA_NAME,
                &format!("athena://{}/patients", self.practice),
            ),
        }))
    }

    /// The line of a FHIR resource as exported: its typed event when its type has one,
    /// otherwise [`Sink::encode_fhir`].
    fn encode_fhir_line(&self, r: &Value) -> Result<Line, Error> {
        let ty = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
        if let Some((topic, schema_id)) = self.typed.get(ty) {
            return match mapping::encode_typed_fhir(&self.practice, r, &self.obs, *schema_id)
                .expect("typed types come from the FHIR table")
            {
                Ok(e) => Ok(Line::Event(Out {
                    topic: topic.clone(),
                    key: e.key,
                    value: e.value,
                    headers: e.headers,
                })),
                Err(TypedEventError::Map(e)) => Ok(Line::Unmappable(e)),
                Err(TypedEventError::Encode(e)) => Err(e.into()),
            };
        }
        Ok(self.encode_fhir(r)?.map_or(Line::NoId, Line::Event))
    }

    /// The event of a FHIR resource as exported (FHIR version marker).
    fn encode_fhir(&self, r: &Value) -> Result<Option<Out>, Error> {
        if r.get("resourceType").and_then(Value::as_str) == Some("Patient") {
            let Some(ev) = mapping::patient_from_fhir(&self.practice, r, &self.obs) else {
                return Ok(None);
            };
            return Ok(Some(Out {
                topic: self.patients.0.clone(),
                key: format!("{}/{}", self.practice, ev.payload.patient_id),
                value: self.patients.1.encode(&ev)?,
                headers: event_headers(
                    &ev.envelope,
                    PatientChanged::SCHEMA_NAME,
                    &format!("athena://{}/patients", self.practice),
                ),
            }));
        }
        let Some(ev) = mapping::resource_from_fhir(&self.practice, r, &self.obs) else {
            return Ok(None);
        };
        Ok(Some(Out {
            topic: self.resources.0.clone(),
            key: format!("{}/{}/{}", self.practice, ev.resource_type, ev.fhir_id),
            value: self.resources.1.encode(&ev)?,
            headers: event_headers(
                &ev.envelope,
                FhirResourceChanged::SCHEMA_NAME,
                &format!("athena://{}/fhir/{}", self.practice, ev.resource_type),
            ),
        }))
    }

    /// Sends every event, then awaits every acknowledgement. Each batch is a trace of its
    /// own: a root PRODUCER span whose context is every event's `traceparent`.
    async fn flush(&self, batch: &mut Vec<Out>) -> Result<u64, Error> {
        let span =
            connector_core::telemetry::batch_send_span(batch.iter().map(|o| o.topic.as_str()));
        let headers: Vec<OwnedHeaders> = span.in_scope(|| {
            batch
                .iter()
                .map(|o| with_avro_data(retrace(&o.headers), &o.value))
                .collect()
        });
        let n = produce_all(
            &self.producer,
            batch.iter().zip(headers).map(|(o, h)| {
                FutureRecord::to(&o.topic)
                    .key(&o.key)
                    .payload(&o.value)
                    .headers(h)
            }),
        )
        .instrument(span)
        .await
        .map_err(|f| CoreError::Kafka {
            operation: "produce snapshot event",
            source: f.source,
        })? as u64;
        batch.clear();
        Ok(n)
    }
}

/// Resolves (registering when configured to) the schema id of a typed event on its topic.
struct ResolveTyped<'a> {
    codec: &'a AvroCodec,
    topic: String,
}

impl<'a> FhirEventVisitor for ResolveTyped<'a> {
    type Output = BoxFuture<'a, Result<u32, CoreError>>;
    fn visit<T: FhirEvent>(self) -> Self::Output {
        Box::pin(async move { Ok(self.codec.encoder::<T>(&self.topic).await?.schema_id()) })
    }
}

struct Checkpoint {
    store: KafkaCheckpointStore,
    key: String,
    /// Held for the whole run; dropped (released) with the checkpoint.
    lock: lock::ExportLock,
}

impl Checkpoint {
    async fn save(&self, s: &BackfillState) -> Result<(), Error> {
        // A run that lost its lock may share the key with a new holder: it writes nothing more.
        if self.lock.lost() {
            return Err(Error::LockLost);
        }
        Ok(self.store.save(&self.key, &s.to_bytes()).await?)
    }
}

fn parse_since(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The checkpoint key of backfill `name` for `practice`.
pub fn checkpoint_key(name: &str, practice: u64) -> String {
    format!("backfill/{name}/{practice}")
}

/// Runs one backfill to completion (or until `control` asks for shutdown, leaving the progress
/// in the checkpoint). Returns Err for errors that stop the run; a rerun resumes.
pub async fn run_backfill(
    name: &str,
    config: &Config,
    env: &RunEnv,
    athena: &AthenaClient,
    control: TaskControl,
) -> Result<Summary, Error> {
    config.validate()?;
    if config.topic_partitions > 0 {
        let admin = env.kafka.build_admin()?;
        // The patient and untyped topics, and every typed clinical event's topic.
        let typed = athena_contracts::events::FHIR_RESOURCE_TYPES
            .iter()
            .filter_map(|ty| config.typed_topic(ty));
        let topics: Vec<TopicSpec> = [config.patients_topic(), config.fhir_resources_topic()]
            .into_iter()
            .chain(typed)
            .map(|t| TopicSpec::new(t, config.topic_partitions))
            .collect();
        ensure_topics(&admin, env.kafka.replication_factor, &topics).await?;
    }
    // The lock before the checkpoint is read: a second run is refused before it touches
    // anything (decision 0026).
    let lock = lock::acquire(
        &env.kafka,
        &config.checkpoint_topic,
        name,
        config.practice_id,
    )
    .await?;
    let producer = env.kafka.build_producer()?;
    let cp = Checkpoint {
        store: KafkaCheckpointStore::open(&env.kafka, &config.checkpoint_topic, producer.clone())
            .await?,
        key: checkpoint_key(name, config.practice_id),
        lock,
    };
    let mut st = match cp.store.load().await?.get(&cp.key) {
        Some(b) => BackfillState::from_bytes(b).map_err(|e| Error::Checkpoint {
            key: cp.key.clone(),
            message: format!("line {} column {}", e.line(), e.column()),
        })?,
        None => BackfillState::default(),
    };
    let codec = AvroCodec::new(env.registry.clone())?;
    let (pt, rt) = (config.patients_topic(), config.fhir_resources_topic());
    let practice = PracticeId(config.practice_id);
    let mut typed = HashMap::new();
    for ty in config.typed_types() {
        let topic = config
            .typed_topic(ty)
            .expect("typed types have a typed topic");
        let resolve = ResolveTyped {
            codec: &codec,
            topic: topic.clone(),
        };
        let id = fhir_visit(ty, resolve)
            .expect("typed types come from the FHIR table")
            .await?;
        typed.insert(ty, (topic, id));
    }
    let sink = Sink {
        typed,
        patients: (pt.clone(), codec.encoder(&pt).await?),
        resources: (rt.clone(), codec.encoder(&rt).await?),
        producer,
        practice: config.practice_id.to_string(),
        obs: Observation {
            source: SourceKind::BulkExport,
            event_name: None,
            snapshot: true,
            include_original: config.include_original,
        },
        patient_reader: (config.patient_source == PatientSource::Athena)
            .then(|| athena.practice(practice)),
    };
    let polling = ExportPolling {
        min_interval: config.poll_min_interval,
        max_interval: config.poll_max_interval,
        timeout: config.export_timeout,
    };
    control.set_state(TaskState::Running);

    // Kick-off and manifest, resumable; an expired status URL starts a new export.
    let manifest = loop {
        if st.job.is_none() {
            let since = config
                .since
                .or_else(|| parse_since(st.next_since.as_deref()));
            let req = ExportRequest {
                types: config.types.clone(),
                since,
            };
            let job = athena.bulk_export_kickoff(practice, &req).await?;
            tracing::info!(practice = %practice, since = ?since, "Bulk export started.");
            st.job = Some(JobState {
                status_url: job.status_url.to_string(),
                since: since.map(|s| s.to_rfc3339()),
                manifest: None,
            });
            cp.save(&st).await?;
        }
        let job = st.job.as_ref().expect("set above");
        if let Some(m) = &job.manifest {
            break m.clone();
        }
        let status_url = url::Url::parse(&job.status_url).map_err(|_| Error::Checkpoint {
            key: cp.key.clone(),
            message: "stored status URL is not a URL".into(),
        })?;
        let export = ExportJob {
            practice,
            status_url,
        };
        let waited = tokio::select! {
            _ = control.shutdown_requested() => {
                return Ok(Summary { interrupted: true, ..Summary::default() });
            }
            r = athena.bulk_export_wait(&export, &polling) => r,
        };
        match waited {
            Ok(m) => {
                let ms = ManifestState {
                    transaction_time: m.transaction_time.clone(),
                    requires_access_token: m.requires_access_token,
                    files: m
                        .output
                        .iter()
                        .map(|f| FileState {
                            resource_type: f.resource_type.clone(),
                            url: f.url.clone(),
                            count: f.count,
                            lines_done: 0,
                            done: false,
                        })
                        .collect(),
                };
                if !m.error.is_empty() {
                    tracing::warn!(
                        files = m.error.len(),
                        "Bulk export reported error files (OperationOutcome); they are not read."
                    );
                }
                st.job.as_mut().expect("set").manifest = Some(ms.clone());
                cp.save(&st).await?;
                tracing::info!(files = ms.files.len(), "Bulk export manifest ready.");
                break ms;
            }
            Err(athena_client::Error::NotFound { .. }) => {
                tracing::warn!("Stored bulk export status URL expired; starting a new export.");
                st.job = None;
                cp.save(&st).await?;
            }
            Err(e) => return Err(e.into()),
        }
    };

    let total = manifest.files.iter().map(|f| f.count).sum::<Option<u64>>();
    let mut progress = progress::Progress::new(config.progress, total, config.log_interval);
    progress.resume_at(manifest.files.iter().map(|f| f.lines_done).sum());
    let mut summary = Summary {
        files: manifest.files.len(),
        files_resumed_done: manifest.files.iter().filter(|f| f.done).count(),
        transaction_time: manifest.transaction_time.clone(),
        ..Summary::default()
    };

    for i in 0..manifest.files.len() {
        let file = st
            .job
            .as_ref()
            .expect("set")
            .manifest
            .as_ref()
            .expect("set")
            .files[i]
            .clone();
        if file.done {
            continue;
        }
        let mf = ManifestFile {
            resource_type: file.resource_type.clone(),
            url: file.url.clone(),
            count: file.count,
        };
        let mut attempts = 0u32;
        'download: loop {
            attempts += 1;
            let already = st
                .job
                .as_ref()
                .expect("set")
                .manifest
                .as_ref()
                .expect("set")
                .files[i]
                .lines_done;
            let stream = athena
                .bulk_download(practice, &mf, manifest.requires_access_token)
                .await?;
            // Each line becomes a future (a patient read, or nothing); `buffered` runs up to
            // `patient_lookup_concurrency` of them but yields in line order, so the batch and
            // `lines_done` always cover a prefix of the file.
            let sink_ref = &sink;
            let lines = stream
                .enumerate()
                .map(|(n, item)| async move {
                    let line = n as u64 + 1;
                    let l = match item {
                        Err(athena_client::Error::Transport(_)) => Line::Broken,
                        _ if line <= already => Line::Acknowledged,
                        Err(_) => Line::NotJson,
                        Ok(v) => sink_ref.line(&v).await?,
                    };
                    Ok::<_, Error>((line, l))
                })
                .buffered(config.patient_lookup_concurrency);
            let mut lines = std::pin::pin!(lines);
            let mut batch = Vec::new();
            let mut batch_lines = 0u64;
            let mut interrupted = false;
            let mut failed = false;
            while let Some(next) = lines.next().await {
                let (line, l) = match next {
                    Ok(x) => x,
                    Err(e) => {
                        // Keep what the lines before this one produced, then stop the run.
                        summary.events += sink.flush(&mut batch).await?;
                        progress.inc(batch_lines);
                        advance(&mut st, i, batch_lines, false);
                        cp.save(&st).await?;
                        return Err(e);
                    }
                };
                match l {
                    Line::Broken => {
                        failed = true;
                        break;
                    }
                    Line::Acknowledged => continue,
                    Line::Event(out) => batch.push(out),
                    Line::Fallback { out, patient_id } => {
                        summary.patients_fallback += 1;
                        tracing::warn!(patient_id = %patient_id, line, "Exported patient is gone from athena (404); its snapshot is mapped from the FHIR resource.");
                        batch.push(out);
                    }
                    Line::Unmappable(e) => {
                        summary.skipped += 1;
                        tracing::warn!(resource_type = %file.resource_type, line, error = %e, "Skipped an export record its typed mapper rejects.");
                    }
                    Line::NoId => {
                        summary.skipped += 1;
                        tracing::warn!(resource_type = %file.resource_type, line, "Skipped an export record without a usable id.");
                    }
                    Line::NotJson => {
                        summary.skipped += 1;
                        tracing::warn!(resource_type = %file.resource_type, line, "Skipped an export line that is not JSON.");
                    }
                }
                batch_lines += 1;
                if batch_lines as usize >= config.checkpoint_every {
                    let n = sink.flush(&mut batch).await?;
                    summary.events += n;
                    progress.inc(batch_lines);
                    advance(&mut st, i, batch_lines, false);
                    cp.save(&st).await?;
                    batch_lines = 0;
                    if control.is_shutdown() {
                        interrupted = true;
                        break;
                    }
                }
            }
            // Whatever was read is made durable and recorded before anything else happens.
            let n = sink.flush(&mut batch).await?;
            summary.events += n;
            progress.inc(batch_lines);
            advance(&mut st, i, batch_lines, !failed && !interrupted);
            cp.save(&st).await?;
            if interrupted {
                progress.finish();
                summary.interrupted = true;
                return Ok(summary);
            }
            if !failed {
                break 'download;
            }
            if attempts >= 5 {
                return Err(Error::Download {
                    resource_type: file.resource_type.clone(),
                    attempts,
                });
            }
            tracing::warn!(resource_type = %file.resource_type, attempts, "Export download interrupted; resuming the file.");
            tokio::time::sleep(DOWNLOAD_RETRY.delay(attempts)).await;
        }
    }
    progress.finish();

    // Every file done: the transaction time becomes the next `_since`.
    st.next_since = manifest.transaction_time.clone();
    let status_url = st.job.take().map(|j| j.status_url);
    cp.save(&st).await?;
    if let Some(u) = status_url.and_then(|u| url::Url::parse(&u).ok()) {
        // Best-effort clean-up of athena's side.
        let _ = athena
            .bulk_export_cancel(&ExportJob {
                practice,
                status_url: u,
            })
            .await;
    }
    tracing::info!(
        events = summary.events,
        files = summary.files,
        skipped = summary.skipped,
        patients_fallback = summary.patients_fallback,
        "Backfill complete."
    );
    control.set_state(TaskState::Stopped);
    Ok(summary)
}

fn advance(st: &mut BackfillState, i: usize, lines: u64, done: bool) {
    if let Some(f) = st
        .job
        .as_mut()
        .and_then(|j| j.manifest.as_mut())
        .and_then(|m| m.files.get_mut(i))
    {
        f.lines_done += lines;
        f.done |= done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_404_is_a_gone_patient() {
        assert!(patient_gone(&athena_client::Error::NotFound {
            message: "The patient does not exist.".into()
        }));
        let server = athena_client::Error::Server {
            status: 503,
            message: None,
        };
        assert!(!patient_gone(&server));
        assert!(!patient_gone(&athena_client::Error::BulkExport("x".into())));
    }
}

//! The catch-up read after a push gap (decision 0009). athena rejects practice-wide FHIR "what
//! changed" searches, so the missed changes are read from the changed-data feeds, and only
//! **non-destructively** (`leaveunprocessed=true` plus a `showprocessed*` window): the read returns
//! the rows still unprocessed and the rows processed inside the window, and marks nothing, so it
//! never takes rows away from a changed-data source draining the same feed (only one destructive
//! consumer per feed is allowed).
//!
//! - Coverage: `Patient.*` topics → the `patients` feed, `Appointment.*` → `appointments`; each
//!   row becomes an event through the inflater's mapping (`athena_contracts::mapping`), so its id is the
//!   changed-data source's id for the same record state, with `replayed = true`. Topics without a
//!   feed (encounters, claims, ...) are reported as not covered, never silently ignored.
//! - Window: `[last_heard - catch_up_margin, now + 1s]`, where `last_heard` is the later of the
//!   last authentic notification and the start of the previous successful catch-up (at process
//!   start: the newest record on the notifications topic, capped at `catch_up_max_window`). Rows
//!   whose `lastmodified` predates the window start (by more than athena's one-second resolution)
//!   are skipped: that is unprocessed backlog the push path already delivered.
//! - Paging: `offset` over the non-destructive set, as the changed-data source's replay does
//!   (decision 0005). The window start stays fixed for the whole catch-up and its end only grows,
//!   so the selected set only grows at its end and a saved offset stays valid across ticks.
//! - Failures: a feed without a changed-data subscription (403) cannot be caught up: reported
//!   (warning, counter, task error), never subscribed on the user's behalf. Anything else
//!   (throttling, outages, Kafka) keeps the window and offsets and retries at the next tick. Only a
//!   catch-up that finished every feed moves `last_heard`. `catch_up_max_rows` bounds one tick's
//!   work per feed; the rest is read at the next tick from the saved offset.

use std::collections::BTreeSet;
use std::time::Duration;

use athena_client::api::changed::{Feed, PollParams};
use athena_client::{AthenaClient, PracticeId};
use athena_contracts::envelope::event_headers;
pub use athena_contracts::events::feed_name;
use athena_contracts::mapping::{self, Observation};
use athena_contracts::parse_athena_time;
use athena_contracts::{AppointmentChanged, PatientChanged, SourceKind};
use chrono::{DateTime, Utc};
use connector_core::avro::{AvroCodec, AvroRecord, Encoder};
use connector_core::emit::InternalEvent;
use connector_core::kafka::KafkaConfig;
use connector_core::produce::produce_all;
use connector_core::{CoreError, ErrorClass};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use tracing::Instrument;

use crate::config::Config;
use crate::error::Error;
use crate::inflate::Dedup;
use crate::telemetry::CatchUpRead;

/// Rows asked for per poll (athena allows up to 5000).
pub const PAGE_SIZE: u32 = 1000;

/// The changed-data feed that carries the entity of a push topic code (`Patient.update` →
/// `patients`), if there is one with a typed event both paths share.
pub fn feed_for_topic(topic: &str) -> Option<Feed> {
    match topic.split('.').next() {
        Some("Patient") => Some(Feed::Patients),
        Some("Appointment") => Some(Feed::Appointments),
        _ => None,
    }
}

/// What a catch-up can read for a set of subscribed topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Feeds to read, each once, in a stable order.
    pub feeds: Vec<Feed>,
    /// Topics whose changes a catch-up cannot read (no changed-data feed).
    pub uncovered: Vec<String>,
}

/// The feeds behind `topics` and the topics no feed covers.
pub fn coverage(topics: &[String]) -> Coverage {
    let mut feeds = BTreeSet::new();
    let mut uncovered = Vec::new();
    for t in topics {
        match feed_for_topic(t) {
            Some(f) => {
                feeds.insert(f);
            }
            None => uncovered.push(t.clone()),
        }
    }
    Coverage {
        feeds: feeds.into_iter().collect(),
        uncovered,
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `last_heard` at process start: the newest notification on the topic (`None`: empty topic →
/// `started`), no older than `max_window` before `started`. The flag says it was capped.
pub fn initial_last_heard(
    newest: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    max_window: Duration,
) -> (DateTime<Utc>, bool) {
    let floor = started - chrono(max_window);
    match newest {
        None => (started, false),
        // A clock skewed into the future must not push the window past now.
        Some(t) if t > started => (started, false),
        Some(t) if t < floor => (floor, true),
        Some(t) => (t, false),
    }
}

/// The start of a catch-up window: `last_heard - margin`, never earlier than `max_window` before
/// `now`. The flag says it was capped.
pub fn window_start(
    last_heard: DateTime<Utc>,
    margin: Duration,
    max_window: Duration,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, bool) {
    let start = last_heard - chrono(margin);
    let floor = now - chrono(max_window);
    if start < floor {
        (floor, true)
    } else {
        (start, false)
    }
}

/// Whether a feed row belongs to a window starting at `start`: its `lastmodified` (US Eastern,
/// whole seconds) is no older than `start - 1s`, or it has none (then it is emitted).
pub fn row_in_window(row: &Value, start: DateTime<Utc>) -> bool {
    match row
        .get("lastmodified")
        .and_then(Value::as_str)
        .and_then(parse_athena_time)
    {
        Some(t) => t >= start - chrono::Duration::seconds(1),
        None => true,
    }
}

/// The newest record timestamp on `topic` (the last record of each partition), or `None` when
/// the topic is empty. Blocking (runs in a blocking task).
pub async fn newest_record_time(
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Option<DateTime<Utc>>, Error> {
    // A probe: it reads one record per partition by assignment and commits nothing.
    let cfg = kafka.clone();
    let (group_id, topic) = (group_id.to_string(), topic.to_string());
    let kafka_err = |operation: &'static str| move |source| CoreError::Kafka { operation, source };
    tokio::task::spawn_blocking(move || -> Result<Option<DateTime<Utc>>, Error> {
        let (c, partitions) = probe_consumer(&cfg, &group_id, &topic, timeout)?;
        let mut tpl = TopicPartitionList::new();
        let mut want = 0usize;
        for p in partitions {
            let (low, high) = c
                .fetch_watermarks(&topic, p, timeout)
                .map_err(kafka_err("notifications watermarks"))?;
            if high > low {
                tpl.add_partition_offset(&topic, p, Offset::Offset(high - 1))
                    .map_err(kafka_err("notifications probe offsets"))?;
                want += 1;
            }
        }
        if want == 0 {
            return Ok(None);
        }
        c.assign(&tpl)
            .map_err(kafka_err("assign notifications probe"))?;
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = BTreeSet::new();
        let mut newest: Option<i64> = None;
        while seen.len() < want && std::time::Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    seen.insert(m.partition());
                    if let Some(ms) = m.timestamp().to_millis() {
                        newest = Some(newest.map_or(ms, |n| n.max(ms)));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "Notifications probe read error; continuing.");
                }
                None => {}
            }
        }
        Ok(newest.and_then(DateTime::from_timestamp_millis))
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// A consumer that reads `topic` by assignment and commits nothing, and the topic's
/// partitions (blocking: call from `spawn_blocking`).
pub(crate) fn probe_consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(BaseConsumer, Vec<i32>), Error> {
    let mut cfg = kafka.consumer_config(group_id);
    cfg.set("enable.auto.commit", "false");
    let c: BaseConsumer = cfg.create().map_err(|source| CoreError::Kafka {
        operation: "create notifications probe",
        source,
    })?;
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| CoreError::Kafka {
            operation: "notifications metadata",
            source,
        })?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    Ok((c, partitions))
}

/// A catch-up failure of one feed, as reported (ids and feed names only, no payloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFailure {
    /// The feed.
    pub feed: Feed,
    /// The feed has no changed-data subscription: retrying cannot help.
    pub not_subscribed: bool,
    /// PHI-free description.
    pub message: String,
}

/// What one [`CatchUp::step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Events produced (and acknowledged) in this step.
    pub events: usize,
    /// The catch-up finished every feed and moved `last_heard`.
    pub complete: bool,
    /// Some feed hit `catch_up_max_rows`; the next step continues it.
    pub truncated: bool,
    /// Feeds that failed in this step.
    pub failures: Vec<FeedFailure>,
    /// athena asked to wait this long before the next attempt.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone)]
struct FeedProgress {
    feed: Feed,
    offset: usize,
    done: bool,
}

/// One catch-up in progress: a fixed window start and per-feed offsets.
#[derive(Debug, Clone)]
struct Run {
    window_start: DateTime<Utc>,
    started_at: DateTime<Utc>,
    feeds: Vec<FeedProgress>,
}

enum FeedStep {
    Finished,
    Truncated,
}

/// The catch-up reader of one push connector.
pub struct CatchUp {
    connector: String,
    practice: u64,
    athena: AthenaClient,
    producer: FutureProducer,
    patients: (String, Encoder<PatientChanged>),
    appointments: (String, Encoder<AppointmentChanged>),
    include_original: bool,
    coverage: Coverage,
    margin: Duration,
    max_window: Duration,
    max_rows: usize,
    last_heard: DateTime<Utc>,
    run: Option<Run>,
    emitted: Dedup,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp")
            .field("connector", &self.connector)
            .field("last_heard", &self.last_heard)
            .field("pending", &self.run.is_some())
            .finish_non_exhaustive()
    }
}

impl CatchUp {
    /// A catch-up reader for connector `name` that considers everything up to `last_heard`
    /// delivered. Resolves the event encoders (registry lookups). Logs the subscribed topics a
    /// catch-up cannot cover, once.
    pub async fn new(
        name: &str,
        config: &Config,
        codec: &AvroCodec,
        producer: FutureProducer,
        athena: AthenaClient,
        last_heard: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let (pt, at) = (config.patients_topic(), config.appointments_topic());
        let coverage = coverage(&config.subscription_topics);
        if !coverage.uncovered.is_empty() {
            tracing::warn!(connector = %name, topics = ?coverage.uncovered, "A push gap catch-up cannot read these topics (no changed-data feed); run a backfill for them after a gap.");
        }
        if coverage.feeds.is_empty() {
            tracing::warn!(connector = %name, "No subscribed topic has a changed-data feed; a push gap catch-up reads nothing.");
        }
        Ok(CatchUp {
            connector: name.to_string(),
            practice: config.practice_id,
            athena,
            producer,
            patients: (pt.clone(), codec.encoder(&pt).await?),
            appointments: (at.clone(), codec.encoder(&at).await?),
            include_original: config.include_original,
            coverage,
            margin: config.catch_up_margin,
            max_window: config.catch_up_max_window,
            max_rows: config.catch_up_max_rows,
            last_heard,
            run: None,
            emitted: Dedup::new(config.dedup_capacity),
        })
    }

    /// Everything up to this time counts as delivered.
    pub fn last_heard(&self) -> DateTime<Utc> {
        self.last_heard
    }

    /// Records an authentic notification at `at` (moves `last_heard` forward only).
    pub fn note_heard(&mut self, at: DateTime<Utc>) {
        self.last_heard = self.last_heard.max(at);
    }

    /// A catch-up is in progress (failed or truncated) and should continue at the next tick.
    pub fn pending(&self) -> bool {
        self.run.is_some()
    }

    /// What this reader covers.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Starts a catch-up if none is in progress, then advances every unfinished feed by up to
    /// `catch_up_max_rows` rows. Returns Err never: failures are in the report (and counted and
    /// logged here), so the caller only decides when to call again.
    pub async fn step(&mut self) -> StepReport {
        let now = Utc::now();
        if self.run.is_none() {
            let (start, capped) = window_start(self.last_heard, self.margin, self.max_window, now);
            if capped {
                tracing::warn!(connector = %self.connector, max_window_secs = self.max_window.as_secs(), "Push catch-up window capped at catch_up_max_window; older changes are not read.");
            }
            CatchUpRead::Uncovered {
                connector: &self.connector,
                topics: self.coverage.uncovered.len(),
            }
            .emit();
            tracing::info!(connector = %self.connector, window_start = %start.to_rfc3339(), "Push catch-up: reading the changed-data feeds non-destructively.");
            self.run = Some(Run {
                window_start: start,
                started_at: now,
                feeds: self
                    .coverage
                    .feeds
                    .iter()
                    .map(|&feed| FeedProgress {
                        feed,
                        offset: 0,
                        done: false,
                    })
                    .collect(),
            });
        }
        let mut run = self.run.take().expect("set above");
        let mut report = StepReport::default();
        for i in 0..run.feeds.len() {
            if run.feeds[i].done {
                continue;
            }
            let feed = run.feeds[i].feed;
            match self
                .read_feed(
                    feed,
                    run.window_start,
                    &mut run.feeds[i].offset,
                    &mut report,
                )
                .await
            {
                Ok(FeedStep::Finished) => run.feeds[i].done = true,
                Ok(FeedStep::Truncated) => {
                    report.truncated = true;
                    tracing::warn!(connector = %self.connector, feed = feed_name(feed), rows = self.max_rows, "Push catch-up hit catch_up_max_rows; the rest is read at the next check.");
                }
                Err(e) => {
                    let not_subscribed = is_not_subscribed(&e);
                    CatchUpRead::Failed {
                        connector: &self.connector,
                        feed: feed_name(feed),
                    }
                    .emit();
                    let message = if not_subscribed {
                        // Retrying cannot help, and subscribing for the user would start a
                        // feed nobody drains; rows of the window never existed on it anyway.
                        run.feeds[i].done = true;
                        tracing::warn!(connector = %self.connector, feed = feed_name(feed), "Push catch-up impossible: the changed-data feed is not subscribed for this practice.");
                        format!(
                            "push catch-up: changed-data feed {} is not subscribed; its missed changes cannot be read",
                            feed_name(feed)
                        )
                    } else {
                        if let ErrorClass::RateLimited { retry_after } = e.class() {
                            report.retry_after = report.retry_after.max(retry_after);
                        }
                        tracing::warn!(connector = %self.connector, feed = feed_name(feed), error = %e, "Push catch-up read failed; retrying at the next check.");
                        format!(
                            "push catch-up of {} failed ({}); retrying",
                            feed_name(feed),
                            crate::error::class_label(e.class())
                        )
                    };
                    report.failures.push(FeedFailure {
                        feed,
                        not_subscribed,
                        message,
                    });
                }
            }
        }
        if run.feeds.iter().all(|f| f.done) {
            // Everything processed up to the moment this catch-up began was read.
            self.last_heard = self.last_heard.max(run.started_at);
            report.complete = true;
            tracing::info!(connector = %self.connector, events = report.events, "Push catch-up done.");
        } else {
            self.run = Some(run);
        }
        report
    }

    /// Reads one feed from `offset` until a short page or `max_rows` rows, producing each page
    /// and awaiting its acknowledgements before the offset moves past it.
    async fn read_feed(
        &mut self,
        feed: Feed,
        start: DateTime<Utc>,
        offset: &mut usize,
        report: &mut StepReport,
    ) -> Result<FeedStep, Error> {
        let practice = self.athena.practice(PracticeId(self.practice));
        let mut read = 0usize;
        loop {
            let limit = (PAGE_SIZE as usize).min(self.max_rows - read).max(1);
            let params = PollParams {
                leave_unprocessed: true,
                replay: Some((start, Utc::now() + chrono::Duration::seconds(1))),
                limit: Some(limit as u32),
                // Safe on a non-destructive read: the selected set is stable (decision 0005).
                extra: vec![("offset".into(), offset.to_string())],
                ..Default::default()
            };
            let page = practice.poll_changed(feed, &params).await?;
            let n = page.items.len();
            let events = self.produce(feed, start, &page.items).await?;
            report.events += events;
            *offset += n;
            read += n;
            if n < limit {
                return Ok(FeedStep::Finished);
            }
            if read >= self.max_rows {
                return Ok(FeedStep::Truncated);
            }
        }
    }

    /// Maps the rows of one page, produces them and awaits every acknowledgement.
    async fn produce(
        &mut self,
        feed: Feed,
        start: DateTime<Utc>,
        rows: &[Value],
    ) -> Result<usize, Error> {
        let pid = self.practice.to_string();
        let obs = Observation {
            source: SourceKind::FhirPush,
            event_name: None,
            snapshot: false,
            include_original: self.include_original,
        };
        let mut outs: Vec<(String, String, Vec<u8>, String, OwnedHeaders)> = Vec::new();
        for row in rows.iter().filter(|r| row_in_window(r, start)) {
            let out = match feed {
                Feed::Patients => mapping::patient_from_athena(&pid, row, &obs).map(|mut ev| {
                    ev.envelope.replayed = true;
                    let key = format!("{pid}/{}", ev.payload.patient_id);
                    let headers = event_headers(
                        &ev.envelope,
                        PatientChanged::SCHEMA_NAME,
                        &format!("athena://{pid}/patients"),
                    );
                    (
                        self.patients.1.encode(&ev),
                        self.patients.0.clone(),
                        key,
                        ev.envelope.event_id,
                        headers,
                    )
                }),
                Feed::Appointments => {
                    mapping::appointment_from_athena(&pid, row, &obs).map(|mut ev| {
                        ev.envelope.replayed = true;
                        let key = format!("{pid}/{}", ev.payload.appointment_id);
                        let headers = event_headers(
                            &ev.envelope,
                            AppointmentChanged::SCHEMA_NAME,
                            &format!("athena://{pid}/appointments"),
                        );
                        (
                            self.appointments.1.encode(&ev),
                            self.appointments.0.clone(),
                            key,
                            ev.envelope.event_id,
                            headers,
                        )
                    })
                }
                _ => None,
            };
            let Some((value, topic, key, event_id, headers)) = out else {
                tracing::debug!(connector = %self.connector, feed = feed_name(feed), "Skipped a catch-up row without an id.");
                continue;
            };
            if self.emitted.contains(&event_id) || outs.iter().any(|o| o.3 == event_id) {
                continue;
            }
            outs.push((topic, key, value?, event_id, headers));
        }
        // The catch-up's PRODUCER span (a trace of its own): every event's `traceparent`.
        let span = connector_core::telemetry::batch_send_span(outs.iter().map(|o| o.0.as_str()));
        let headers: Vec<OwnedHeaders> = span.in_scope(|| {
            outs.iter()
                .map(|(_, _, value, _, h)| {
                    connector_core::headers::with_avro_data(
                        connector_core::headers::retrace(h),
                        value,
                    )
                })
                .collect()
        });
        let acked = produce_all(
            &self.producer,
            outs.iter()
                .zip(headers)
                .map(|((topic, key, value, _, _), headers)| {
                    FutureRecord::to(topic)
                        .key(key)
                        .payload(value)
                        .headers(headers)
                }),
        )
        .instrument(span)
        .await
        .map_err(|f| CoreError::Kafka {
            operation: "produce catch-up event",
            source: f.source,
        })?;
        for (_, _, _, id, _) in outs {
            self.emitted.insert(id);
        }
        CatchUpRead::Produced {
            connector: &self.connector,
            events: acked,
        }
        .emit();
        Ok(acked)
    }
}

/// athena's 403 "Changed messages require setup (subscription) that has not been done." (also
/// while a new subscription is still pending).
fn is_not_subscribed(e: &Error) -> bool {
    matches!(
        e,
        Error::Athena(athena_client::Error::Business { status: 403, .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, h, m, s).unwrap()
    }

    #[test]
    fn topics_map_to_feeds_and_the_rest_is_reported() {
        let topics: Vec<String> = [
            "Patient.create",
            "Appointment.check-in",
            "Patient.update",
            "Encounter.check-in",
            "Claim.create",
        ]
        .map(String::from)
        .to_vec();
        let c = coverage(&topics);
        assert_eq!(c.feeds, vec![Feed::Appointments, Feed::Patients]);
        assert_eq!(c.uncovered, vec!["Encounter.check-in", "Claim.create"]);
        assert_eq!(feed_for_topic("PatientCase.create"), None);
        assert_eq!(coverage(&[]), Coverage::default());
        assert_eq!(feed_name(Feed::Patients), "patients");
    }

    #[test]
    fn startup_last_heard_is_the_newest_notification_capped() {
        let day = Duration::from_secs(86_400);
        let now = t(12, 0, 0);
        // Down for 40 minutes: the window reaches back to the last notification.
        assert_eq!(
            initial_last_heard(Some(t(11, 20, 0)), now, day),
            (t(11, 20, 0), false)
        );
        // Empty topic: start time.
        assert_eq!(initial_last_heard(None, now, day), (now, false));
        // Older than the cap: capped, flagged.
        let old = now - chrono::Duration::days(3);
        assert_eq!(
            initial_last_heard(Some(old), now, day),
            (now - chrono::Duration::days(1), true)
        );
        // A future stamp (clock skew) never moves past now.
        assert_eq!(
            initial_last_heard(Some(t(12, 5, 0)), now, day),
            (now, false)
        );
    }

    #[test]
    fn window_starts_a_margin_before_last_heard_within_the_cap() {
        let m = Duration::from_secs(120);
        let day = Duration::from_secs(86_400);
        assert_eq!(
            window_start(t(11, 0, 0), m, day, t(12, 0, 0)),
            (t(10, 58, 0), false)
        );
        let (s, capped) = window_start(t(11, 0, 0), m, Duration::from_secs(1800), t(12, 0, 0));
        assert_eq!((s, capped), (t(11, 30, 0), true));
    }

    #[test]
    fn rows_before_the_window_are_skipped_rows_without_a_stamp_are_kept() {
        // Eastern 10:00:05 on 2025-01-15 is 15:00:05 UTC.
        let start = t(15, 0, 5);
        let row = |s: &str| json!({"patientid": "1", "lastmodified": s});
        assert!(row_in_window(&row("01/15/2025 10:00:05"), start));
        // athena's whole seconds: one second early still counts.
        assert!(row_in_window(&row("01/15/2025 10:00:04"), start));
        assert!(!row_in_window(&row("01/15/2025 10:00:03"), start));
        assert!(row_in_window(&row("01/15/2025 11:00:00"), start));
        assert!(row_in_window(&json!({"patientid": "1"}), start));
        assert!(row_in_window(&row("not a date"), start));
    }

    #[test]
    fn not_subscribed_is_the_business_403() {
        let e = Error::Athena(athena_client::Error::Business {
            status: 403,
            message: "Changed messages require setup (subscription) that has not been done.".into(),
        });
        assert!(is_not_subscribed(&e));
        let e = Error::Athena(athena_client::Error::Business {
            status: 400,
            message: "x".into(),
        });
        assert!(!is_not_subscribed(&e));
    }
}

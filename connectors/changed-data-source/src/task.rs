//! The loop of one (practice, feed): replay after a crash, drain the feed page by page with the
//! marker protocol of [`crate::cursor`], then wait (adaptive back-off on empty polls, the daily
//! request budget, athena's remaining quota) and poll again.
//!
//! Errors never skip rows: a page that could not be written stays in memory and is written again;
//! a poll whose answer may have been lost triggers a replay; a stop (shutdown, fatal error)
//! leaves the marker on Kafka, so the next start replays.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use athena_client::PracticeClient;
use athena_client::api::changed::{Feed, PollParams};
use athena_contracts::TimestampMillis;
pub use athena_contracts::events::feed_name;
use chrono::Utc;
use connector_core::ErrorClass;
use connector_core::dlq::DeadLetterQueue;
use connector_core::emit::{ErrorRecorded, EventsProduced, InternalEvent};
use connector_core::retry::{Backoff, retry};
use connector_core::runtime::TaskControl;
use serde_json::Value;
use tracing::Instrument;

use crate::config::{Config, DeliveryMode};
use crate::cursor::{Cursor, short_id};
use crate::error::Error;
use crate::events::{FeedCodec, MapContext, Mapped};
use crate::telemetry::{BudgetIntervalChanged, CursorCommitted, FeedLagObserved, FeedPolled};
use crate::writer::{HeaderInfo, Page, WRITE_BACKOFF, Writer};

/// The next wait after a successful drain: back to the base interval when rows came, doubled
/// (up to `max`) after an empty poll.
pub fn next_interval(current: Duration, base: Duration, max: Duration, rows: usize) -> Duration {
    if rows > 0 {
        base
    } else {
        current.saturating_mul(2).clamp(base, max)
    }
}

/// The connector's current errors, one per (practice, feed), published together as the task's
/// `last_error`: a healthy feed clearing its own error must not hide another feed's.
#[derive(Debug, Clone)]
pub struct FeedErrors {
    control: TaskControl,
    errors: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl FeedErrors {
    /// Errors published through `control`.
    pub fn new(control: TaskControl) -> Self {
        FeedErrors {
            control,
            errors: Arc::default(),
        }
    }

    /// Sets the error of `feed` (PHI-free).
    pub fn set(&self, feed: &str, message: String) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        e.insert(feed.to_string(), message);
        self.control
            .report_error(e.values().cloned().collect::<Vec<_>>().join("; "));
    }

    /// Clears the error of `feed`.
    pub fn clear(&self, feed: &str) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.remove(feed).is_some() {
            if e.is_empty() {
                self.control.clear_error();
            } else {
                self.control
                    .report_error(e.values().cloned().collect::<Vec<_>>().join("; "));
            }
        }
    }
}

/// One (practice, feed) loop.
pub struct FeedTask {
    /// Connector name.
    pub connector: String,
    /// athena practice id.
    pub practice: String,
    /// The feed.
    pub feed: Feed,
    /// The connector's config.
    pub config: Arc<Config>,
    /// Encoder of this feed's events.
    pub codec: Arc<dyn FeedCodec>,
    /// Destination topic.
    pub topic: String,
    /// athena, for this practice.
    pub client: PracticeClient,
    /// Kafka writer.
    pub writer: Writer,
    /// Where events Kafka refuses for good are parked.
    pub dlq: DeadLetterQueue,
    /// The cursor as last loaded or written.
    pub cursor: Cursor,
    /// Lifecycle control.
    pub control: TaskControl,
    /// The connector's per-feed errors.
    pub errors: FeedErrors,
    /// Event ids a replay emitted that the next drain may return again (at-least-once mode
    /// skips them there; exactly-once mode uses the persisted [`Cursor::recent`]).
    pub replay_seen: HashSet<String>,
    /// FHIR enrichment of this feed's rows, when switched on (`feeds.<name>.enrich`).
    pub enricher: Option<Arc<crate::enrich::Enricher>>,
    /// Cancelled when the task is revoked from this instance: the drain in progress stops
    /// after its current page, the cursor is written, and the loop ends (decision 0025).
    pub release: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for FeedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedTask")
            .field("connector", &self.connector)
            .field("practice", &self.practice)
            .field("feed", &self.feed)
            .finish()
    }
}

impl FeedTask {
    fn key(&self) -> String {
        Cursor::key(&self.connector, &self.practice, feed_name(self.feed))
    }

    fn status_key(&self) -> String {
        format!("{}/{}", self.practice, feed_name(self.feed))
    }

    fn polled(&self, replay: bool) {
        FeedPolled {
            connector: &self.connector,
            feed: feed_name(self.feed),
            replay,
        }
        .emit();
    }

    fn produced(&self, count: usize) {
        EventsProduced {
            connector: &self.connector,
            feed: feed_name(self.feed),
            count: count as u64,
        }
        .emit();
    }

    fn cursor_committed(&self) {
        CursorCommitted {
            connector: &self.connector,
            feed: feed_name(self.feed),
        }
        .emit();
    }

    fn header_info(&self) -> HeaderInfo {
        HeaderInfo {
            ce_type: self.codec.schema_name(),
            ce_source: format!("athena://{}/{}", self.practice, self.feed.path()),
        }
    }

    fn feed_params(&self) -> (Vec<String>, Vec<(String, String)>) {
        let fc = self.config.feeds.get(&self.feed);
        (
            fc.map(|f| f.departments.clone()).unwrap_or_default(),
            fc.map(|f| {
                f.params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    fn count_error(&self, e: &Error) {
        ErrorRecorded {
            connector: &self.connector,
            class: e.class_label(),
        }
        .emit();
    }

    /// Runs until shutdown; returns `Err` only for an error that stops this feed.
    pub async fn run(mut self) -> Result<(), Error> {
        let base = self.config.base_interval(self.feed);
        let max = self.config.max_poll_interval;
        let mut interval = base;
        let mut needs_replay = self.cursor.in_progress_since.is_some();
        let mut attempt = 0u32;
        let mut control = self.control.clone();
        while !control.is_shutdown() && !self.release.is_cancelled() {
            tokio::select! {
                _ = control.wait_resumed() => {}
                _ = self.release.cancelled() => {}
            }
            if control.is_shutdown() || self.release.is_cancelled() {
                break;
            }
            // One root span per poll cycle (a drain, or a replay), closed and exported when
            // the cycle ends: a span for the life of the process would hold every event of the
            // feed in one trace that reaches the collector only at shutdown.
            let span = tracing::info_span!(
                parent: None,
                "changed_data_feed",
                otel.name = %format_args!("poll {}", self.feed.path()),
                connector = %self.connector,
                practice = %self.practice,
                feed = feed_name(self.feed),
                replay = needs_replay,
            );
            let wait = async {
                let step = if needs_replay {
                    self.replay().await.map(|_| None)
                } else {
                    self.drain().await.map(Some)
                };
                let wait = match step {
                    Ok(rows) => {
                        attempt = 0;
                        if needs_replay {
                            needs_replay = false;
                            Duration::ZERO
                        } else {
                            interval = next_interval(interval, base, max, rows.unwrap_or(0));
                            interval
                        }
                    }
                    Err(e) => {
                        self.count_error(&e);
                        // A poll whose answer may be lost, or any failure after a poll, leaves
                        // the marker set: replay before polling again.
                        if self.cursor.in_progress_since.is_some() {
                            needs_replay = true;
                        }
                        let msg = format!(
                            "feed {} practice {}: {e} ({})",
                            feed_name(self.feed),
                            self.practice,
                            e.class_label()
                        );
                        self.errors.set(&self.status_key(), msg);
                        attempt += 1;
                        match e.class() {
                            ErrorClass::Fatal => {
                                tracing::error!(error = %e, "Feed stopped.");
                                return Err(e);
                            }
                            ErrorClass::Permanent => {
                                // e.g. 403 "subscription not set up": subscriptions take minutes.
                                tracing::warn!(error = %e, "Feed not available; retrying at the longest interval.");
                                max
                            }
                            ErrorClass::RateLimited { retry_after } => {
                                tracing::warn!(error = %e, "athena throttled the feed; backing off.");
                                retry_after.unwrap_or(max).min(max).max(base)
                            }
                            ErrorClass::Retriable => {
                                tracing::warn!(error = %e, attempt, "Feed step failed; backing off.");
                                Backoff::new(base.min(Duration::from_secs(1)), max).delay(attempt)
                            }
                        }
                    }
                };
                Ok(self.budgeted(wait))
            }
            .instrument(span)
            .await?;
            if wait > Duration::ZERO {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = control.shutdown_requested() => {}
                    _ = self.release.cancelled() => {}
                }
            }
        }
        Ok(())
    }

    /// Stretches `wait` to honour the daily request budget and athena's remaining quota.
    fn budgeted(&self, wait: Duration) -> Duration {
        let mut wait = wait;
        let budget = self.config.budget_interval();
        BudgetIntervalChanged {
            connector: &self.connector,
            feed: feed_name(self.feed),
            interval: budget,
        }
        .emit();
        if let Some(b) = budget {
            wait = wait.max(b);
        }
        let q = self.client.client().quota();
        if let Some(rem) = q.remaining {
            // Below 5 % of the daily quota: poll no more often than the longest interval, leaving
            // the rest for writes and other connectors on the same key.
            if q.limit.is_some_and(|l| rem.saturating_mul(20) < l) {
                wait = wait.max(self.config.max_poll_interval);
            }
        }
        wait
    }

    fn lag(&self) {
        let lag = self
            .cursor
            .committed_at
            .map(|t| (Utc::now() - t).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        FeedLagObserved {
            connector: &self.connector,
            feed: feed_name(self.feed),
            lag_seconds: lag,
        }
        .emit();
    }

    async fn persist_cursor(&self) -> Result<(), Error> {
        self.writer
            .save_cursor(&self.key(), &self.cursor.to_bytes())
            .await?;
        self.cursor_committed();
        Ok(())
    }

    /// Maps records, skipping those in `skip` (matched by full or short event id). Large pages
    /// are mapped on the blocking pool in one chunk per core (athena waits for our next poll
    /// meanwhile, so the cores are otherwise idle); the order of the page is kept.
    async fn map_page(
        &self,
        items: Vec<Value>,
        replayed: bool,
        skip: &HashSet<String>,
    ) -> Result<Vec<Mapped>, Error> {
        let observed_at = TimestampMillis::now();
        let keep_original = self.config.keep_original;
        let map_chunk = move |codec: Arc<dyn FeedCodec>, practice: String, chunk: Vec<Value>| {
            let ctx = MapContext {
                practice_id: &practice,
                observed_at,
                replayed,
                keep_original,
            };
            chunk
                .iter()
                .map(|rec| codec.map(&ctx, rec))
                .collect::<Result<Vec<Mapped>, Error>>()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mapped = if items.len() < 256 || cores < 2 {
            map_chunk(self.codec.clone(), self.practice.clone(), items)?
        } else {
            let per = items.len().div_ceil(cores);
            let mut rest = items;
            let mut chunks = Vec::with_capacity(cores);
            while rest.len() > per {
                let tail = rest.split_off(per);
                chunks.push(std::mem::replace(&mut rest, tail));
            }
            chunks.push(rest);
            let jobs = chunks.into_iter().map(|chunk| {
                let (codec, practice) = (self.codec.clone(), self.practice.clone());
                tokio::task::spawn_blocking(move || map_chunk(codec, practice, chunk))
            });
            let mut out = Vec::new();
            for r in futures::future::join_all(jobs).await {
                let part = r.map_err(|e| connector_core::CoreError::task("mapping", &e))??;
                out.extend(part);
            }
            out
        };
        if skip.is_empty() {
            return Ok(mapped);
        }
        Ok(mapped
            .into_iter()
            .filter(|m| !skip.contains(&m.event_id) && !skip.contains(&short_id(&m.event_id)))
            .collect())
    }

    /// Reads the FHIR resources the rows of a page signal and produces their typed events,
    /// acknowledged before this returns (so before the marker is cleared or the cursor moves).
    async fn enrich_page(&self, items: &[Value], replayed: bool) -> Result<usize, Error> {
        let Some(e) = &self.enricher else {
            return Ok(0);
        };
        let signals =
            crate::enrich::signals(self.feed, &self.practice, items, e.window(), Utc::now());
        e.enrich(self.feed, &self.practice, &signals, replayed)
            .await
    }

    /// Writes a page, retrying (never skipping) until it is durable or the task must stop.
    async fn write_durably(&mut self, events: &[Mapped], with_cursor: bool) -> Result<(), Error> {
        let info = self.header_info();
        let key = self.key();
        let cancel = self.control.shutdown_token();
        let bytes = self.cursor.to_bytes();
        let cursor = with_cursor.then_some((key.as_str(), bytes.as_slice()));
        let page = Page {
            topic: &self.topic,
            events,
            info: &info,
            dlq: Some(&self.dlq),
        };
        retry(
            &WRITE_BACKOFF,
            &cancel,
            // Anything but a fatal error is written again: a page is never skipped.
            |e: &Error| match e.class() {
                ErrorClass::Fatal => ErrorClass::Fatal,
                _ => ErrorClass::Retriable,
            },
            |e, a| {
                self.count_error(e);
                self.errors.set(
                    &self.status_key(),
                    format!(
                        "feed {} practice {}: writing to Kafka failed, retrying: {e}",
                        feed_name(self.feed),
                        self.practice
                    ),
                );
                tracing::warn!(error = %e, attempt = a.number, "Writing a page failed; writing it again.");
            },
            || self.writer.write_page(&page, cursor, &cancel),
        )
        .await?;
        if with_cursor {
            self.cursor_committed();
        }
        self.produced(events.len());
        Ok(())
    }

    /// Drains the feed with destructive polls until a short page; returns the rows written.
    pub async fn drain(&mut self) -> Result<usize, Error> {
        match &self.writer {
            Writer::AtLeastOnce { producer, .. } => {
                let producer = producer.clone();
                self.drain_pipelined(producer).await
            }
            Writer::ExactlyOnce { .. } => self.drain_pages().await,
        }
    }

    /// At-least-once drain, pipelined: page k+1 is polled while page k is mapped, and page k's
    /// deliveries are in flight while page k+1 is mapped (at most two pages in the producer).
    /// The critical path per page is max(poll, map, produce) instead of their sum. Safe because
    /// one marker, written before the first poll, stays until every page of the drain is
    /// acknowledged: a crash (or any error, e.g. a failed map of page k after page k+1 was
    /// read) replays all of them. Per-key order holds because page k is handed to the producer
    /// before page k+1.
    async fn drain_pipelined(
        &mut self,
        producer: rdkafka::producer::FutureProducer,
    ) -> Result<usize, Error> {
        let page_size = self.config.page_size;
        let (departments, extra) = self.feed_params();
        let info = self.header_info();
        let cancel = self.control.shutdown_token();
        let now = Utc::now();
        self.cursor.in_progress_since = Some(now);
        self.cursor.polled_at = Some(now);
        self.persist_cursor().await?;
        let params = PollParams {
            limit: Some(page_size),
            department_ids: departments,
            extra,
            ..Default::default()
        };
        let mut inflight: Option<(usize, tokio::task::JoinHandle<Result<(), Error>>)> = None;
        let mut total = 0usize;
        let result: Result<(), Error> = async {
            let mut next = self.poll_once(&params).await;
            loop {
                let page = match next {
                    Ok(p) => p,
                    Err(e) => {
                        if athena_refused(&e) && inflight.is_none() {
                            // athena processed nothing and every earlier page is acknowledged.
                            self.cursor.in_progress_since = None;
                        }
                        return Err(Error::Athena(e));
                    }
                };
                let n = page.items.len();
                let skip = self.skip_set();
                self.enrich_page(&page.items, false).await?;
                // A full page means more may wait: read the next one while this one is mapped
                // (unless the task is being released or asked to shut down: the drain ends with
                // this page, as in `drain_pages`, and the rows left at athena wait for the next
                // poll, this owner's or the next one's; under a backlog athena keeps refilling,
                // a drain that went on would hold the stop for as long as the backlog lasts).
                let (mapped, prefetched) = if n >= page_size as usize
                    && !self.release.is_cancelled()
                    && !self.control.is_shutdown()
                {
                    let (m, p) = tokio::join!(
                        self.map_page(page.items, false, &skip),
                        self.poll_once(&params)
                    );
                    (m, Some(p))
                } else {
                    (self.map_page(page.items, false, &skip).await, None)
                };
                let events = Arc::new(mapped?);
                let count = events.len();
                let send = {
                    let (producer, topic, info, dlq, cancel) = (
                        producer.clone(),
                        self.topic.clone(),
                        info.clone(),
                        self.dlq.clone(),
                        cancel.clone(),
                    );
                    // In the poll's span, so the page's `send` span is its child.
                    tokio::spawn(
                        async move {
                            let page = Page {
                                topic: &topic,
                                events: &events,
                                info: &info,
                                dlq: Some(&dlq),
                            };
                            crate::writer::send_all_acked(&producer, &page, &cancel).await
                        }
                        .instrument(tracing::Span::current()),
                    )
                };
                if let Some((c, prev)) = inflight.replace((count, send)) {
                    self.await_page(c, prev).await?;
                }
                total += count;
                match prefetched {
                    Some(p) => next = p,
                    None => break,
                }
            }
            if let Some((c, last)) = inflight.take() {
                self.await_page(c, last).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some((_, h)) = inflight.take() {
                // Its records stay queued in the producer; the marker stays, so nothing is lost.
                h.abort();
            }
            return Err(e);
        }
        self.cursor.in_progress_since = None;
        self.cursor.committed_at = Some(Utc::now());
        self.cursor.events_total += total as u64;
        self.persist_cursor().await?;
        self.lag();
        self.errors.clear(&self.status_key());
        self.replay_seen.clear();
        Ok(total)
    }

    /// One destructive poll of this feed (counted in `source_polls`).
    async fn poll_once(
        &self,
        params: &PollParams,
    ) -> Result<athena_client::api::changed::ChangedPage, athena_client::Error> {
        self.polled(false);
        self.client.poll_changed(self.feed, params).await
    }

    async fn await_page(
        &self,
        count: usize,
        h: tokio::task::JoinHandle<Result<(), Error>>,
    ) -> Result<(), Error> {
        h.await
            .map_err(|e| connector_core::CoreError::task("delivery", &e))??;
        self.produced(count);
        Ok(())
    }

    /// Page-by-page drain (exactly-once: one transaction per page).
    async fn drain_pages(&mut self) -> Result<usize, Error> {
        let page_size = self.config.page_size;
        let (departments, extra) = self.feed_params();
        let mut total = 0usize;
        let mut marker_written = false;
        loop {
            // 1. The marker, acknowledged before athena hands anything out. One marker covers
            // the whole drain (a run of full pages): its time precedes every page's processing
            // time, so a replay from it covers them all.
            if !marker_written {
                let now = Utc::now();
                self.cursor.in_progress_since = Some(now);
                self.cursor.polled_at = Some(now);
                self.persist_cursor().await?;
                marker_written = true;
            }
            // 2. The destructive poll.
            let params = PollParams {
                limit: Some(page_size),
                department_ids: departments.clone(),
                extra: extra.clone(),
                ..Default::default()
            };
            self.polled(false);
            let page = match self.client.poll_changed(self.feed, &params).await {
                Ok(p) => p,
                Err(e) => {
                    if athena_refused(&e) {
                        // athena did not process this request (throttled, not subscribed,
                        // refused) and every earlier page of this drain is acknowledged:
                        // nothing can be lost, drop the marker without a replay.
                        self.cursor.in_progress_since = None;
                    }
                    return Err(Error::Athena(e));
                }
            };
            let n = page.items.len();
            // A released task ends its drain with this page (the rest waits for the next owner),
            // and so does one asked to shut down: under a backlog that athena keeps refilling a
            // drain may not otherwise end, and the stop (and the handover of a leaving instance's
            // tasks) would wait for it. The rows not yet polled stay at athena.
            let last =
                n < page_size as usize || self.release.is_cancelled() || self.control.is_shutdown();
            // 3. Produce; 4. after the last page, clear the marker once everything is
            // acknowledged. Exactly-once writes the cursor (marker kept until the last page,
            // recent ids) in every page's transaction.
            let skip = self.skip_set();
            self.enrich_page(&page.items, false).await?;
            let events = self.map_page(page.items, false, &skip).await?;
            let now = Utc::now();
            if last {
                self.cursor.in_progress_since = None;
            }
            self.cursor.committed_at = Some(now);
            self.cursor.events_total += events.len() as u64;
            let exactly_once = self.config.mode == DeliveryMode::ExactlyOnce;
            if exactly_once {
                let ids = events.iter().map(|m| short_id(&m.event_id)).collect();
                self.cursor.remember(now, ids, self.recent_keep());
            }
            self.write_durably(&events, last || exactly_once).await?;
            self.lag();
            self.errors.clear(&self.status_key());
            total += events.len();
            if last {
                break;
            }
        }
        self.replay_seen.clear();
        Ok(total)
    }

    fn skip_set(&self) -> HashSet<String> {
        match self.config.mode {
            DeliveryMode::AtLeastOnce => self.replay_seen.clone(),
            DeliveryMode::ExactlyOnce => self.cursor.recent_ids(),
        }
    }

    /// How long committed ids must be remembered: a later replay window reaches back by the
    /// margin, plus slack for a slow page.
    fn recent_keep(&self) -> Duration {
        self.config.replay_margin + Duration::from_secs(60)
    }

    /// Re-reads the window since the marker (non-destructively, paged by offset over a stable
    /// set), writes what it finds flagged `replayed`, then clears the marker.
    pub async fn replay(&mut self) -> Result<usize, Error> {
        let Some(marker) = self.cursor.in_progress_since else {
            return Ok(0);
        };
        let (start, end) = Cursor::replay_window(marker, self.config.replay_margin, Utc::now());
        tracing::info!(
            since = %marker.to_rfc3339(),
            "A poll was in progress; replaying its window."
        );
        let page_size = self.config.page_size;
        let (departments, extra) = self.feed_params();
        let mut offset = 0usize;
        let mut total = 0usize;
        loop {
            let mut extra = extra.clone();
            extra.push(("offset".into(), offset.to_string()));
            // leaveunprocessed keeps the selected set stable while we page through it by offset;
            // rows still unprocessed come again from the next destructive poll and are skipped
            // there by event id.
            let params = PollParams {
                leave_unprocessed: true,
                replay: Some((start, end)),
                limit: Some(page_size),
                department_ids: departments.clone(),
                extra,
                ..Default::default()
            };
            self.polled(true);
            let page = self.client.poll_changed(self.feed, &params).await?;
            let n = page.items.len();
            let skip = match self.config.mode {
                DeliveryMode::AtLeastOnce => HashSet::new(),
                DeliveryMode::ExactlyOnce => self.cursor.recent_ids(),
            };
            self.enrich_page(&page.items, true).await?;
            let events = self.map_page(page.items, true, &skip).await?;
            match self.config.mode {
                DeliveryMode::AtLeastOnce => {
                    self.replay_seen
                        .extend(events.iter().map(|m| m.event_id.clone()));
                    self.write_durably(&events, false).await?;
                }
                DeliveryMode::ExactlyOnce => {
                    // The marker stays; the ids join `recent` in the same transaction, so a
                    // crash during the replay does not emit them twice.
                    let ids = events.iter().map(|m| short_id(&m.event_id)).collect();
                    self.cursor.remember(Utc::now(), ids, self.recent_keep());
                    self.write_durably(&events, true).await?;
                }
            }
            total += events.len();
            offset += n;
            if n < page_size as usize {
                break;
            }
        }
        self.cursor.in_progress_since = None;
        self.cursor.committed_at = Some(Utc::now());
        self.cursor.events_total += total as u64;
        self.persist_cursor().await?;
        tracing::info!(events = total, "Replay done.");
        Ok(total)
    }
}

/// Whether athena certainly did not hand out rows for this failed poll. Anything else (a lost
/// answer, a server error, an undecodable body) may have marked rows processed.
fn athena_refused(e: &athena_client::Error) -> bool {
    use athena_client::Error as A;
    matches!(
        e,
        A::RateLimited { .. }
            | A::QuotaExhausted { .. }
            | A::Unauthorized { .. }
            | A::Config { .. }
            | A::Business { .. }
            | A::Validation { .. }
            | A::NotFound { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_intervals_adapt() {
        let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..30 {
            let d = policy.delay(attempt);
            assert!(d <= Duration::from_secs(5), "{d:?}");
            assert!(d >= Duration::from_millis(10));
        }
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(8));
        let mut i = base;
        let mut seen = vec![];
        for _ in 0..5 {
            i = next_interval(i, base, max, 0);
            seen.push(i.as_secs());
        }
        assert_eq!(seen, vec![2, 4, 8, 8, 8]);
        assert_eq!(next_interval(i, base, max, 3), base);
    }
}

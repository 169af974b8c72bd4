//! The inflation stage: a consumer group over the notifications topic that turns each id-only
//! notification into typed events by reading the focus resource through the shared
//! [`athena_client::AthenaClient`] (and so through its per-key rate limiter).
//!
//! - Patients and appointments are read through the proprietary API, as the changed-data source
//!   reads them, and become `PatientChanged` / `AppointmentChanged` with the same deterministic
//!   event ids; other FHIR resources (encounters, ...) become `FhirResourceChanged`.
//! - Deduplication: `notificationEvent.id` (or the IG's subscription + event number) is
//!   remembered for the last `dedup_capacity` events of this process; a repeat is dropped. After
//!   a restart the ids are forgotten, but re-inflating a notification gives the same event id as
//!   long as the entity did not change again (the version is its change time).
//! - Ordering: an offset is committed only after every event of the notification was
//!   acknowledged by Kafka (or the notification was dead-lettered), so a crash re-inflates,
//!   never skips.
//! - Errors: athena outages and rate limits retry the same notification with capped backoff;
//!   a focus that no longer exists (404) or cannot be mapped is skipped with a warning; a body
//!   that is not a notification goes to the dead-letter queue.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use athena_client::{AthenaClient, PracticeId};
use athena_contracts::envelope::event_headers;
use athena_contracts::mapping::{self, Observation};
use athena_contracts::{AppointmentChanged, FhirResourceChanged, PatientChanged, SourceKind};
use connector_core::avro::{AvroCodec, AvroRecord, Encoder};
use connector_core::dlq::{DeadLetterQueue, Stage};
use connector_core::metrics::{FeedLabels, global};
use connector_core::runtime::{TaskControl, TaskState};
use connector_core::{CoreError, ErrorClass};
use futures::future::try_join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::adapter::PushAdapter;
use crate::config::Config;
use crate::error::Error;
use crate::notification::{Notification, NotificationKind};

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

/// One encoded event ready to produce.
struct Out {
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
    include_original: bool,
    dedup: Dedup,
    dlq: DeadLetterQueue,
    notifications_topic: String,
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
        Ok(Inflater {
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
        })
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
        let by_fhir = e.focus.type_and_id();
        let by_ident = e.focus.athena_identifier();
        let entity = match (by_fhir, by_ident) {
            (Some(("Patient", _)), _) | (_, Some(("patient", _, _))) => "patient",
            (_, Some(("appointment", _, _))) => "appointment",
            (Some(_), _) => "fhir",
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
                        by_fhir.and_then(|(_, id)| {
                            athena_client::api::fhir::ids::patient_id(id).map(str::to_owned)
                        })
                    })
                    .ok_or_else(|| Error::UnsupportedFocus("patient without athena id".into()))?;
                let rec = practice.get_patient(&id).await?;
                let Some(ev) = mapping::patient_from_athena(&pid, &rec.raw, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
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
                let rec = practice.get_appointment(id).await?;
                let Some(ev) = mapping::appointment_from_athena(&pid, &rec.raw, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
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
            _ => {
                let (ty, id) = by_fhir.expect("matched above");
                let r = self.athena.fhir_read(ty, id).await?;
                let Some(ev) = mapping::resource_from_fhir(&pid, &r, &obs) else {
                    return Ok(None);
                };
                Ok(Some(Out {
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

    /// Inflates one raw notification; returns how many events were produced (all acknowledged).
    pub async fn handle(&mut self, payload: &[u8]) -> Result<usize, Error> {
        let n = self.adapter.parse(payload)?;
        if n.kind != NotificationKind::EventNotification {
            return Ok(0);
        }
        let mut outs = Vec::new();
        let mut keys = Vec::new();
        for i in 0..n.events.len() {
            let key = n.dedup_key(i);
            if let Some(k) = &key
                && (self.dedup.contains(k) || keys.contains(k))
            {
                tracing::debug!(connector = %self.connector, "Dropped a duplicate notification event.");
                continue;
            }
            match self.inflate_one(&n, i).await {
                Ok(Some(o)) => outs.push(o),
                Ok(None) => {}
                Err(e) if e.class() == ErrorClass::Permanent => {
                    tracing::warn!(connector = %self.connector, error = %e, "Skipped a notification event whose focus cannot be read.");
                }
                Err(e) => return Err(e),
            }
            keys.extend(key);
        }
        // Send every event, then await every acknowledgement (no one-at-a-time awaits).
        let futures = outs.iter().map(|o| {
            self.producer.send(
                FutureRecord::to(&o.topic)
                    .key(&o.key)
                    .payload(&o.value)
                    .headers(o.headers.clone()),
                Duration::from_secs(60),
            )
        });
        let acked = try_join_all(futures.map(|f| async move {
            f.await.map_err(|(source, _)| CoreError::Kafka {
                operation: "produce inflated event",
                source,
            })
        }))
        .await?;
        for k in keys {
            self.dedup.insert(k);
        }
        let labels = FeedLabels {
            connector: self.connector.clone(),
            feed: "push".into(),
        };
        global()
            .source_records_produced
            .get_or_create(&labels)
            .inc_by(acked.len() as u64);
        Ok(acked.len())
    }

    /// Consumes the notifications topic until shutdown. Returns Err only for fatal errors.
    pub async fn run(
        mut self,
        consumer: StreamConsumer,
        mut control: TaskControl,
    ) -> Result<(), Error> {
        consumer
            .subscribe(&[self.notifications_topic.as_str()])
            .map_err(|source| CoreError::Kafka {
                operation: "subscribe to notifications",
                source,
            })?;
        loop {
            if control.is_paused() {
                control.wait_resumed().await;
            }
            let msg: OwnedMessage = tokio::select! {
                _ = control.shutdown_requested() => break,
                m = consumer.recv() => match m {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(connector = %self.connector, error = %e, "Notification consumer error; continuing.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                },
            };
            let mut backoff = Duration::from_millis(200);
            loop {
                let payload = msg.payload().unwrap_or_default();
                match self.handle(payload).await {
                    Ok(_) => {
                        control.clear_error();
                        break;
                    }
                    Err(e) => match e.class() {
                        ErrorClass::Permanent => {
                            let core =
                                CoreError::Decode(connector_core::dlq::redact(&e.to_string()));
                            self.dlq.send(&msg, &core, Stage::Task).await?;
                            global()
                                .dlq_produce_requests
                                .get_or_create(&connector_core::metrics::ConnectorLabels {
                                    connector: self.connector.clone(),
                                })
                                .inc();
                            break;
                        }
                        ErrorClass::Fatal => {
                            control.report_error(format!("fatal: {e}"));
                            control.set_state(TaskState::Failed);
                            return Err(e);
                        }
                        ErrorClass::Retriable | ErrorClass::RateLimited { .. } => {
                            let wait = match e.class() {
                                ErrorClass::RateLimited {
                                    retry_after: Some(r),
                                } => r.min(Duration::from_secs(60)),
                                _ => backoff,
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
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

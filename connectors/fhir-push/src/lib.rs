//! FHIR push subscriptions for athena-connect: a pluggable adapter over topic-based
//! subscriptions, a webhook receiver that makes each notification durable on Kafka before it
//! answers, an inflation stage that turns id-only notifications into typed events, subscription
//! management from config, and gap detection.
//!
//! # Layout
//! - [`adapter`]: the [`adapter::PushAdapter`] trait (verify, normalise, subscription resources)
//!   and [`adapter::AthenaAdapter`]; [`r4_backport`]: the plain HL7 R4 backport adapter.
//! - [`notification`]: the one internal [`notification::Notification`] type and the R4B
//!   `SubscriptionStatus` / R4 `Parameters` bundle parsers.
//! - [`signature`]: `X-Hub-Signature: sha256=<hex>` signing and constant-time verification.
//! - [`receiver`]: the axum webhook (`router(state) -> Router`), durable-before-2xx; [`tls`]: its
//!   optional HTTPS listener.
//! - [`inflate`]: the consumer group that reads each focus through the athena client and emits
//!   `PatientChanged` / `AppointmentChanged` / `FhirResourceChanged`, deduplicating on the event id.
//! - [`manage`]: create / list / delete one Subscription per configured topic, with status.
//! - [`gap`]: silence detection and the catch-up trigger.
//! - [`mapping`]: athena records and FHIR resources to events, with the shared event-id rule
//!   (also used by the `bulk-backfill` crate).
//! - [`standalone`]: the config file of the `fhir-push` binary.
//! - [`contracts`]: the `FhirResourceChanged` Avro mirror; [`config`]: `[sources.fhir_push.<name>]`;
//!   [`error`]: this crate's error and its classes.

pub mod adapter;
pub mod config;
pub mod contracts;
pub mod error;
pub mod gap;
pub mod inflate;
pub mod manage;
pub mod mapping;
pub mod notification;
pub mod r4_backport;
pub mod receiver;
pub mod signature;
pub mod standalone;
pub mod tls;

use std::sync::Arc;

use athena_client::AthenaClient;
use connector_core::avro::AvroCodec;
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::runtime::{RunEnv, TaskControl, TaskState};

pub use config::{AdapterKind, Config};
pub use error::Error;

/// The adapter `config` asks for.
pub fn build_adapter(config: &Config) -> Arc<dyn adapter::PushAdapter> {
    match config.adapter {
        AdapterKind::Athena => Arc::new(adapter::AthenaAdapter::new(config.secret.clone())),
        AdapterKind::R4Backport => Arc::new(r4_backport::R4BackportAdapter::new(
            config.secret.clone(),
            config.topic_base.clone().unwrap_or_default(),
        )),
    }
}

/// The Subscriptions `config` asks for.
pub fn subscription_specs(config: &Config) -> Vec<adapter::SubscriptionSpec> {
    config
        .subscription_topics
        .iter()
        .map(|t| adapter::SubscriptionSpec {
            topic: t.clone(),
            endpoint: config.public_url.clone(),
            practice_id: config.practice_id,
        })
        .collect()
}

/// Runs one push connector (receiver, subscription management, gap detection, inflation) until
/// `control.shutdown_requested()`. Returns Err only for fatal errors.
pub async fn run(
    name: &str,
    config: &Config,
    env: &RunEnv,
    athena: &AthenaClient,
    control: TaskControl,
) -> Result<(), Error> {
    config.validate_named(name)?;
    let adapter = build_adapter(config);
    let admin = env.kafka.build_admin()?;
    ensure_topics(
        &admin,
        env.kafka.replication_factor,
        &[TopicSpec::new(
            &config.notifications_topic,
            config.notifications_partitions,
        )],
    )
    .await?;
    let producer = env.kafka.build_producer()?;
    let gap = Arc::new(gap::GapMonitor::new(name, config.heartbeat_period));

    // The receiver first: athena may already be delivering.
    let tls = match &config.tls {
        Some(t) => Some(tls::server_config(&t.cert_path, &t.key_path)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let state = receiver::ReceiverState::new(
        name,
        adapter.clone(),
        producer.clone(),
        config.notifications_topic.clone(),
        config.ack_budget,
        gap.clone(),
    );
    let app = receiver::router(state, config.body_limit_bytes);
    let token = control.shutdown_token();
    let stop = token.clone();
    let receiver_task = match tls {
        Some(tls) => tokio::spawn(receiver::serve_tls(
            tls::TlsListener::new(listener, tls)?,
            app,
            async move { stop.cancelled().await },
        )),
        None => tokio::spawn(receiver::serve(listener, app, async move {
            stop.cancelled().await
        })),
    };

    let specs = subscription_specs(config);
    let hub_secret = adapter.hub_secret();
    if config.manage_subscriptions && !specs.is_empty() {
        match manage::reconcile(athena, adapter.as_ref(), hub_secret.as_ref(), &specs, true).await {
            Ok(statuses) => {
                for s in statuses {
                    tracing::info!(connector = %name, topic = %s.topic, status = %s.status, created = s.created, "Push subscription status.");
                }
            }
            Err(e) if e.class() == connector_core::ErrorClass::Fatal => return Err(e),
            Err(e) => control.report_error(format!("subscription management: {e}")),
        }
    }

    // Gap detection: silence -> signal + re-check the subscriptions.
    let gap_task = {
        let (gap, control, athena, adapter, name) = (
            gap.clone(),
            control.clone(),
            athena.clone(),
            adapter.clone(),
            name.to_string(),
        );
        let manage_subs = config.manage_subscriptions;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(gap.tick()).await;
                if gap.check() {
                    tracing::warn!(connector = %name, gaps = gap.gaps(), "No push notification within the heartbeat period; running a catch-up check.");
                    control.report_error("push silent beyond heartbeat_period (possible gap)");
                    if manage_subs
                        && !specs.is_empty()
                        && let Err(e) = manage::reconcile(
                            &athena,
                            adapter.as_ref(),
                            hub_secret.as_ref(),
                            &specs,
                            false,
                        )
                        .await
                    {
                        tracing::warn!(connector = %name, error = %e, "Catch-up subscription check failed.");
                    }
                }
            }
        })
    };

    let codec = AvroCodec::new(env.registry.clone())?;
    let inflater =
        inflate::Inflater::new(name, config, adapter, &codec, producer, athena.clone()).await?;
    let consumer = env.kafka.build_consumer(&config.group_id(name))?;
    control.set_state(TaskState::Running);
    let result = inflater.run(consumer, control.clone()).await;
    token.cancel();
    gap_task.abort();
    let _ = receiver_task.await;
    if result.is_ok() {
        control.set_state(TaskState::Stopped);
    }
    result
}

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
//! - [`receiver`]: the axum webhook (`router(state) -> Router`), durable-before-2xx, served by
//!   connector-core's hardened `http_server`; [`replay`]: its replay protection; [`tls`]: its
//!   optional HTTPS config.
//! - [`inflate`]: the consumer group that reads each focus through the athena client and emits
//!   `PatientChanged` / `AppointmentChanged` / `FhirResourceChanged`, deduplicating on the event id.
//! - [`manage`]: create / list / delete one Subscription per configured topic, with status.
//! - [`gap`]: silence detection and the catch-up trigger; [`catch_up`]: the catch-up read of
//!   the missed patient and appointment changes from the changed-data feeds (non-destructive).
//! - [`config`]: `[sources.fhir_push.<name>]`; [`error`]: this crate's error and its classes.
//!
//! The events, their mirrors and the mapping from athena records and FHIR resources are in the
//! `athena-contracts` crate, shared with the changed-data source and the bulk backfill.

pub mod adapter;
pub mod catch_up;
pub mod config;
pub mod error;
pub mod gap;
pub mod inflate;
pub mod manage;
pub mod notification;
pub mod r4_backport;
pub mod receiver;
pub mod replay;
pub mod signature;
pub mod telemetry;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use athena_client::AthenaClient;
use connector_core::ErrorClass;
use connector_core::avro::AvroCodec;
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::retry::Backoff;
use connector_core::runtime::{RunEnv, TaskControl, TaskState, retry_startup};

pub use config::{AdapterKind, Config, PushRole};
pub use error::Error;

/// Longest the start-up read of the notifications topic for replay protection may take.
const REPLAY_REBUILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a read of the notifications topic's newest record time may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The topics a push connector creates at start when missing: the notifications topic, its
/// dead-letter topic, and (unless `topic_partitions = 0`) the event topics.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    let mut specs = vec![TopicSpec::new(
        &config.notifications_topic,
        config.notifications_partitions,
    )];
    specs.extend(
        config
            .dlq
            .topic_specs([config.notifications_topic.as_str()]),
    );
    if config.topic_partitions > 0 {
        for t in [
            config.patients_topic(),
            config.appointments_topic(),
            config.fhir_resources_topic(),
        ] {
            specs.push(TopicSpec::new(t, config.topic_partitions));
        }
        // Every typed clinical event's topic.
        for ty in athena_contracts::events::FHIR_RESOURCE_TYPES {
            if let Some(t) = config.typed_topic(ty) {
                specs.push(TopicSpec::new(&t, config.topic_partitions));
            }
        }
        // And the feed events of records named by athena identifier (lab results, orders, ...):
        // without them the first such event waited for broker auto-creation.
        for f in inflate::RECORD_FEEDS {
            specs.push(TopicSpec::new(
                config.record_topic(f),
                config.topic_partitions,
            ));
        }
    }
    specs
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
    // The producer connects lazily: the receiver serves (answering 503 while Kafka is away)
    // before Kafka is reachable, and athena retries what it could not deliver.
    let producer = env.kafka.build_producer()?;
    let gap = Arc::new(gap::GapMonitor::new(name, config.heartbeat_period));

    // Replay protection first, rebuilt from what the receiver accepted before, so a copy that
    // athena (or anyone holding a captured body) sends right after a restart is recognised.
    let replay = Arc::new(replay::ReplayGuard::new(
        config.replay_window,
        config.replay_max_entries,
    ));
    match replay::rebuild(
        replay.clone(),
        adapter.clone(),
        &env.kafka,
        &format!("{}.replay-probe", config.group_id(name)),
        &config.notifications_topic,
        config.replay_window,
        REPLAY_REBUILD_TIMEOUT,
    )
    .await
    {
        Ok(read) => {
            tracing::info!(connector = %name, records = read, ids = replay.len(), "Replay protection rebuilt from the notifications topic.");
        }
        Err(e) => {
            // Not fatal: the inflation stage still drops duplicates by event id.
            tracing::warn!(connector = %name, error = %e, "Could not rebuild replay protection; starting empty.");
            control.report_error(format!("replay protection not rebuilt: {e}"));
        }
    }

    // Then the receiver: athena may already be delivering.
    let tls = match &config.tls {
        Some(t) => Some(tls::server_config(&t.cert_path, &t.key_path)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    #[allow(unused_mut)]
    let mut state = receiver::ReceiverState::new(
        name,
        adapter.clone(),
        producer.clone(),
        config.notifications_topic.clone(),
        config.ack_budget,
        gap.clone(),
    )
    .with_replay_guard(replay)
    .with_max_event_age(config.max_event_age);
    // Crash-test hook, compiled only with the `test-hooks` feature (never in a release build):
    // the process dies right after Kafka acknowledged a notification, before the 200 goes out.
    #[cfg(feature = "test-hooks")]
    if std::env::var("FHIR_PUSH_CRASH_AFTER_DURABLE").as_deref() == Ok("1") {
        state = state.with_after_durable(Arc::new(|| {
            eprintln!("crash hook: exiting after a durable notification, before answering");
            std::process::exit(137);
        }));
    }
    let app = receiver::router(state, config.body_limit_bytes);
    // A child of the task's token, cancelled when this function returns by any path: a run
    // that fails after this point must not leave its receiver holding the port, or the
    // supervisor's restart could not bind it.
    let token = control.shutdown_token().child_token();
    let _stop_receiver = token.clone().drop_guard();
    let stop = token.clone();
    let receiver_task = tokio::spawn(connector_core::http_server::serve(
        listener,
        tls,
        app,
        (*config.http).clone(),
        name.to_string(),
        async move { stop.cancelled().await },
    ));

    // Topics, retried in place while Kafka is unreachable, so the receiver keeps serving.
    let fatal = |e: &Error| e.class() == ErrorClass::Fatal;
    retry_startup(&control, "create topics", fatal, || async {
        let admin = env.kafka.build_admin()?;
        // Every topic this connector writes (notifications, its DLQ, the event topics).
        ensure_topics(&admin, env.kafka.replication_factor, &topic_specs(config))
            .await
            .map_err(Error::from)
    })
    .await?;

    if config.role == PushRole::Receiver {
        control.set_state(TaskState::Running);
        token.cancelled().await;
        let _ = receiver_task.await;
        control.set_state(TaskState::Stopped);
        return Ok(());
    }

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

    let codec = AvroCodec::new(env.registry.clone())?;
    let mut catch_up = if config.catch_up {
        Some(
            retry_startup(&control, "start catch-up", fatal, || {
                start_catch_up(name, config, env, &codec, &producer, athena)
            })
            .await?,
        )
    } else {
        None
    };

    // Gap detection: silence -> signal + re-check the subscriptions + catch-up read. The last
    // two only in the leader, the replica whose inflater holds notifications partition 0.
    let leader = Arc::new(AtomicBool::new(false));
    let gap_task = {
        let (gap, control, athena, adapter, name) = (
            gap.clone(),
            control.clone(),
            athena.clone(),
            adapter.clone(),
            name.to_string(),
        );
        let manage_subs = config.manage_subscriptions;
        let period = config.heartbeat_period;
        let (kafka, topic) = (env.kafka.clone(), config.notifications_topic.clone());
        let leads = leader.clone();
        let probe_group = format!("{}.gap-probe", config.group_id(&name));
        // Bound to the run's token like the receiver, so a failed run leaves no gap task behind.
        let until = token.clone();
        tokio::spawn(until.run_until_cancelled_owned(async move {
            // A restarted connector looks back at once instead of waiting a whole period.
            let mut due = catch_up.as_ref().is_some_and(|c| {
                (chrono::Utc::now() - c.last_heard())
                    .to_std()
                    .is_ok_and(|silence| silence > period)
            });
            let mut not_before = tokio::time::Instant::now();
            let mut failures = 0u32;
            loop {
                if let Some(cu) = catch_up.as_mut() {
                    if let Some(at) = gap.last_seen_at() {
                        cu.note_heard(at);
                    }
                    // Only the leader reads: every replica sees the same gap, and N catch-ups
                    // would emit the missed changes N times (decision 0026).
                    if (due || cu.pending())
                        && leads.load(Ordering::Relaxed)
                        && tokio::time::Instant::now() >= not_before
                    {
                        due = false;
                        let report = cu.step().await;
                        for f in &report.failures {
                            control.report_error(f.message.clone());
                        }
                        if report.failures.iter().any(|f| !f.not_subscribed) {
                            // Capped exponential backoff (its ceiling: the catch-up is one
                            // periodic task, nobody to de-synchronise from); athena's
                            // Retry-After wins when longer.
                            failures = failures.saturating_add(1);
                            let backoff = Backoff::new(Duration::from_secs(2), period)
                                .ceiling(failures.min(10));
                            not_before = tokio::time::Instant::now()
                                + backoff.max(report.retry_after.unwrap_or_default());
                        } else {
                            failures = 0;
                        }
                    }
                }
                tokio::time::sleep(gap.tick()).await;
                if gap.silence() > period {
                    // Silence here may be traffic at another replica's receiver: the gap is the
                    // notifications topic's silence, not this process's (decision 0026).
                    match catch_up::newest_record_time(&kafka, &probe_group, &topic, PROBE_TIMEOUT)
                        .await
                    {
                        Ok(Some(at)) => {
                            gap.heard_elsewhere(at);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(connector = %name, error = %e, "Could not read the newest notification time; judging silence locally.");
                        }
                    }
                }
                if gap.check() {
                    control.report_error("push silent beyond heartbeat_period (possible gap)");
                    due = true;
                    if manage_subs
                        && leads.load(Ordering::Relaxed)
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
        }))
    };

    let inflater = retry_startup(&control, "start inflation", fatal, || {
        inflate::Inflater::new(
            name,
            config,
            adapter.clone(),
            &codec,
            producer.clone(),
            athena.clone(),
        )
    })
    .await?
    .with_leader_flag(leader);
    // Its librdkafka statistics (lag, rtt, queue) become this connector's metrics.
    let consumer = env
        .kafka
        .build_consumer_with_stats(&config.group_id(name), name)?;
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

/// The catch-up reader, with `last_heard` taken from the notifications topic: the newest record
/// there, so a connector that was down looks back over its downtime (capped at
/// `catch_up_max_window`; the start time when the topic is empty or cannot be read).
async fn start_catch_up(
    name: &str,
    config: &Config,
    env: &RunEnv,
    codec: &AvroCodec,
    producer: &rdkafka::producer::FutureProducer,
    athena: &AthenaClient,
) -> Result<catch_up::CatchUp, Error> {
    let started = chrono::Utc::now();
    let newest = match catch_up::newest_record_time(
        &env.kafka,
        &format!("{}.catch-up-probe", config.group_id(name)),
        &config.notifications_topic,
        PROBE_TIMEOUT,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(connector = %name, error = %e, "Could not read the newest notification time; the catch-up window starts now.");
            None
        }
    };
    let (last_heard, capped) =
        catch_up::initial_last_heard(newest, started, config.catch_up_max_window);
    if capped {
        tracing::warn!(connector = %name, max_window_secs = config.catch_up_max_window.as_secs(), "The last notification is older than catch_up_max_window; the catch-up looks back only that far.");
    }
    catch_up::CatchUp::new(
        name,
        config,
        codec,
        producer.clone(),
        athena.clone(),
        last_heard,
    )
    .await
}

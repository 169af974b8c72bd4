//! Wiring: turns each connector table of the root config into a [`ConnectorDef`] with that
//! connector crate's typed `Config`, its `run` function and the location of its offsets.
//!
//! This is the only file that names the connector crates (the backfill, which `run` does not
//! start, is wired in [`crate::backfill`]). Errors name the full dotted key of the section.

use std::sync::Arc;

use athena_client::AthenaClient;
use connector_core::config::Validate;
use connector_core::runtime::{RunEnv, TaskControl};
use connector_core::{CoreError, ErrorClass};

use crate::config::{Instance, Kind, RestartConfig, RootConfig, typed};
use crate::offsets::OffsetsLocation;
use crate::supervisor::{ConnectorDef, Factory, TaskError, TaskFuture};

/// Types and validates every connector section without I/O (used by `check` and `run`).
pub fn validate_all(config: &RootConfig) -> Result<(), CoreError> {
    for i in config.instances() {
        Typed::parse(&i)?;
        restart_of(config, &i)?;
    }
    if let Some(table) = &config.backfill {
        let bf: bulk_backfill::Config = typed("backfill", table)?;
        bf.validate()?;
    }
    Ok(())
}

fn key(i: &Instance<'_>) -> String {
    format!("{}.{}", i.kind.section(), i.name)
}

/// A validation error whose key is relative to the connector's table gets the table's prefix;
/// one that names the section with a `<name>` placeholder gets the instance name.
fn prefixed(i: &Instance<'_>, e: CoreError) -> CoreError {
    match e {
        CoreError::Config { key: k, message } if k.starts_with(i.kind.section()) => {
            CoreError::config(k.replace("<name>", i.name), message)
        }
        CoreError::Config { key: k, message } => {
            CoreError::config(format!("{}.{k}", key(i)), message)
        }
        other => other,
    }
}

/// The connector's table without its `restart` table, which belongs to the supervisor.
fn connector_table(i: &Instance<'_>) -> (toml::Table, Option<toml::Value>) {
    let mut table = i.table.clone();
    let restart = table.remove("restart");
    (table, restart)
}

/// The restart settings of `i`: `[restart]` with its own `restart` table laid over.
fn restart_of(config: &RootConfig, i: &Instance<'_>) -> Result<RestartConfig, CoreError> {
    let (_, own) = connector_table(i);
    config.restart.overlaid(&key(i), own.as_ref())
}

/// One connector section, typed with its crate's `Config`.
enum Typed {
    ChangedData(changed_data_source::Config),
    WriteBack(write_back_sink::Config),
    // Boxed: the push config is by far the largest (clippy::large_enum_variant).
    FhirPush(Box<fhir_push::Config>),
}

impl Typed {
    fn parse(i: &Instance<'_>) -> Result<Typed, CoreError> {
        let k = key(i);
        let (table, _) = connector_table(i);
        match i.kind {
            Kind::ChangedData => {
                let c: changed_data_source::Config = typed(&k, &table)?;
                c.validate().map_err(|e| prefixed(i, e))?;
                Ok(Typed::ChangedData(c))
            }
            Kind::WriteBack => {
                let c: write_back_sink::Config = typed(&k, &table)?;
                c.validate_named(i.name)?;
                Ok(Typed::WriteBack(c))
            }
            Kind::FhirPush => {
                let c: fhir_push::Config = typed(&k, &table)?;
                c.validate().map_err(|e| prefixed(i, e))?;
                Ok(Typed::FhirPush(Box::new(c)))
            }
        }
    }
}

/// Builds the definitions of every configured connector (no I/O).
pub fn build(
    config: &RootConfig,
    env: &RunEnv,
    athena: &AthenaClient,
) -> Result<Vec<ConnectorDef>, CoreError> {
    config
        .instances()
        .iter()
        .map(|i| build_one(config, i, env, athena))
        .collect()
}

/// A factory that runs `f(name, config, env, athena, control)` for each start; the connector's
/// error is turned into its (PHI-free) message and its class (from the crate's one `class()`),
/// which tells the supervisor whether a restart can heal it.
fn factory<C, F, Fut, E>(
    name: &str,
    config: C,
    env: &RunEnv,
    athena: &AthenaClient,
    class: fn(&E) -> ErrorClass,
    f: F,
) -> Factory
where
    C: Send + Sync + 'static,
    F: Fn(Arc<str>, Arc<C>, RunEnv, AthenaClient, TaskControl) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + 'static,
{
    let name: Arc<str> = Arc::from(name);
    let config = Arc::new(config);
    let env = env.clone();
    let athena = athena.clone();
    Arc::new(move |ctl: TaskControl| -> TaskFuture {
        let fut = f(
            name.clone(),
            config.clone(),
            env.clone(),
            athena.clone(),
            ctl,
        );
        Box::pin(async move {
            fut.await.map_err(|e| TaskError {
                message: e.to_string(),
                class: class(&e),
            })
        })
    })
}

fn build_one(
    root: &RootConfig,
    i: &Instance<'_>,
    env: &RunEnv,
    athena: &AthenaClient,
) -> Result<ConnectorDef, CoreError> {
    let (factory, offsets, mut topics) = match Typed::parse(i)? {
        Typed::ChangedData(c) => {
            let topics = c.feeds.keys().map(|f| c.topic(*f)).collect();
            // Cursors live under `<connector>/<practice>/<feed>` in the state topic.
            let offsets = OffsetsLocation::Checkpoints {
                topic: c.state_topic.clone(),
                key_prefix: format!("{}/", i.name),
            };
            let f = factory(
                i.name,
                c,
                env,
                athena,
                changed_data_source::Error::class,
                |name, c, env, athena, ctl| async move {
                    changed_data_source::run(&name, &c, &env, &athena, ctl).await
                },
            );
            (f, offsets, topics)
        }
        Typed::WriteBack(c) => {
            let mut topics = c.topics.clone();
            topics.push(c.results_topic.clone());
            let offsets = OffsetsLocation::ConsumerGroup {
                group_id: c.group_id(i.name),
                topics: c.topics.clone(),
                // 0s keeps the ledger forever: nothing is ever forgotten.
                ledger_retention: (!c.ledger_retention.is_zero()).then_some(c.ledger_retention),
            };
            let f = factory(
                i.name,
                c,
                env,
                athena,
                write_back_sink::Error::class,
                |name, c, env, athena, ctl| async move {
                    write_back_sink::run(&name, &c, &env, &athena, ctl).await
                },
            );
            (f, offsets, topics)
        }
        Typed::FhirPush(c) => {
            let c = *c;
            let mut topics = vec![
                c.notifications_topic.clone(),
                c.patients_topic(),
                c.appointments_topic(),
                c.fhir_resources_topic(),
            ];
            topics.extend(
                athena_contracts::events::FHIR_RESOURCE_TYPES
                    .iter()
                    .filter_map(|t| c.typed_topic(t)),
            );
            // The receiver answers only once a notification is on Kafka; the position that
            // matters is the inflation stage's consumer group on the notifications topic.
            let offsets = OffsetsLocation::ConsumerGroup {
                group_id: c.group_id(i.name),
                topics: vec![c.notifications_topic.clone()],
                ledger_retention: None,
            };
            let f = factory(
                i.name,
                c,
                env,
                athena,
                fhir_push::Error::class,
                |name, c, env, athena, ctl| async move {
                    fhir_push::run(&name, &c, &env, &athena, ctl).await
                },
            );
            (f, offsets, topics)
        }
    };
    topics.sort();
    topics.dedup();
    Ok(ConnectorDef {
        name: i.name.to_string(),
        kind: i.kind,
        factory,
        offsets,
        topics,
        restart: restart_of(root, i)?,
    })
}

/// What a config does with athena: the practices, feeds, FHIR types, push and backfill settings
/// and sinks it uses. The scopes the config needs and the `conformance` command's plan both
/// derive from it (decision 0022).
#[derive(Debug, Clone, Default)]
pub struct AthenaUse {
    /// Every practice id the config names (feeds, push, backfill), sorted.
    pub practices: Vec<u64>,
    /// `(connector, practice, feed)` of every changed-data feed.
    pub feeds: Vec<(String, u64, athena_client::api::changed::Feed)>,
    /// FHIR resource types read (push inflation of non-proprietary foci, backfill), sorted.
    pub fhir_types: Vec<String>,
    /// `(connector, practice, manages subscriptions)` of every push receiver.
    pub push: Vec<(String, u64, bool)>,
    /// The backfill's practice and `_type` list (empty = the server's default set).
    pub backfill: Option<(u64, Vec<String>)>,
    /// Names of the write-back sinks.
    pub sinks: Vec<String>,
}

impl AthenaUse {
    /// The scopes every enabled path needs: the proprietary API for feeds, sinks, push
    /// inflation and catch-up and the backfill's patient reads; `system/{Type}.read` per FHIR
    /// type read or exported; the Subscription scopes when push manages its subscriptions.
    pub fn scopes(&self) -> Vec<String> {
        use athena_client::scopes;
        let mut out = Vec::new();
        if !self.feeds.is_empty()
            || !self.push.is_empty()
            || !self.sinks.is_empty()
            || self.backfill.is_some()
        {
            out.push(scopes::MDP.to_string());
        }
        out.extend(self.fhir_types.iter().map(|t| scopes::fhir_read(t)));
        if self.push.iter().any(|(_, _, manage)| *manage) {
            out.push(scopes::SUBSCRIPTION_READ.to_string());
            out.push(scopes::SUBSCRIPTION_WRITE.to_string());
        }
        if out.is_empty() {
            out.push(scopes::MDP.to_string());
        }
        scopes::normalize(out)
    }
}

/// What `config` does with athena (no I/O). Fails like [`validate_all`] on a bad section.
pub fn athena_use(config: &RootConfig) -> Result<AthenaUse, CoreError> {
    let mut u = AthenaUse::default();
    let mut types = Vec::new();
    for i in config.instances() {
        match Typed::parse(&i)? {
            Typed::ChangedData(c) => {
                for p in &c.practices {
                    let Ok(pid) = p.trim().parse::<u64>() else {
                        continue;
                    };
                    u.practices.push(pid);
                    for feed in c.feeds.keys() {
                        u.feeds.push((i.name.to_string(), pid, *feed));
                    }
                }
                // Enrichment reads the FHIR types of each enriched feed's plan.
                for feed in c.feeds.keys().filter(|f| c.enriches(**f)) {
                    if let Some(plan) = changed_data_source::enrich::plan(*feed) {
                        types.extend(plan.types.iter().map(|t| t.to_string()));
                        if let Some((_, ty, _)) = plan.by_id {
                            types.push(ty.to_string());
                        }
                    }
                }
            }
            Typed::WriteBack(_) => u.sinks.push(i.name.to_string()),
            Typed::FhirPush(c) => {
                u.practices.push(c.practice_id);
                u.push
                    .push((i.name.to_string(), c.practice_id, c.manage_subscriptions));
                types.extend(
                    c.subscription_topics
                        .iter()
                        .flat_map(|t| fhir_push::inflate::focus_fhir_types(t))
                        .map(str::to_string),
                );
            }
        }
    }
    if let Some(table) = &config.backfill {
        let bf: bulk_backfill::Config = typed("backfill", table)?;
        u.practices.push(bf.practice_id);
        let exported = if bf.types.is_empty() {
            vec!["Patient".to_string()]
        } else {
            bf.types.clone()
        };
        types.extend(exported);
        u.backfill = Some((bf.practice_id, bf.types));
    }
    u.fhir_types = athena_client::scopes::normalize(types);
    u.practices.sort_unstable();
    u.practices.dedup();
    Ok(u)
}

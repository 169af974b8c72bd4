//! The `[sources.changed_data.<name>]` section: which practices and feeds, where events go, how
//! often to poll, and the delivery mode. Field docs are the user docs; defaults sit beside the
//! struct; [`Validate`] is pure and names the dotted key.

use std::collections::BTreeMap;
use std::time::Duration;

use athena_client::api::changed::Feed;
use connector_core::CoreError;
use connector_core::config::Validate;
use connector_core::dlq::DlqConfig;
use serde::Deserialize;

use crate::events;

/// How events and the cursor reach Kafka.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Idempotent producer; the cursor moves only after every event before it is acknowledged.
    /// After a crash the replay window re-sends some events (flagged `replayed`, same event id).
    #[default]
    AtLeastOnce,
    /// Events and cursor in one Kafka transaction per page: a `read_committed` consumer sees each
    /// change once.
    ExactlyOnce,
}

/// One changed-data source connector instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// athenaOne practice ids this instance serves (all feeds run for each practice).
    pub practices: Vec<String>,
    /// The feeds to stream, by name (`patients`, `appointments`, `problems`, `lab_results`, ...),
    /// each with optional overrides; `feeds.patients = {}` takes every default.
    pub feeds: BTreeMap<Feed, FeedConfig>,
    /// Delivery mode: `at_least_once` (default) or `exactly_once`.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Compacted topic holding the cursors (key `<connector>/<practice>/<feed>`).
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Prefix for every default event topic (isolated environments and tests).
    #[serde(default)]
    pub topic_prefix: String,
    /// Create missing event topics at start with this many partitions (0 = do not create).
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
    /// Base poll interval of every feed.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest interval adaptive back-off reaches on a run of empty polls (and on errors).
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// Records per destructive poll (`limit`; athena allows 1..=5000). A full page is followed
    /// at once by the next poll.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How far before the "poll in progress since" marker the replay window starts, to cover
    /// clock skew with athena and its whole-second timestamps.
    #[serde(default = "default_replay_margin", with = "humantime_serde")]
    pub replay_margin: Duration,
    /// Requests per day this connector may spend on polls, spread over all its (practice, feed)
    /// tasks, so the instances that share them stay within it together (athena's daily quota is
    /// per API key and shared). Unset = no budget beyond the poll intervals.
    #[serde(default)]
    pub daily_request_budget: Option<u64>,
    /// Keep the original athena record in each event's `original` field. Turn off for PHI
    /// minimisation: only the typed fields are sent.
    #[serde(default = "default_true")]
    pub keep_original: bool,
    /// Create the subscriptions the config asks for at start (idempotently).
    #[serde(default = "default_true")]
    pub manage_subscriptions: bool,
    /// Prefix of the per-task transactional ids (exactly-once: `<prefix>-<connector>-<practice>-
    /// <feed>`; at-least-once, cursor writes only: `<prefix>-cursor-<state_topic>-<connector>-
    /// <practice>-<feed>`), so a new owner or a restarted instance fences the previous one.
    #[serde(default = "default_txn_prefix")]
    pub transactional_id_prefix: String,
    /// Where an event Kafka refuses for good (too large even without `original`, topic not
    /// authorised) is parked: `topic` (default `<event topic>.dlq`, created at start with the
    /// event topics) and whether to add the `__connect.errors.*` context headers.
    #[serde(default)]
    pub dlq: DlqConfig,
    /// Topic per FHIR resource type of the typed events that enrichment produces
    /// (`typed_topics = { Observation = "athena.observations.v1" }`); a type not listed goes to
    /// its schema's default topic with `topic_prefix` in front.
    #[serde(default)]
    pub typed_topics: BTreeMap<String, String>,
    /// How far before a row's change time the `_lastUpdated` window of an enrichment search
    /// starts (clock skew with athena, resources saved just before the row).
    #[serde(default = "default_enrich_window", with = "humantime_serde")]
    pub enrich_window: Duration,
    /// FHIR reads of one page's signals in flight at once. The client's rate limiter bounds the
    /// rate; this only overlaps athena's latency so a backlog can use the budget.
    #[serde(default = "default_enrich_concurrency")]
    pub enrich_concurrency: usize,
    /// How instances started with this config share its (practice, feed) tasks through Kafka
    /// group membership (decision 0025). Always on: a single instance owns every task.
    #[serde(default)]
    pub scale_out: ScaleOut,
}

/// `[sources.changed_data.<name>.scale_out]`: the tasks topic, the consumer group whose
/// members divide the tasks, and this instance's identity in it (decision 0025).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOut {
    /// Compacted topic whose partitions carry the tasks (a task belongs to partition
    /// `fnv1a("<practice>/<feed>") % partitions`). Default `<state_topic>.tasks`; shared by every
    /// connector with that state topic (each has its own group).
    #[serde(default)]
    pub tasks_topic: Option<String>,
    /// Partitions of the tasks topic when the connector creates it (an existing topic keeps
    /// its count; every instance reads it from the broker). More partitions than instances
    /// spread the tasks more evenly.
    #[serde(default = "default_tasks_partitions")]
    pub tasks_partitions: i32,
    /// The consumer group of the instances of this connector. Default
    /// `athena-connect.<state_topic>.<connector>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// This instance's id in status and logs (Kafka Connect's `worker_id`), default
    /// `<hostname>:<pid>`; with `static_membership` also its `group.instance.id` (default the
    /// host name). Two instances on one host need distinct ids.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Static membership (`group.instance.id` = `worker_id`, else the host name): a restarted
    /// instance gets its tasks back at once, but a stopped one keeps them until
    /// `session_timeout` (static members do not leave the group). Off: an instance that stops
    /// hands its tasks over at once, one that crashes after `session_timeout`. Default on.
    #[serde(default = "default_true")]
    pub static_membership: bool,
    /// How long the group waits for a silent instance before giving its tasks to the others.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long a revocation waits for the revoked tasks' drains to end and their cursors to
    /// be written before the tasks are released anyway (the next owner's fencing then stops a
    /// late write).
    #[serde(default = "default_release_timeout", with = "humantime_serde")]
    pub release_timeout: Duration,
}

impl Default for ScaleOut {
    fn default() -> Self {
        ScaleOut {
            tasks_topic: None,
            tasks_partitions: default_tasks_partitions(),
            group_id: None,
            worker_id: None,
            static_membership: true,
            session_timeout: default_session_timeout(),
            release_timeout: default_release_timeout(),
        }
    }
}

fn default_tasks_partitions() -> i32 {
    12
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_release_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Per-feed overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Topic for this feed's events (default: the schema's default topic, e.g.
    /// `athena.patients.v1`, with `topic_prefix` in front).
    #[serde(default)]
    pub topic: Option<String>,
    /// Poll interval of this feed (default: the connector's `poll_interval`).
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Event names to subscribe to (empty = all events of the feed).
    #[serde(default)]
    pub events: Vec<String>,
    /// Departments to subscribe and poll (empty = the whole practice). athena asks that a feed
    /// filtered by department is also subscribed by department; both use this list.
    #[serde(default)]
    pub departments: Vec<String>,
    /// Feed-specific poll parameters, e.g. `{ showpreviouspatientids = "true" }`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Read the FHIR resources each row of this clinical feed signals (problems, allergies,
    /// medications, vaccines, prescriptions, lab and imaging results, orders, visits,
    /// appointments → Encounter, patients → Coverage) and produce their typed events
    /// (decision 0023). Off by default: it costs FHIR reads from the shared request budget.
    #[serde(default)]
    pub enrich: bool,
}

fn default_state_topic() -> String {
    "athena.connect.state.v1".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(120)
}
fn default_page_size() -> u32 {
    1000
}
fn default_replay_margin() -> Duration {
    Duration::from_secs(120)
}
fn default_true() -> bool {
    true
}
fn default_enrich_concurrency() -> usize {
    8
}
fn default_enrich_window() -> Duration {
    Duration::from_secs(300)
}
fn default_txn_prefix() -> String {
    "athena-connect-cds".into()
}

/// Poll parameters the connector sets itself; a feed may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "leaveunprocessed",
    "showprocessedstartdatetime",
    "showprocessedenddatetime",
    "limit",
    "offset",
    "departmentid",
];

impl Config {
    /// The tasks topic (see [`ScaleOut::tasks_topic`]).
    pub fn tasks_topic(&self) -> String {
        self.scale_out
            .tasks_topic
            .clone()
            .unwrap_or_else(|| format!("{}.tasks", self.state_topic))
    }

    /// The consumer group of connector `name`'s instances (see [`ScaleOut::group_id`]).
    pub fn group_id(&self, name: &str) -> String {
        self.scale_out
            .group_id
            .clone()
            .unwrap_or_else(|| format!("athena-connect.{}.{name}", self.state_topic))
    }

    /// The transactional id of the (practice, feed) task: its cursor writes (and in
    /// exactly-once mode its events) go through a producer with this id, so a new owner's
    /// `init_transactions` fences the previous one. Exactly-once keeps its historical id
    /// `<prefix>-<connector>-<practice>-<feed>`; at-least-once names the state topic too
    /// (`<prefix>-cursor-<state_topic>-<connector>-<practice>-<feed>`), like the cursor key's
    /// namespace, so two deployments with the same connector name on one cluster (or two test
    /// runs) never fence each other.
    pub fn transactional_id(&self, name: &str, practice: &str, feed: Feed) -> String {
        let feed = athena_contracts::events::feed_name(feed);
        match self.mode {
            DeliveryMode::ExactlyOnce => {
                format!("{}-{name}-{practice}-{feed}", self.transactional_id_prefix)
            }
            DeliveryMode::AtLeastOnce => format!(
                "{}-cursor-{}-{name}-{practice}-{feed}",
                self.transactional_id_prefix, self.state_topic
            ),
        }
    }

    /// The topic of `feed`.
    pub fn topic(&self, feed: Feed) -> String {
        self.feeds
            .get(&feed)
            .and_then(|f| f.topic.clone())
            .unwrap_or_else(|| format!("{}{}", self.topic_prefix, events::spec(feed).default_topic))
    }

    /// The topic of the typed event of FHIR `resource_type` (a typed type).
    pub fn typed_topic(&self, resource_type: &str) -> String {
        self.typed_topics
            .get(resource_type)
            .cloned()
            .or_else(|| {
                athena_contracts::events::fhir_spec(resource_type)
                    .map(|s| format!("{}{}", self.topic_prefix, s.default_topic))
            })
            .unwrap_or_default()
    }

    /// Whether `feed` has enrichment switched on (and signals FHIR resources at all).
    pub fn enriches(&self, feed: Feed) -> bool {
        self.feeds.get(&feed).is_some_and(|f| f.enrich) && crate::enrich::plan(feed).is_some()
    }

    /// The configured poll interval of `feed`.
    pub fn base_interval(&self, feed: Feed) -> Duration {
        self.feeds
            .get(&feed)
            .and_then(|f| f.poll_interval)
            .unwrap_or(self.poll_interval)
    }

    /// The shortest interval between two polls of one (practice, feed) that keeps the whole
    /// instance within `daily_request_budget` (each poll cycle costs about one request).
    pub fn budget_interval(&self) -> Option<Duration> {
        let budget = self.daily_request_budget?;
        let tasks = (self.practices.len() * self.feeds.len()).max(1) as u64;
        let per_task = (budget / tasks).max(1);
        Some(Duration::from_secs_f64(86_400.0 / per_task as f64))
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), CoreError> {
        // The key is relative to the connector's table; the runner prefixes
        // `sources.changed_data.<name>.`.
        if self.practices.is_empty() {
            return Err(CoreError::config(
                "practices",
                "list at least one practice id",
            ));
        }
        for (i, p) in self.practices.iter().enumerate() {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                return Err(CoreError::config(
                    format!("practices[{i}]"),
                    "must be a numeric athena practice id",
                ));
            }
        }
        if self.feeds.is_empty() {
            return Err(CoreError::config("feeds", "configure at least one feed"));
        }
        if self.poll_interval < Duration::from_millis(100) {
            return Err(CoreError::config("poll_interval", "must be at least 100ms"));
        }
        if self.max_poll_interval < self.poll_interval {
            return Err(CoreError::config(
                "max_poll_interval",
                "must not be shorter than poll_interval",
            ));
        }
        if !(1..=5000).contains(&self.page_size) {
            return Err(CoreError::config("page_size", "must be between 1 and 5000"));
        }
        if self.replay_margin < Duration::from_secs(1) {
            return Err(CoreError::config(
                "replay_margin",
                "must be at least 1s (athena's replay window has whole seconds)",
            ));
        }
        if self.state_topic.trim().is_empty() {
            return Err(CoreError::config("state_topic", "must not be empty"));
        }
        if self.daily_request_budget == Some(0) {
            return Err(CoreError::config(
                "daily_request_budget",
                "must be positive",
            ));
        }
        if !(1..=64).contains(&self.enrich_concurrency) {
            return Err(CoreError::config(
                "enrich_concurrency",
                "must be between 1 and 64",
            ));
        }
        if !(1..=1000).contains(&self.scale_out.tasks_partitions) {
            return Err(CoreError::config(
                "scale_out.tasks_partitions",
                "must be between 1 and 1000",
            ));
        }
        if self.scale_out.session_timeout < Duration::from_secs(6) {
            return Err(CoreError::config(
                "scale_out.session_timeout",
                "must be at least 6s (the broker's group.min.session.timeout.ms)",
            ));
        }
        for (key, v) in [
            ("scale_out.tasks_topic", &self.scale_out.tasks_topic),
            ("scale_out.group_id", &self.scale_out.group_id),
            ("scale_out.worker_id", &self.scale_out.worker_id),
        ] {
            if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(CoreError::config(key, "must not be empty"));
            }
        }
        if let Some(k) = athena_contracts::mapping::invalid_typed_topic(&self.typed_topics) {
            return Err(CoreError::config(
                format!("typed_topics.{k}"),
                "must name a typed FHIR resource type and a non-empty topic",
            ));
        }
        for (feed, fc) in &self.feeds {
            let name = serde_json::to_value(feed)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if let Some(t) = &fc.topic
                && t.trim().is_empty()
            {
                return Err(CoreError::config(
                    format!("feeds.{name}.topic"),
                    "must not be empty",
                ));
            }
            if let Some(i) = fc.poll_interval
                && i < Duration::from_millis(100)
            {
                return Err(CoreError::config(
                    format!("feeds.{name}.poll_interval"),
                    "must be at least 100ms",
                ));
            }
            if fc.enrich && crate::enrich::plan(*feed).is_none() {
                return Err(CoreError::config(
                    format!("feeds.{name}.enrich"),
                    "this feed signals no FHIR resource to read",
                ));
            }
            for k in fc.params.keys() {
                if RESERVED_PARAMS.contains(&k.as_str()) {
                    return Err(CoreError::config(
                        format!("feeds.{name}.params.{k}"),
                        "is set by the connector itself",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Config {
        connector_core::config::load_str(toml_text, &Default::default(), "X").unwrap()
    }

    #[test]
    fn defaults_topics_and_budget() {
        let c = parse(
            r#"
            practices = ["195900", "1959001"]
            topic_prefix = "dev."
            [feeds.patients]
            [feeds.lab_results]
            topic = "custom.labs"
            poll_interval = "2s"
            "#,
        );
        c.validate().unwrap();
        assert_eq!(c.topic(Feed::Patients), "dev.athena.patients.v1");
        assert_eq!(c.topic(Feed::LabResults), "custom.labs");
        assert_eq!(c.base_interval(Feed::LabResults), Duration::from_secs(2));
        assert_eq!(c.base_interval(Feed::Patients), Duration::from_secs(10));
        assert_eq!(c.mode, DeliveryMode::AtLeastOnce);
        assert!(c.budget_interval().is_none());
        let c = parse(
            r#"
            practices = ["1"]
            daily_request_budget = 8640
            feeds.patients = {}
            feeds.claims = {}
            "#,
        );
        // 8640 requests / 2 tasks = 4320 per task per day = one every 20 s.
        assert_eq!(c.budget_interval(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn scale_out_defaults_and_ids() {
        let c = parse("practices = [\"1\"]\nfeeds.patients = {}");
        c.validate().unwrap();
        assert_eq!(c.tasks_topic(), "athena.connect.state.v1.tasks");
        assert_eq!(
            c.group_id("src"),
            "athena-connect.athena.connect.state.v1.src"
        );
        assert_eq!(c.scale_out.tasks_partitions, 12);
        assert!(c.scale_out.static_membership);
        assert_eq!(
            c.transactional_id("src", "1", Feed::LabResults),
            "athena-connect-cds-cursor-athena.connect.state.v1-src-1-labresults"
        );
        let c = parse(
            "practices = [\"1\"]\nmode = \"exactly_once\"\nfeeds.patients = {}\n\
             [scale_out]\ntasks_topic = \"t\"\ngroup_id = \"g\"\nworker_id = \"pod-0\"",
        );
        c.validate().unwrap();
        assert_eq!(
            (c.tasks_topic().as_str(), c.group_id("src").as_str()),
            ("t", "g")
        );
        // Exactly-once keeps the id it always had.
        assert_eq!(
            c.transactional_id("src", "1", Feed::Patients),
            "athena-connect-cds-src-1-patients"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let bad = [
            ("practices = []\nfeeds.patients = {}", "practices"),
            ("practices = [\"x1\"]\nfeeds.patients = {}", "practices[0]"),
            ("practices = [\"1\"]\nfeeds = {}", "feeds"),
            (
                "practices = [\"1\"]\npage_size = 9000\nfeeds.patients = {}",
                "page_size",
            ),
            (
                "practices = [\"1\"]\nfeeds.patients = {}\n[scale_out]\ntasks_partitions = 0",
                "scale_out.tasks_partitions",
            ),
            (
                "practices = [\"1\"]\nfeeds.patients = {}\n[scale_out]\nsession_timeout = \"1s\"",
                "scale_out.session_timeout",
            ),
            (
                "practices = [\"1\"]\nfeeds.patients = {}\n[scale_out]\nworker_id = \" \"",
                "scale_out.worker_id",
            ),
            (
                "practices = [\"1\"]\n[feeds.patients]\nparams = { offset = \"5\" }",
                "feeds.patients.params.offset",
            ),
            (
                "practices = [\"1\"]\n[feeds.claims]\npoll_interval = \"1ms\"",
                "feeds.claims.poll_interval",
            ),
            (
                "practices = [\"1\"]\n[feeds.claims]\nenrich = true",
                "feeds.claims.enrich",
            ),
            (
                "practices = [\"1\"]\ntyped_topics = { Bogus = \"x\" }\nfeeds.patients = {}",
                "typed_topics.Bogus",
            ),
        ];
        for (text, key) in bad {
            let e = parse(text).validate().unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<Config, _> = connector_core::config::load_str(
            "practices = [\"1\"]\nfeeds.patients = {}\npoll_intervall = \"1s\"",
            &Default::default(),
            "X",
        );
        assert!(r.is_err());
        let r: Result<Config, _> = connector_core::config::load_str(
            "practices = [\"1\"]\nfeeds.no_such_feed = {}",
            &Default::default(),
            "X",
        );
        assert!(r.is_err());
    }
}

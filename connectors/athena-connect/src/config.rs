//! The root configuration of `athena-connect run|check|offsets`: one TOML file with the shared
//! sections (`[kafka]`, `[schema_registry]`, `[athena]`, `[telemetry]`, `[admin]`) and one table
//! per connector instance (`[sources.changed_data.<name>]`, `[sinks.write_back.<name>]`,
//! `[sources.fhir_push.<name>]`) plus `[backfill]` for the CLI-driven backfill.
//!
//! Loading goes through [`connector_core::config::load_file`] (`${VAR}` interpolation,
//! `ATHENA_CONNECT__A__B` overrides, the failing dotted key named). Connector sections are kept
//! as TOML tables here and typed by [`crate::connectors`] with that connector crate's own
//! `Config` (`deny_unknown_fields` there), so this file does not change when a connector adds a
//! setting; errors still name the full dotted key (`sinks.write_back.main.command_topic`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use connector_core::CoreError;
use connector_core::Secret;
use connector_core::avro::RegistryConfig;
use connector_core::config::{ENV_PREFIX, Validate};
use connector_core::kafka::KafkaConfig;
use connector_core::telemetry::TelemetryConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    /// How long SIGTERM (or `stop`/`restart` through the admin API) waits for connectors to
    /// finish or hand back in-flight work and commit, before the process gives up on them and
    /// exits with code 1. Keep it below the orchestrator's grace period (Kubernetes: 30 s).
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Kafka connection and client settings.
    pub kafka: KafkaConfig,
    /// Schema registry (Confluent-compatible API).
    pub schema_registry: RegistryConfig,
    /// athenahealth API client: base URL, OAuth credentials, retry and rate limits.
    pub athena: athena_client::ClientConfig,
    /// Logs (pretty or JSON) and optional OTLP trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The admin HTTP API (health, readiness, metrics, connector control).
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the supervisor restarts a failed connector: the defaults for every connector; a
    /// connector's own `restart` table (`[sinks.write_back.main.restart]`) overrides them.
    #[serde(default)]
    pub restart: RestartConfig,
    /// Source connector instances by kind, then by name.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Sink connector instances by kind, then by name.
    #[serde(default)]
    pub sinks: SinksConfig,
    /// Settings of `athena-connect backfill` (not run by `run`).
    pub backfill: Option<toml::Table>,
    /// Whether the file set `[athena] scopes` itself. When it did not, `athena.scopes` holds
    /// the scopes derived from the enabled paths (`connectors::AthenaUse::scopes`); `check`
    /// reports those missing from the token's grant either way.
    #[serde(skip)]
    pub athena_scopes_explicit: bool,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(25)
}

/// `[sources.*]`: one table per instance; the instance name is the connector name everywhere
/// (admin API paths, metric labels, consumer groups).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[sources.changed_data.<name>]`: athena changed-data feeds into Kafka.
    #[serde(default)]
    pub changed_data: BTreeMap<String, toml::Table>,
    /// `[sources.fhir_push.<name>]`: the FHIR subscription notification receiver.
    #[serde(default)]
    pub fhir_push: BTreeMap<String, toml::Table>,
}

/// `[sinks.*]`: one table per instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// `[sinks.write_back.<name>]`: commands from Kafka applied to athena, results back to Kafka.
    #[serde(default)]
    pub write_back: BTreeMap<String, toml::Table>,
}

/// `[admin]`: the admin HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Listen address. Loopback by default: expose it deliberately (Kubernetes: `0.0.0.0:9400`
    /// behind a NetworkPolicy).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token required on every endpoint except `/healthz` and `/readyz` (a secret:
    /// inline, `${VAR}`, or `{ file = "/run/secrets/admin-token" }`). Required when enabled.
    pub token: Option<Secret>,
    /// How long `/readyz` remembers a dependency check, so probes cannot hammer athena.
    #[serde(default = "default_ready_cache", with = "humantime_serde")]
    pub readiness_cache: Duration,
    /// Serve `/metrics` without the token (metrics carry no PHI and no secret: ids, route
    /// templates and counts only). For scrapers that cannot send a bearer token; keep the port
    /// on a private network then.
    #[serde(default)]
    pub public_metrics: bool,
}

fn default_true() -> bool {
    true
}
/// The default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9400";
fn default_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().expect("constant address")
}
fn default_ready_cache() -> Duration {
    Duration::from_secs(5)
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: default_listen(),
            token: None,
            readiness_cache: default_ready_cache(),
            public_metrics: false,
        }
    }
}

impl Validate for AdminConfig {
    fn validate(&self) -> Result<(), CoreError> {
        if self.enabled && self.token.as_ref().is_none_or(|t| t.is_empty()) {
            return Err(CoreError::config(
                "admin.token",
                "required when admin.enabled = true (a string, ${VAR} or { file = \"...\" }); \
                 or set admin.enabled = false",
            ));
        }
        if let Some(t) = &self.token
            && t.expose().len() < 16
        {
            return Err(CoreError::config(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

/// `[restart]` and each connector's `restart` table: the supervisor restarts a connector that
/// failed with an error that can heal (Kafka, the registry or athena unreachable, a transaction
/// aborted, a panic) after a capped exponential back-off with jitter. Errors that cannot heal
/// (invalid configuration, refused credentials, fenced by a newer instance) are never retried.
/// The names follow Kafka Connect's `errors.retry.delay.max.ms` and `errors.retry.timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// The wait before the first restart; it doubles with each failure in a row.
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The longest wait between two restarts (Connect: `errors.retry.delay.max.ms`). A run that
    /// stayed up at least this long ends the series: the next failure waits `backoff_initial`.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How long to keep restarting after the first failure of a series (Connect:
    /// `errors.retry.timeout`): `"forever"` (the default), a duration such as `"30m"`, or `"0s"`
    /// for never (the connector stays FAILED until restarted through the admin API).
    #[serde(
        default = "default_restart_timeout",
        deserialize_with = "de_restart_timeout"
    )]
    pub timeout: Option<Duration>,
}

fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_restart_timeout() -> Option<Duration> {
    None
}

fn de_restart_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "forever" {
        return Ok(None);
    }
    humantime_serde::re::humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|e| {
            serde::de::Error::custom(format!("\"forever\" or a duration such as \"30m\": {e}"))
        })
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            timeout: default_restart_timeout(),
        }
    }
}

impl RestartConfig {
    /// Validates the settings; `prefix` is the dotted section (`restart`,
    /// `sinks.write_back.main.restart`).
    pub fn validate_at(&self, prefix: &str) -> Result<(), CoreError> {
        if self.backoff_initial < Duration::from_millis(10) {
            return Err(CoreError::config(
                format!("{prefix}.backoff_initial"),
                "must be at least 10ms",
            ));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(CoreError::config(
                format!("{prefix}.backoff_max"),
                "must be at least backoff_initial",
            ));
        }
        Ok(())
    }

    /// These settings with a connector's own `restart` table laid over them (no I/O).
    pub fn overlaid(&self, key: &str, table: Option<&toml::Value>) -> Result<Self, CoreError> {
        let Some(t) = table else {
            return Ok(self.clone());
        };
        let prefix = format!("{key}.restart");
        let Some(t) = t.as_table() else {
            return Err(CoreError::config(prefix, "must be a table"));
        };
        let mut merged = toml::Table::new();
        merged.insert(
            "backoff_initial".into(),
            toml::Value::String(
                humantime_serde::re::humantime::format_duration(self.backoff_initial).to_string(),
            ),
        );
        merged.insert(
            "backoff_max".into(),
            toml::Value::String(
                humantime_serde::re::humantime::format_duration(self.backoff_max).to_string(),
            ),
        );
        merged.insert(
            "timeout".into(),
            toml::Value::String(match self.timeout {
                None => "forever".into(),
                Some(d) => humantime_serde::re::humantime::format_duration(d).to_string(),
            }),
        );
        for (k, v) in t {
            merged.insert(k.clone(), v.clone());
        }
        let c: RestartConfig = typed(&prefix, &merged)?;
        c.validate_at(&prefix)?;
        Ok(c)
    }
}

/// Kinds of connector instance a config can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sources.changed_data`.
    ChangedData,
    /// `sources.fhir_push`.
    FhirPush,
    /// `sinks.write_back`.
    WriteBack,
}

impl Kind {
    /// The crate-style kind name shown by the admin API (`changed-data-source`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::ChangedData => "changed-data-source",
            Kind::FhirPush => "fhir-push",
            Kind::WriteBack => "write-back-sink",
        }
    }
    /// Kafka Connect's `type` (`source` or `sink`).
    pub fn connect_type(self) -> &'static str {
        match self {
            Kind::WriteBack => "sink",
            Kind::ChangedData | Kind::FhirPush => "source",
        }
    }
    /// The dotted config section (`sources.changed_data`).
    pub fn section(self) -> &'static str {
        match self {
            Kind::ChangedData => "sources.changed_data",
            Kind::FhirPush => "sources.fhir_push",
            Kind::WriteBack => "sinks.write_back",
        }
    }
}

/// One connector instance as listed in the file, still untyped.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// Instance name (the table key).
    pub name: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// Its table.
    pub table: &'a toml::Table,
}

impl RootConfig {
    /// Reads `path` with `${VAR}` interpolation and `ATHENA_CONNECT__*` overrides.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        Self::from_value(connector_core::config::load_file(path, ENV_PREFIX)?)
    }

    /// Loads a TOML document with interpolation and overrides from `env` (pure apart from
    /// secret files; tests).
    pub fn load_str(text: &str, env: &BTreeMap<String, String>) -> Result<Self, CoreError> {
        Self::from_value(connector_core::config::load_str(text, env, ENV_PREFIX)?)
    }

    /// Types an already interpolated document. `athena.client_secret` may also be
    /// `{ file = "..." }` like every other secret (athena-client takes only a string, so the
    /// file is read here).
    fn from_value(mut value: toml::Value) -> Result<Self, CoreError> {
        if let Some(secret) = value
            .get_mut("athena")
            .and_then(|a| a.get_mut("client_secret"))
            && let Some(file) = secret.get("file").and_then(|f| f.as_str())
        {
            let content = std::fs::read_to_string(file).map_err(|e| {
                // The path may be shown; the content never is.
                CoreError::config(
                    "athena.client_secret",
                    format!("cannot read secret file {file}: {e}"),
                )
            })?;
            *secret = toml::Value::String(content.trim_end_matches(['\n', '\r']).to_string());
        }
        let explicit = value.get("athena").and_then(|a| a.get("scopes")).is_some();
        let mut config: RootConfig = typed("", value.as_table().unwrap_or(&toml::Table::new()))
            .map_err(|e| match e {
                CoreError::Config { key, message } => {
                    CoreError::config(key.trim_start_matches('.').to_string(), message)
                }
                other => other,
            })?;
        config.athena_scopes_explicit = explicit;
        // Request what the enabled paths need (decision 0022). A bad connector section is
        // reported by validation, which every command runs next.
        if !explicit && let Ok(u) = crate::connectors::athena_use(&config) {
            config.athena.scopes = u.scopes();
        }
        Ok(config)
    }

    /// Every connector instance, in a stable order (sources, then sinks, by name).
    pub fn instances(&self) -> Vec<Instance<'_>> {
        let mut out = Vec::new();
        for (kind, map) in [
            (Kind::ChangedData, &self.sources.changed_data),
            (Kind::FhirPush, &self.sources.fhir_push),
            (Kind::WriteBack, &self.sinks.write_back),
        ] {
            for (name, table) in map {
                out.push(Instance { name, kind, table });
            }
        }
        out
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<Instance<'_>> {
        self.instances().into_iter().find(|i| i.name == name)
    }

    /// Keeps only the connectors named in `only` (`run --only`); every name must exist.
    pub fn retain_only(&mut self, only: &[String]) -> Result<(), CoreError> {
        if only.is_empty() {
            return Ok(());
        }
        let known: Vec<String> = self
            .instances()
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        for n in only {
            if !known.contains(n) {
                return Err(CoreError::config(
                    "--only",
                    format!(
                        "no connector named {n} in the file (it lists: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        let keep = |n: &String| only.contains(n);
        self.sources.changed_data.retain(|n, _| keep(n));
        self.sources.fhir_push.retain(|n, _| keep(n));
        self.sinks.write_back.retain(|n, _| keep(n));
        Ok(())
    }
}

impl Validate for RootConfig {
    fn validate(&self) -> Result<(), CoreError> {
        self.validate_without_admin()?;
        self.admin.validate()
    }
}

impl RootConfig {
    /// Everything but `[admin]`, for commands that never serve the admin API (`backfill`).
    pub fn validate_without_admin(&self) -> Result<(), CoreError> {
        self.kafka.validate()?;
        self.schema_registry.validate()?;
        self.athena
            .validate()
            .map_err(|e| CoreError::config("athena", e.to_string()))?;
        self.telemetry.validate()?;
        self.restart.validate_at("restart")?;
        if self.shutdown_timeout < Duration::from_secs(1) {
            return Err(CoreError::config("shutdown_timeout", "must be at least 1s"));
        }
        let mut seen = BTreeMap::new();
        for i in self.instances() {
            let key = format!("{}.{}", i.kind.section(), i.name);
            // Names become admin API path segments, metric labels and consumer-group suffixes.
            let ok = !i.name.is_empty()
                && i.name.len() <= 64
                && i.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !ok {
                return Err(CoreError::config(
                    key,
                    "connector names use a-z, 0-9, '-' and '_' (at most 64)",
                ));
            }
            if let Some(other) = seen.insert(i.name, key.clone()) {
                return Err(CoreError::config(
                    key,
                    format!("connector name already used by {other}; names must be unique"),
                ));
            }
        }
        Ok(())
    }
}

/// Deserialises one connector table into its crate's `Config`, naming the full dotted key on
/// failure (`sinks.write_back.main.command_topic: unknown field ...`).
pub fn typed<T: DeserializeOwned>(prefix: &str, table: &toml::Table) -> Result<T, CoreError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let path = e.path().to_string();
        let key = match (path.as_str(), prefix) {
            ("." | "", "") => "<root>".to_string(),
            ("." | "", p) => p.to_string(),
            (path, "") => path.to_string(),
            (path, p) => format!("{p}.{path}"),
        };
        CoreError::config(key, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9092"
        [schema_registry]
        url = "http://127.0.0.1:8081/apis/ccompat/v7"
        [athena]
        base_url = "http://127.0.0.1:8089"
        client_id = "demo"
        client_secret = "demo-secret"
        [admin]
        token = "0123456789abcdef-token"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<RootConfig, CoreError> {
        let env = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let c = RootConfig::load_str(text, &env)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn minimal_defaults() {
        let c = load(MIN, &[]).unwrap();
        assert_eq!(c.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert!(c.instances().is_empty());
    }

    #[test]
    fn admin_token_required_and_never_printed() {
        let text = MIN.replace("token = \"0123456789abcdef-token\"", "");
        let err = load(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("admin.token"), "{err}");
        let c = load(MIN, &[]).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("0123456789abcdef-token"), "{printed}");
        assert!(!printed.contains("demo-secret"), "{printed}");
    }

    #[test]
    fn unknown_keys_and_bad_names_are_named() {
        let err = load(&format!("{MIN}\n[admin2]\nx = 1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin2"), "{err}");
        let err = load(&format!("{MIN}\n[sinks.write_back.\"Bad Name\"]\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks.write_back.Bad Name"), "{err}");
        let err = load(
            &format!("{MIN}\n[sinks.write_back.a]\n[sources.changed_data.a]\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already used"), "{err}");
    }

    #[test]
    fn restart_settings_default_overlay_and_validate() {
        let c = load(MIN, &[]).unwrap();
        assert_eq!(c.restart, RestartConfig::default());
        assert_eq!(c.restart.timeout, None);
        let c = load(
            &format!("{MIN}\n[restart]\nbackoff_max = \"10s\"\ntimeout = \"30m\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(c.restart.backoff_max, Duration::from_secs(10));
        assert_eq!(c.restart.timeout, Some(Duration::from_secs(1800)));
        let own: toml::Value =
            toml::from_str("timeout = \"forever\"\nbackoff_initial = \"2s\"").unwrap();
        let o = c
            .restart
            .overlaid("sinks.write_back.main", Some(&own))
            .unwrap();
        assert_eq!(o.timeout, None);
        assert_eq!(o.backoff_initial, Duration::from_secs(2));
        assert_eq!(o.backoff_max, Duration::from_secs(10));
        let bad: toml::Value =
            toml::from_str("backoff_max = \"1s\"\nbackoff_initial = \"2s\"").unwrap();
        let err = c
            .restart
            .overlaid("sinks.write_back.main", Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks.write_back.main.restart.backoff_max"),
            "{err}"
        );
        let typo: toml::Value = toml::from_str("backof_max = \"1s\"").unwrap();
        let err = c
            .restart
            .overlaid("sinks.write_back.main", Some(&typo))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks.write_back.main.restart"), "{err}");
        let err = load(&format!("{MIN}\n[restart]\ntimeout = \"soon\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("restart.timeout"), "{err}");
    }

    #[test]
    fn retain_only_keeps_the_named_and_refuses_unknown_names() {
        let text = format!(
            "{MIN}\n[sinks.write_back.a]\n[sources.changed_data.b]\n[sources.fhir_push.c]\n"
        );
        let mut c = load(&text, &[]).unwrap();
        c.retain_only(&["a".into(), "c".into()]).unwrap();
        let names: Vec<&str> = c.instances().iter().map(|i| i.name).collect();
        assert_eq!(names, vec!["c", "a"]);
        let err = c.retain_only(&["zz".into()]).unwrap_err().to_string();
        assert!(err.contains("--only") && err.contains("zz"), "{err}");
    }

    #[test]
    fn athena_client_secret_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("athena-secret");
        std::fs::write(&f, "file-secret-value\n").unwrap();
        let text = MIN.replace(
            "client_secret = \"demo-secret\"",
            &format!("client_secret = {{ file = \"{}\" }}", f.display()),
        );
        let c = load(&text, &[]).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(c.athena.client_secret.expose_secret(), "file-secret-value");
        let missing = MIN.replace(
            "client_secret = \"demo-secret\"",
            "client_secret = { file = \"/nonexistent/athena\" }",
        );
        let err = load(&missing, &[]).unwrap_err().to_string();
        assert!(err.contains("athena.client_secret"), "{err}");
    }

    #[test]
    fn env_override_reaches_connector_tables() {
        let c = load(
            &format!("{MIN}\n[sinks.write_back.main]\ntopic = \"a\"\n"),
            &[("ATHENA_CONNECT__SINKS__WRITE_BACK__MAIN__TOPIC", "b")],
        )
        .unwrap();
        let i = c.instance("main").unwrap();
        assert_eq!(i.table["topic"].as_str(), Some("b"));

        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Sink {
            topic: String,
            #[serde(with = "humantime_serde", default)]
            poll: Option<Duration>,
        }
        let bad: toml::Table = toml::from_str("topic = \"x\"\npol = \"1s\"").unwrap();
        let err = typed::<Sink>("sinks.write_back.main", &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sinks.write_back.main"), "{err}");
        assert!(err.contains("pol"), "{err}");
    }
}

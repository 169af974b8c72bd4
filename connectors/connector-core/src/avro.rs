//! Avro contracts on the wire: the bundled schema catalog, Confluent framing, encoding of our
//! structs, decoding of anything the registry knows, and registry administration.
//!
//! - The catalog is built from the `.avsc` files under `schemas/`, compiled into the binary.
//!   Shared named types (the event envelope) live in their own file and are referenced by full
//!   name; [`Catalog`] inlines each reference at its first use so every schema we register is
//!   self-contained (no registry schema references to manage).
//! - Confluent wire format: magic byte `0`, 4-byte big-endian schema id, Avro binary body.
//! - Encoding pins the schema id once per subject ([`AvroCodec::encoder`]) and then serialises
//!   synchronously with the schema-aware serde writer; the hot path does no registry I/O and
//!   builds no intermediate `Value`.
//! - Decoding looks the writer schema up by id (schema_registry_converter's cached decoder),
//!   checks the record is the type we expect, resolves it against our reader schema (so older and
//!   newer writers both decode) and deserialises. Every failure is a typed [`CoreError`]: a
//!   message with an unknown id or a foreign type is [`ErrorClass::Permanent`] (dead-letter it),
//!   a registry outage is retriable.
//!
//! [`ErrorClass::Permanent`]: crate::ErrorClass::Permanent

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::writer::datum::GenericDatumWriter;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::config::Validate;
use crate::error::CoreError;
use crate::secret::Secret;

/// A Rust type that mirrors one bundled Avro record schema.
pub trait AvroRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Full name of the record schema, e.g. `com.athenaconnect.events.PatientChanged`.
    const SCHEMA_NAME: &'static str;

    /// The bundled schema of this type.
    fn bundled() -> &'static BundledSchema {
        Catalog::global()
            .get(Self::SCHEMA_NAME)
            .unwrap_or_else(|| panic!("no bundled schema named {}", Self::SCHEMA_NAME))
    }
}

/// (file, text) of every bundled `.avsc`, shared named types first.
const BUNDLED_FILES: &[(&str, &str)] = &[
    (
        "common/EventEnvelope.avsc",
        include_str!("../../../schemas/common/EventEnvelope.avsc"),
    ),
    (
        "events/PatientChanged.avsc",
        include_str!("../../../schemas/events/PatientChanged.avsc"),
    ),
    (
        "events/AppointmentChanged.avsc",
        include_str!("../../../schemas/events/AppointmentChanged.avsc"),
    ),
    (
        "commands/BookAppointment.avsc",
        include_str!("../../../schemas/commands/BookAppointment.avsc"),
    ),
    (
        "commands/CommandResult.avsc",
        include_str!("../../../schemas/commands/CommandResult.avsc"),
    ),
];

/// Default topic for each top-level schema (TopicNameStrategy subjects are `<topic>-value`).
pub const DEFAULT_TOPICS: &[(&str, &str)] = &[
    (
        "com.athenaconnect.events.PatientChanged",
        "athena.patients.v1",
    ),
    (
        "com.athenaconnect.events.AppointmentChanged",
        "athena.appointments.v1",
    ),
    (
        "com.athenaconnect.commands.BookAppointment",
        "athena.cmd.appointments.v1",
    ),
    (
        "com.athenaconnect.commands.CommandResult",
        "athena.cmd.results.v1",
    ),
];

/// One bundled schema, self-contained.
#[derive(Debug)]
pub struct BundledSchema {
    /// Full name, e.g. `com.athenaconnect.events.PatientChanged`.
    pub name: String,
    /// File under `schemas/` it came from.
    pub file: &'static str,
    /// Self-contained JSON text (references inlined), as registered with the registry.
    pub json: String,
    /// The parsed schema.
    pub schema: Schema,
}

/// All bundled schemas by full name.
#[derive(Debug)]
pub struct Catalog {
    schemas: BTreeMap<String, BundledSchema>,
}

impl Catalog {
    /// The process-wide catalog of bundled schemas. Panics if a bundled file is invalid, which
    /// the unit tests rule out.
    pub fn global() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::build(BUNDLED_FILES).unwrap_or_else(|e| panic!("bundled schemas: {e}"))
        })
    }

    /// Builds a catalog from `(file, text)` pairs; later files may reference named types defined
    /// in earlier ones.
    pub fn build(files: &[(&'static str, &str)]) -> Result<Catalog, CoreError> {
        let mut named: HashMap<String, Json> = HashMap::new();
        let mut schemas = BTreeMap::new();
        for (file, text) in files {
            let raw: Json = serde_json::from_str(text).map_err(|e| CoreError::Schema {
                name: file.to_string(),
                message: e.to_string(),
            })?;
            let name = full_name(&raw, None).ok_or_else(|| CoreError::Schema {
                name: file.to_string(),
                message: "top level must be a named record".into(),
            })?;
            let mut defined = HashSet::new();
            let inlined = inline(&raw, &named, &mut defined, None);
            let json = serde_json::to_string(&inlined).expect("JSON value serialises");
            let schema = Schema::parse_str(&json).map_err(|e| CoreError::Schema {
                name: name.clone(),
                message: e.to_string(),
            })?;
            collect_named(&raw, None, &mut named);
            schemas.insert(
                name.clone(),
                BundledSchema {
                    name,
                    file,
                    json,
                    schema,
                },
            );
        }
        Ok(Catalog { schemas })
    }

    /// The schema with this full name.
    pub fn get(&self, name: &str) -> Option<&BundledSchema> {
        self.schemas.get(name)
    }

    /// Every bundled schema.
    pub fn iter(&self) -> impl Iterator<Item = &BundledSchema> {
        self.schemas.values()
    }
}

fn full_name(schema: &Json, enclosing_ns: Option<&str>) -> Option<String> {
    let obj = schema.as_object()?;
    let name = obj.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_string());
    }
    let ns = obj.get("namespace").and_then(Json::as_str).or(enclosing_ns);
    Some(match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    })
}

fn namespace_of(full: &str) -> Option<&str> {
    full.rsplit_once('.').map(|(ns, _)| ns)
}

/// Records every named type (record, enum, fixed) defined in `schema` under its full name.
fn collect_named(schema: &Json, ns: Option<&str>, out: &mut HashMap<String, Json>) {
    match schema {
        Json::Object(obj) => {
            let ty = obj.get("type").and_then(Json::as_str);
            let mut inner_ns = ns.map(str::to_string);
            if matches!(ty, Some("record" | "enum" | "fixed"))
                && let Some(full) = full_name(schema, ns)
            {
                inner_ns = namespace_of(&full).map(str::to_string);
                let mut def = schema.clone();
                // Make the definition position-independent before it is inlined elsewhere.
                if let Some(o) = def.as_object_mut() {
                    o.insert("name".into(), Json::String(full.clone()));
                    o.remove("namespace");
                }
                out.insert(full, def);
            }
            for (k, v) in obj {
                if matches!(k.as_str(), "type" | "items" | "values" | "fields") {
                    collect_named(v, inner_ns.as_deref(), out);
                }
            }
        }
        Json::Array(items) => {
            for i in items {
                collect_named(i, ns, out);
            }
        }
        _ => {}
    }
}

/// Replaces, at its first use, every reference to a named type defined in another file by that
/// type's definition; later uses keep the (now resolvable) name.
fn inline(
    schema: &Json,
    named: &HashMap<String, Json>,
    defined: &mut HashSet<String>,
    ns: Option<&str>,
) -> Json {
    match schema {
        Json::String(s) => {
            let full = if s.contains('.') {
                s.clone()
            } else {
                match ns {
                    Some(ns) => format!("{ns}.{s}"),
                    None => s.clone(),
                }
            };
            match named.get(&full) {
                Some(def) if defined.insert(full.clone()) => inline(def, named, defined, None),
                _ => schema.clone(),
            }
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| inline(i, named, defined, ns))
                .collect(),
        ),
        Json::Object(obj) => {
            let ty = obj.get("type").and_then(Json::as_str);
            let mut inner_ns = ns.map(str::to_string);
            if matches!(ty, Some("record" | "enum" | "fixed"))
                && let Some(full) = full_name(schema, ns)
            {
                defined.insert(full.clone());
                inner_ns = namespace_of(&full).map(str::to_string);
            }
            let mut out = serde_json::Map::new();
            for (k, v) in obj {
                let nv = match k.as_str() {
                    "type" | "items" | "values" => inline(v, named, defined, inner_ns.as_deref()),
                    "fields" => match v {
                        Json::Array(fields) => Json::Array(
                            fields
                                .iter()
                                .map(|f| match f {
                                    Json::Object(fo) => {
                                        let mut nf = fo.clone();
                                        if let Some(t) = fo.get("type") {
                                            nf.insert(
                                                "type".into(),
                                                inline(t, named, defined, inner_ns.as_deref()),
                                            );
                                        }
                                        Json::Object(nf)
                                    }
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    _ => v.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

/// Prepends the Confluent framing (magic byte 0, big-endian schema id) to an Avro body.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a Confluent-framed message into schema id and Avro body.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), CoreError> {
    if bytes.len() < 5 {
        return Err(CoreError::NotWireFormat(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 {
        return Err(CoreError::NotWireFormat(format!(
            "magic byte is {}, expected 0",
            bytes[0]
        )));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[5..]))
}

/// How subjects are named, as in Confluent's serializers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-value` (Confluent's default): one schema lineage per topic.
    #[default]
    TopicName,
    /// `<record full name>`: one lineage per record type, across topics.
    RecordName,
    /// `<topic>-<record full name>`: several record types on one topic.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The value subject for `record` on `topic`.
    pub fn value_subject(self, topic: &str, record: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record.to_string(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{record}"),
        }
    }
}

/// How to reach the schema registry (any Confluent-API-compatible one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub url: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// Request timeout.
    #[serde(default = "default_registry_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Subject naming strategy.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
    /// Register our schema when the subject does not know it yet. Off by default: schemas are
    /// registered at deploy time by `athena-connect schemas register`, so an incompatible change
    /// is caught there rather than by a running connector.
    #[serde(default)]
    pub auto_register: bool,
}

fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}

impl RegistryConfig {
    /// Config for `url` with defaults (no auth, TopicName strategy, no auto-registration).
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig {
            url: url.into(),
            username: None,
            password: None,
            timeout: default_registry_timeout(),
            subject_strategy: SubjectStrategy::TopicName,
            auto_register: false,
        }
    }

    fn base(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }
}

impl Validate for RegistryConfig {
    fn validate(&self) -> Result<(), CoreError> {
        let parsed = url::Url::parse(&self.url)
            .map_err(|e| CoreError::config("schema_registry.url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CoreError::config(
                "schema_registry.url",
                "must be http or https",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(CoreError::config(
                "schema_registry.password",
                "username and password go together",
            ));
        }
        Ok(())
    }
}

/// Compatibility levels, as the registry names them.
pub const COMPATIBILITY_LEVELS: &[&str] = &[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
];

/// Registry administration over the Confluent REST API: registration, lookup, compatibility.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    config: RegistryConfig,
    http: reqwest::Client,
}

const SR_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    /// A client for `config`.
    pub fn new(config: RegistryConfig) -> Result<Self, CoreError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| CoreError::RegistryUnavailable(e.to_string()))?;
        Ok(RegistryClient { config, http })
    }

    /// The registry settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.config.base(), path);
        let mut rb = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, SR_CONTENT_TYPE);
        if let (Some(u), Some(p)) = (&self.config.username, &self.config.password) {
            rb = rb.basic_auth(u, Some(p.expose()));
        }
        rb
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<(u16, Json), CoreError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| CoreError::RegistryUnavailable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| CoreError::RegistryUnavailable(e.without_url().to_string()))?;
        let json = serde_json::from_str(&body).unwrap_or(Json::String(body));
        if status >= 500 {
            return Err(CoreError::RegistryUnavailable(format!(
                "HTTP {status}: {}",
                registry_message(&json)
            )));
        }
        Ok((status, json))
    }

    /// Lists subjects.
    pub async fn subjects(&self) -> Result<Vec<String>, CoreError> {
        let (status, json) = self
            .send(self.request(reqwest::Method::GET, "/subjects"))
            .await?;
        if status != 200 {
            return Err(CoreError::RegistryRejected(format!(
                "list subjects: HTTP {status}: {}",
                registry_message(&json)
            )));
        }
        serde_json::from_value(json).map_err(|e| CoreError::RegistryRejected(e.to_string()))
    }

    /// Sets the compatibility level of `subject` (one of [`COMPATIBILITY_LEVELS`]).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), CoreError> {
        let rb = self
            .request(reqwest::Method::PUT, &format!("/config/{}", enc(subject)))
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(serde_json::json!({ "compatibility": level }).to_string());
        let (status, json) = self.send(rb).await?;
        if status != 200 {
            return Err(CoreError::RegistryRejected(format!(
                "set compatibility of {subject}: HTTP {status}: {}",
                registry_message(&json)
            )));
        }
        Ok(())
    }

    /// The compatibility level configured for `subject` (None when only a global default
    /// applies).
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, CoreError> {
        let (status, json) = self
            .send(self.request(reqwest::Method::GET, &format!("/config/{}", enc(subject))))
            .await?;
        match status {
            200 => Ok(json
                .get("compatibilityLevel")
                .or_else(|| json.get("compatibility"))
                .and_then(Json::as_str)
                .map(str::to_string)),
            404 => Ok(None),
            _ => Err(CoreError::RegistryRejected(format!(
                "get compatibility of {subject}: HTTP {status}: {}",
                registry_message(&json)
            ))),
        }
    }

    /// Registers `schema_json` under `subject` and returns its id; an incompatible schema is
    /// [`CoreError::RegistryRejected`].
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, CoreError> {
        let rb = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", enc(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(serde_json::json!({ "schema": schema_json, "schemaType": "AVRO" }).to_string());
        let (status, json) = self.send(rb).await?;
        match (status, json.get("id").and_then(Json::as_u64)) {
            (200, Some(id)) => u32::try_from(id)
                .map_err(|_| CoreError::RegistryRejected(format!("schema id {id} out of range"))),
            _ => Err(CoreError::RegistryRejected(format!(
                "register {subject}: HTTP {status}: {}",
                registry_message(&json)
            ))),
        }
    }

    /// The id of `schema_json` if `subject` already holds it.
    pub async fn lookup(&self, subject: &str, schema_json: &str) -> Result<Option<u32>, CoreError> {
        let rb = self
            .request(
                reqwest::Method::POST,
                &format!("/subjects/{}", enc(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(serde_json::json!({ "schema": schema_json, "schemaType": "AVRO" }).to_string());
        let (status, json) = self.send(rb).await?;
        match (status, json.get("id").and_then(Json::as_u64)) {
            (200, Some(id)) => Ok(u32::try_from(id).ok()),
            (404, _) => Ok(None),
            _ => Err(CoreError::RegistryRejected(format!(
                "look up {subject}: HTTP {status}: {}",
                registry_message(&json)
            ))),
        }
    }

    /// Whether `schema_json` may be registered under `subject` given its compatibility level.
    /// A subject with no versions accepts anything.
    pub async fn is_compatible(&self, subject: &str, schema_json: &str) -> Result<bool, CoreError> {
        let rb = self
            .request(
                reqwest::Method::POST,
                &format!("/compatibility/subjects/{}/versions/latest", enc(subject)),
            )
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(serde_json::json!({ "schema": schema_json, "schemaType": "AVRO" }).to_string());
        let (status, json) = self.send(rb).await?;
        match status {
            200 => Ok(json
                .get("is_compatible")
                .and_then(Json::as_bool)
                .unwrap_or(false)),
            404 => Ok(true),
            _ => Err(CoreError::RegistryRejected(format!(
                "compatibility check of {subject}: HTTP {status}: {}",
                registry_message(&json)
            ))),
        }
    }
}

fn enc(subject: &str) -> String {
    url::form_urlencoded::byte_serialize(subject.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn registry_message(json: &Json) -> String {
    json.get("message")
        .and_then(Json::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let s = json.to_string();
            s.chars().take(300).collect()
        })
}

/// One schema to register: which bundled schema, under which subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Full name of the bundled schema.
    pub schema: String,
    /// Registry subject.
    pub subject: String,
}

/// The subjects of every top-level bundled schema on its default topic (with `topic_prefix`
/// prepended to the topic, for isolated environments and tests).
pub fn default_bindings(strategy: SubjectStrategy, topic_prefix: &str) -> Vec<Binding> {
    DEFAULT_TOPICS
        .iter()
        .map(|(schema, topic)| Binding {
            schema: schema.to_string(),
            subject: strategy.value_subject(&format!("{topic_prefix}{topic}"), schema),
        })
        .collect()
}

/// What happened to one binding during registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The binding.
    pub binding: Binding,
    /// The registry id of the schema.
    pub id: u32,
}

/// Sets each subject to `compatibility` and registers its bundled schema. Stops at the first
/// subject that refuses (an incompatible change), naming it.
pub async fn register_bindings(
    registry: &RegistryClient,
    bindings: &[Binding],
    compatibility: &str,
) -> Result<Vec<Registered>, CoreError> {
    let mut out = Vec::with_capacity(bindings.len());
    for b in bindings {
        let bundled = Catalog::global().get(&b.schema).ok_or_else(|| {
            CoreError::config("schemas", format!("no bundled schema named {}", b.schema))
        })?;
        registry
            .set_compatibility(&b.subject, compatibility)
            .await?;
        let id = registry.register(&b.subject, &bundled.json).await?;
        out.push(Registered {
            binding: b.clone(),
            id,
        });
    }
    Ok(out)
}

/// Checks, without registering, that each bundled schema is compatible with its subject.
/// Returns the bindings that are not.
pub async fn incompatible_bindings(
    registry: &RegistryClient,
    bindings: &[Binding],
) -> Result<Vec<Binding>, CoreError> {
    let mut bad = Vec::new();
    for b in bindings {
        let bundled = Catalog::global().get(&b.schema).ok_or_else(|| {
            CoreError::config("schemas", format!("no bundled schema named {}", b.schema))
        })?;
        if !registry.is_compatible(&b.subject, &bundled.json).await? {
            bad.push(b.clone());
        }
    }
    Ok(bad)
}

/// Encodes and decodes our records in the Confluent wire format.
#[derive(Clone)]
pub struct AvroCodec {
    registry: RegistryClient,
    decoder: Arc<AvroDecoder>,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec")
            .field("registry", &self.registry.config().url)
            .finish()
    }
}

impl AvroCodec {
    /// A codec over the registry in `config`.
    pub fn new(config: RegistryConfig) -> Result<Self, CoreError> {
        let registry = RegistryClient::new(config.clone())?;
        let mut builder = SrSettings::new_builder(config.base());
        builder.set_timeout(config.timeout);
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            builder.set_basic_authorization(u, Some(p.expose()));
        }
        let settings = builder
            .build()
            .map_err(|e| CoreError::RegistryUnavailable(e.error))?;
        Ok(AvroCodec {
            registry,
            decoder: Arc::new(AvroDecoder::new(settings)),
        })
    }

    /// The registry client behind this codec.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// An encoder for `T` on `topic`: resolves the schema id of our bundled schema under the
    /// configured subject once (registering it only when `auto_register` is on).
    pub async fn encoder<T: AvroRecord>(&self, topic: &str) -> Result<Encoder<T>, CoreError> {
        let bundled = T::bundled();
        let subject = self
            .registry
            .config()
            .subject_strategy
            .value_subject(topic, &bundled.name);
        let id = match self.registry.lookup(&subject, &bundled.json).await? {
            Some(id) => id,
            None if self.registry.config().auto_register => {
                self.registry.register(&subject, &bundled.json).await?
            }
            None => {
                return Err(CoreError::RegistryRejected(format!(
                    "subject {subject} does not hold schema {}; run `athena-connect schemas register` \
                     (or set schema_registry.auto_register = true)",
                    bundled.name
                )));
            }
        };
        Encoder::with_id(id)
    }

    /// Decodes a Confluent-framed message into `T`.
    pub async fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, CoreError> {
        let (id, _) = unframe(bytes)?;
        let result = self
            .decoder
            .decode_with_schema(Some(bytes))
            .await
            .map_err(|e| classify_decode_error(id, e))?;
        let Some(result) = result else {
            return Err(CoreError::Decode("empty message".into()));
        };
        let writer_name = record_name(&result.schema.parsed);
        if writer_name.as_deref() != Some(T::SCHEMA_NAME) {
            return Err(CoreError::Decode(format!(
                "schema id {id} is {}, expected {}",
                writer_name.unwrap_or_else(|| "not a record".into()),
                T::SCHEMA_NAME
            )));
        }
        let reader = &T::bundled().schema;
        let resolved = result
            .value
            .resolve(reader)
            .map_err(|e| CoreError::Decode(format!("schema id {id} does not resolve: {e}")))?;
        apache_avro::from_value::<T>(&resolved)
            .map_err(|e| CoreError::Decode(format!("schema id {id}: {e}")))
    }
}

fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

fn classify_decode_error(id: u32, e: schema_registry_converter::error::SRCError) -> CoreError {
    if e.retriable {
        return CoreError::RegistryUnavailable(e.error);
    }
    let cause = e.cause.clone().unwrap_or_default();
    if e.error.contains("Could not get raw schema")
        || cause.contains("404")
        || cause.contains("40403")
        || e.error.contains("not found")
    {
        CoreError::UnknownSchemaId(id)
    } else {
        CoreError::Decode(e.error)
    }
}

/// Encodes `T` with a pinned schema id. Synchronous and allocation-light: safe for hot paths.
pub struct Encoder<T: AvroRecord> {
    id: u32,
    writer: GenericDatumWriter<'static>,
    _t: std::marker::PhantomData<fn(&T)>,
}

impl<T: AvroRecord> std::fmt::Debug for Encoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("schema", &T::SCHEMA_NAME)
            .field("id", &self.id)
            .finish()
    }
}

impl<T: AvroRecord> Encoder<T> {
    /// An encoder writing `schema_id` in the framing (the caller vouches that the id is our
    /// bundled schema, e.g. from [`RegistryClient::register`]).
    pub fn with_id(schema_id: u32) -> Result<Self, CoreError> {
        let writer = GenericDatumWriter::builder(&T::bundled().schema)
            .build()
            .map_err(|e| CoreError::Encode(e.to_string()))?;
        Ok(Encoder {
            id: schema_id,
            writer,
            _t: std::marker::PhantomData,
        })
    }

    /// The registry id this encoder writes.
    pub fn schema_id(&self) -> u32 {
        self.id
    }

    /// Encodes `value` in the Confluent wire format.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CoreError> {
        let mut out = Vec::with_capacity(256);
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        self.writer
            .write_ser(&mut out, value)
            .map_err(|e| CoreError::Encode(format!("{}: {e}", T::SCHEMA_NAME)))?;
        Ok(out)
    }
}

/// Decodes an Avro body written with `T`'s bundled schema, without the registry (tests, tools).
pub fn decode_body<T: AvroRecord>(body: &[u8]) -> Result<T, CoreError> {
    let schema = &T::bundled().schema;
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .map_err(|e| CoreError::Decode(e.to_string()))?;
    let value = reader
        .read_value(&mut &body[..])
        .map_err(|e| CoreError::Decode(e.to_string()))?;
    apache_avro::from_value::<T>(&value).map_err(|e| CoreError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::*;

    #[test]
    fn catalog_builds_and_inlines_envelope_once() {
        let c = Catalog::global();
        let p = c.get("com.athenaconnect.events.PatientChanged").unwrap();
        assert_eq!(
            p.json.matches("\"fields\"").count(),
            3,
            "PatientChanged, inlined EventEnvelope, Patient"
        );
        assert!(p.json.contains("SourceKind"));
        for name in [
            "com.athenaconnect.events.EventEnvelope",
            "com.athenaconnect.events.AppointmentChanged",
            "com.athenaconnect.commands.BookAppointment",
            "com.athenaconnect.commands.CommandResult",
        ] {
            assert!(c.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_schema_file_is_bundled() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
        let mut on_disk = Vec::new();
        for dir in std::fs::read_dir(root).unwrap() {
            let dir = dir.unwrap().path();
            if dir.is_dir() {
                for f in std::fs::read_dir(&dir).unwrap() {
                    let f = f.unwrap().path();
                    if f.extension().is_some_and(|e| e == "avsc") {
                        let rel = f.strip_prefix(root).unwrap().display().to_string();
                        on_disk.push(rel);
                    }
                }
            }
        }
        on_disk.sort();
        let mut bundled: Vec<String> = BUNDLED_FILES.iter().map(|(f, _)| f.to_string()).collect();
        bundled.sort();
        assert_eq!(on_disk, bundled);
    }

    #[test]
    fn framing_round_trip_and_errors() {
        let framed = frame(0x01020304, b"abc");
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(unframe(&framed).unwrap(), (0x01020304, &b"abc"[..]));
        assert!(matches!(unframe(b"\0\0"), Err(CoreError::NotWireFormat(_))));
        assert!(matches!(
            unframe(b"\x01\0\0\0\x01x"),
            Err(CoreError::NotWireFormat(_))
        ));
    }

    #[test]
    fn encode_decode_body_without_registry() {
        let cmd = BookAppointment {
            command_id: "c1".into(),
            practice_id: "195900".into(),
            correlation_id: None,
            issued_at: Some(TimestampMillis(1)),
            appointment_id: "10".into(),
            patient_id: "20".into(),
            department_id: Some("1".into()),
            appointment_type_id: None,
            reason_id: None,
            booking_note: None,
            ignore_schedulable_permission: false,
            no_patient_case: true,
        };
        let enc = Encoder::<BookAppointment>::with_id(42).unwrap();
        let bytes = enc.encode(&cmd).unwrap();
        let (id, body) = unframe(&bytes).unwrap();
        assert_eq!(id, 42);
        assert_eq!(decode_body::<BookAppointment>(body).unwrap(), cmd);
    }

    #[test]
    fn subject_strategies() {
        let s = SubjectStrategy::TopicName;
        assert_eq!(s.value_subject("t", "a.B"), "t-value");
        assert_eq!(SubjectStrategy::RecordName.value_subject("t", "a.B"), "a.B");
        assert_eq!(
            SubjectStrategy::TopicRecordName.value_subject("t", "a.B"),
            "t-a.B"
        );
    }
}

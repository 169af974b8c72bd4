//! The admin HTTP API: health, readiness, Prometheus metrics and connector control in Kafka
//! Connect's REST shapes, so scripts written for Connect work unchanged (the full comparison,
//! endpoint by endpoint, is the table in docs/operations.md).
//!
//! | Method and path                              | Auth | Answer                                  |
//! |----------------------------------------------|------|-----------------------------------------|
//! | `GET /healthz`                               | no   | 200 while the process serves            |
//! | `GET /readyz`                                | no   | 200 when Kafka, registry and athena answer, else 503 |
//! | `GET /metrics`                               | yes¹ | Prometheus text                         |
//! | `GET /`                                      | yes  | `version`, `commit`, `kafka_cluster_id` |
//! | `GET /connector-plugins`                     | yes  | the three connector kinds               |
//! | `GET /connectors[?expand=status\|info]`      | yes  | names (or name -> status / info)        |
//! | `GET /connectors/{name}`                     | yes  | name, config (no secrets), tasks, type  |
//! | `GET /connectors/{name}/config`              | yes  | the non-secret identifiers only²        |
//! | `GET /connectors/{name}/status`              | yes  | Connect's status shape                  |
//! | `GET /connectors/{name}/tasks`               | yes  | the one task                            |
//! | `GET /connectors/{name}/tasks/0/status`      | yes  | the task's state                        |
//! | `POST /connectors/{name}/tasks/0/restart`    | yes  | 204 once restarted                      |
//! | `GET /connectors/{name}/topics`              | yes  | the configured topics                   |
//! | `PUT /connectors/{name}/topics/reset`        | yes  | 403: topics are configured, not tracked |
//! | `PUT /connectors/{name}/pause`               | yes  | 202                                     |
//! | `PUT /connectors/{name}/resume`              | yes  | 202 (starts it again when stopped)      |
//! | `PUT /connectors/{name}/stop`                | yes  | 204 once stopped (bounded wait)         |
//! | `POST /connectors/{name}/restart`            | yes  | 204; with `includeTasks`/`onlyFailed` 202 + status (KIP-745) |
//! | `GET /connectors/{name}/offsets`             | yes  | Connect's offsets shape                 |
//! | `PATCH /connectors/{name}/offsets`           | yes  | 200 when altered; 400 unless stopped (KIP-875)³ |
//! | `DELETE /connectors/{name}/offsets`          | yes  | 200 when reset; 400 unless stopped (KIP-875)³ |
//!
//! ¹ Open when `admin.public_metrics = true`.
//! ² Connect returns the whole config; ours holds secrets and athena settings, so only the
//! connector's name, class, `tasks.max` and topics are shown (the mistake of KAFKA-5117).
//! ³ `DELETE ?to_time=<RFC 3339>` resets a consumer group to that time instead of deleting
//! it; on a write-back sink a reset or an alteration that would read commands older than its
//! `ledger_retention` again answers 409 unless `?force=true` (see [`offsets::check_reset`]).
//!
//! Authentication is a bearer token (scheme matched case-insensitively, as RFC 9110 says)
//! compared in constant time. Health and readiness are open so orchestrator probes need no
//! secret; they reveal only "up" or "unavailable". No response ever contains a config value, so
//! no secret can be echoed. Every error, including an unknown path, a wrong method and a
//! malformed query or body, uses Connect's `{"error_code", "message"}` body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_client::AthenaClient;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use connector_core::Secret;
use connector_core::avro::RegistryClient;
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::{TaskState, TaskStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

use crate::config::Kind;
use crate::offsets::{self, OffsetsLocation};
use crate::supervisor::{ConnectorDef, ConnectorStatus, Supervisor, SupervisorError};

/// Checks of the three dependencies behind `/readyz`, remembered for a short while.
pub struct Readiness {
    kafka: KafkaConfig,
    registry: RegistryClient,
    athena: Option<AthenaClient>,
    cache_for: Duration,
    last: tokio::sync::Mutex<Option<(Instant, ReadyReport)>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

/// One readiness answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadyReport {
    /// `up` or `unavailable`.
    pub kafka: &'static str,
    /// `up` or `unavailable`.
    pub schema_registry: &'static str,
    /// `up`, `unavailable`, or `not_configured`.
    pub athena: &'static str,
}

impl ReadyReport {
    fn ready(&self) -> bool {
        self.kafka == "up" && self.schema_registry == "up" && self.athena != "unavailable"
    }
}

impl Readiness {
    /// Readiness over these clients; `athena = None` skips that check.
    pub fn new(
        kafka: KafkaConfig,
        registry: RegistryClient,
        athena: Option<AthenaClient>,
        cache_for: Duration,
    ) -> Self {
        Readiness {
            kafka,
            registry,
            athena,
            cache_for,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs (or reuses) the three checks. Failures are logged with their reason; the answer only
    /// says `unavailable`.
    pub async fn check(&self) -> ReadyReport {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = &*last
            && at.elapsed() < self.cache_for
        {
            return r.clone();
        }
        let (k, r, a) = tokio::join!(
            self.kafka.check_connectivity(Duration::from_secs(3)),
            tokio::time::timeout(Duration::from_secs(5), self.registry.subjects()),
            async {
                match &self.athena {
                    Some(c) => Some(
                        tokio::time::timeout(Duration::from_secs(5), c.check_credentials()).await,
                    ),
                    None => None,
                }
            }
        );
        let kafka = match k {
            Ok(_) => "up",
            Err(e) => {
                tracing::warn!(error = %e, "Readiness: Kafka unavailable.");
                "unavailable"
            }
        };
        let schema_registry = match r {
            Ok(Ok(_)) => "up",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Readiness: schema registry unavailable.");
                "unavailable"
            }
            Err(_) => {
                tracing::warn!("Readiness: schema registry timed out.");
                "unavailable"
            }
        };
        let athena = match a {
            None => "not_configured",
            Some(Ok(Ok(()))) => "up",
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "Readiness: athena unavailable.");
                "unavailable"
            }
            Some(Err(_)) => {
                tracing::warn!("Readiness: athena timed out.");
                "unavailable"
            }
        };
        let report = ReadyReport {
            kafka,
            schema_registry,
            athena,
        };
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

/// What the admin API serves.
#[derive(Clone)]
pub struct AdminState {
    /// The connectors.
    pub supervisor: Arc<Supervisor>,
    /// The bearer token.
    pub token: Arc<Secret>,
    /// Kafka settings, for the offsets endpoints.
    pub kafka: KafkaConfig,
    /// Dependency checks.
    pub readiness: Arc<Readiness>,
    /// Worker id shown in status answers (`host:port` of the admin API).
    pub worker_id: String,
    /// Serialises offsets operations so two resets cannot interleave.
    pub offsets_lock: Arc<tokio::sync::Mutex<()>>,
    /// Serve `/metrics` without the token (`admin.public_metrics`).
    pub public_metrics: bool,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error_code": status.as_u16(), "message": message.into()})),
    )
        .into_response()
}

impl IntoResponse for SupervisorError {
    fn into_response(self) -> Response {
        let status = match self {
            SupervisorError::Unknown(_) => StatusCode::NOT_FOUND,
            SupervisorError::Conflict { .. } => StatusCode::CONFLICT,
        };
        error(status, self.to_string())
    }
}

async fn require_token(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(st.token.expose().as_bytes()).into();
    if !ok || given.is_empty() {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

/// The token of an `Authorization` value whose scheme is `Bearer` in any case (RFC 9110:
/// auth schemes are case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The admin app (no socket), so tests can drive it in-process.
pub fn router(state: AdminState) -> Router {
    let mut protected = Router::new().route("/connectors", get(list));
    let mut open = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "UP"})) }))
        .route("/readyz", get(readyz));
    if state.public_metrics {
        open = open.route("/metrics", get(metrics));
    } else {
        protected = protected.route("/metrics", get(metrics));
    }
    let protected = protected
        .route("/", get(root))
        .route("/connector-plugins", get(plugins))
        .route("/connectors/{name}", get(info))
        .route("/connectors/{name}/config", get(config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(task_restart),
        )
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(topics_reset))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route(
            "/connectors/{name}/offsets",
            get(get_offsets).patch(patch_offsets).delete(delete_offsets),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    open.merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP method not allowed on this endpoint",
            )
        })
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` resolves, through connector-core's
/// hardened server: its default header-read and body timeouts, connection cap (503 shedding)
/// and shutdown deadline. The request timeout is long instead: `stop`, `restart` and offset
/// resets wait for a connector (bounded by `shutdown_timeout`), and cutting such a handler
/// off would abandon the operation half-way.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = connector_core::http_server::HttpServerConfig {
        request_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    connector_core::http_server::serve(listener, None, router(state), limits, "admin", shutdown)
        .await
}

/// Binds `addr` (with a clear message when taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn readyz(State(st): State<AdminState>) -> Response {
    // A failed connector makes the process unready at once: no dependency check needed, and
    // only names (no error text) leave the process unauthenticated.
    let failed = st.supervisor.failed();
    if !failed.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"connectors": "failed", "failed": failed})),
        )
            .into_response();
    }
    let r = st.readiness.check().await;
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn metrics(State(st): State<AdminState>) -> Response {
    st.supervisor.refresh_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        connector_core::metrics::global().render(),
    )
        .into_response()
}

/// Connect's task status (`GET /connectors/{name}/tasks/0/status`, and each entry of
/// `tasks` in the connector's status).
fn task_json(st: &AdminState, s: &TaskStatus) -> Value {
    let mut task = json!({"id": 0, "state": s.state.name(), "worker_id": st.worker_id});
    if let Some(e) = &s.last_error {
        task["trace"] = Value::String(e.clone());
    }
    task
}

fn status_json(st: &AdminState, full: &ConnectorStatus, connect_type: &str) -> Value {
    let s = &full.task;
    let state = s.state.name();
    let task = task_json(st, s);
    // A failed task leaves the connector itself RUNNING in Connect; we have one task per
    // connector, so both show the task's state. The restart fields are ours.
    let mut v = json!({
        "name": s.connector,
        "connector": {"state": state, "worker_id": st.worker_id},
        "tasks": [task],
        "type": connect_type,
        "kind": s.kind,
        "restarts": full.restarts,
        "auto_restart": full.auto_restart,
        "last_error": s.last_error,
    });
    if let Some(ms) = full.next_restart_in_ms {
        v["next_restart_in_ms"] = json!(ms);
    }
    // A changed-data source shares its (practice, feed) tasks with the other instances of its
    // config (decision 0025): which of them this instance (`worker_id`) owns.
    if let Some(o) = changed_data_source::ownership::ownership(&s.connector) {
        v["ownership"] = json!(o);
    }
    v
}

async fn list(
    State(st): State<AdminState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let names = st.supervisor.names();
    // Connect takes `expand` more than once (`?expand=status&expand=info`).
    let expand: Vec<String> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.into_owned())
        .collect();
    let expand: Vec<&str> = expand.iter().map(String::as_str).collect();
    if expand.is_empty() {
        return Json(names).into_response();
    }
    let mut out = serde_json::Map::new();
    for n in names {
        let (Ok(s), Ok(d)) = (st.supervisor.full_status(&n), st.supervisor.def(&n)) else {
            continue;
        };
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), status_json(&st, &s, d.kind.connect_type()));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), info_json(&d));
        }
        out.insert(n, Value::Object(entry));
    }
    Json(Value::Object(out)).into_response()
}

/// The class name shown for a kind (Connect shows the Java class; ours name the crate).
fn class_of(kind: Kind) -> String {
    format!("athena-connect/{}", kind.name())
}

/// The non-secret part of a connector's config in Connect's string map.
fn config_json(d: &ConnectorDef) -> Value {
    let mut c = serde_json::Map::new();
    c.insert("name".into(), json!(d.name));
    c.insert("connector.class".into(), json!(class_of(d.kind)));
    c.insert("tasks.max".into(), json!("1"));
    c.insert(
        "config.section".into(),
        json!(format!("{}.{}", d.kind.section(), d.name)),
    );
    if let OffsetsLocation::ConsumerGroup { topics, .. } = &d.offsets
        && d.kind.connect_type() == "sink"
    {
        c.insert("topics".into(), json!(topics.join(",")));
    }
    Value::Object(c)
}

/// Connect's connector info: name, config, tasks, type; `kind` and `config_section` are ours.
fn info_json(d: &ConnectorDef) -> Value {
    json!({
        "name": d.name,
        "config": config_json(d),
        "tasks": [{"connector": d.name, "task": 0}],
        "type": d.kind.connect_type(),
        "kind": d.kind.name(),
        "config_section": format!("{}.{}", d.kind.section(), d.name),
    })
}

async fn info(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.def(&name) {
        Ok(d) => Json(info_json(&d)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn config(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.def(&name) {
        Ok(d) => Json(config_json(&d)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn tasks(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.def(&name) {
        Ok(d) => Json(json!([{
            "id": {"connector": d.name, "task": 0},
            "config": config_json(&d),
        }]))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// An early answer of a handler (boxed: a `Response` is large).
type Early = Box<Response>;

/// Checks the task id of a `/tasks/{task}/...` path: every connector runs one task, id 0.
fn check_task(st: &AdminState, name: &str, task: &str) -> Result<(), Early> {
    st.supervisor
        .def(name)
        .map_err(|e| Box::new(e.into_response()))?;
    if task != "0" {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no status for task {name}-{task}: {name} runs one task, 0"),
        )));
    }
    Ok(())
}

async fn task_status(
    State(st): State<AdminState>,
    Path((name, task)): Path<(String, String)>,
) -> Response {
    if let Err(r) = check_task(&st, &name, &task) {
        return *r;
    }
    match st.supervisor.status(&name) {
        Ok(s) => Json(task_json(&st, &s)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn task_restart(
    State(st): State<AdminState>,
    Path((name, task)): Path<(String, String)>,
) -> Response {
    if let Err(r) = check_task(&st, &name, &task) {
        return *r;
    }
    // The task is the connector's one run: restarting it restarts the connector (Connect
    // answers once the task restarted, with no body).
    match st.supervisor.restart(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn topics(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.def(&name) {
        Ok(d) => Json(json!({ d.name.clone(): {"topics": d.topics} })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn topics_reset(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    if let Err(e) = st.supervisor.def(&name) {
        return e.into_response();
    }
    // What Connect answers with `topic.tracking.allow.reset=false`: ours come from the config
    // and cannot drift from it, so there is nothing to reset.
    error(
        StatusCode::FORBIDDEN,
        "Topic tracking reset is disabled: athena-connect reports the topics of the config",
    )
}

async fn root(State(st): State<AdminState>) -> Response {
    let kafka = st.kafka.clone();
    // Asked at each call (the endpoint is rare); null when Kafka does not answer in time.
    let cluster = tokio::task::spawn_blocking(move || {
        kafka
            .build_admin()
            .ok()
            .and_then(|a| a.inner().fetch_cluster_id(Duration::from_secs(5)))
    })
    .await
    .ok()
    .flatten();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("ATHENA_CONNECT_GIT_COMMIT"),
        "kafka_cluster_id": cluster,
    }))
    .into_response()
}

async fn plugins() -> Response {
    let all: Vec<Value> = [Kind::ChangedData, Kind::FhirPush, Kind::WriteBack]
        .into_iter()
        .map(|k| {
            json!({
                "class": class_of(k),
                "type": k.connect_type(),
                "version": env!("CARGO_PKG_VERSION"),
            })
        })
        .collect();
    Json(all).into_response()
}

async fn status(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match (st.supervisor.full_status(&name), st.supervisor.def(&name)) {
        (Ok(s), Ok(d)) => Json(status_json(&st, &s, d.kind.connect_type())).into_response(),
        (Err(e), _) | (_, Err(e)) => e.into_response(),
    }
}

async fn pause(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.pause(&name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn resume(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.resume(&name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stop(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.stop(&name).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("connector {name} did not stop in time and was aborted; it is stopped now"),
        ),
        Err(e) => e.into_response(),
    }
}

/// A boolean query parameter as Connect reads it (`true`/`false`, any case; absent = false).
fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, Early> {
    match q.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" || v.is_empty() => Ok(false),
        Some(v) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{key} must be true or false, not {v}"),
        ))),
    }
}

/// KIP-745: without `includeTasks` and `onlyFailed` the connector is restarted and the answer
/// is 204 once it was; with either, the restart is accepted, the answer is 202 with the status
/// showing RESTARTING for what will restart, and the restart runs in the background. With
/// `onlyFailed=true` a connector that is not FAILED is left alone (202 with its status, as
/// Connect). The connector and its one task are one run, so `includeTasks` changes the answer
/// only, never what is restarted.
async fn restart(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (include_tasks, only_failed) = match (flag(&q, "includeTasks"), flag(&q, "onlyFailed")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    if !include_tasks && !only_failed {
        return match st.supervisor.restart(&name).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => e.into_response(),
        };
    }
    let (s, d) = match (st.supervisor.full_status(&name), st.supervisor.def(&name)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let failed = s.task.state == TaskState::Failed;
    if only_failed && !failed {
        return (
            StatusCode::ACCEPTED,
            Json(status_json(&st, &s, d.kind.connect_type())),
        )
            .into_response();
    }
    if let Err(e) = st.supervisor.mark_restarting(&name) {
        return e.into_response();
    }
    let sup = st.supervisor.clone();
    let n = name.clone();
    tokio::spawn(async move {
        if let Err(e) = sup.restart(&n).await {
            tracing::warn!(connector = %n, error = %e, "Restart failed.");
        }
    });
    let mut body = status_json(&st, &s, d.kind.connect_type());
    body["connector"]["state"] = json!(TaskState::Restarting.name());
    if include_tasks {
        body["tasks"][0]["state"] = json!(TaskState::Restarting.name());
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn get_offsets(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    let def = match st.supervisor.def(&name) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    match offsets::show(&st.kafka, &def.offsets).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            tracing::warn!(connector = %name, error = %e, "Reading offsets failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read offsets from Kafka; see the logs",
            )
        }
    }
}

/// The definition of `name` when it is STOPPED; otherwise Connect's answer to an offsets
/// change of a connector that is not: 400 (KIP-875), or 404 for an unknown name.
fn stopped_def(st: &AdminState, name: &str) -> Result<ConnectorDef, Early> {
    let (def, status) = match (st.supervisor.def(name), st.supervisor.status(name)) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(e), _) | (_, Err(e)) => return Err(Box::new(e.into_response())),
    };
    if status.state != TaskState::Stopped {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "Connectors must be in the STOPPED state before their offsets can be modified; \
                 {name} is {}: stop it first with PUT /connectors/{name}/stop (KIP-875)",
                status.state.name()
            ),
        )));
    }
    Ok(def)
}

/// The answer to an offsets reset or alteration its check refused: 409 for the ledger-retention
/// guard (ours; `force=true` accepts), 400 for a request that does not fit the connector, 500
/// when Kafka could not be asked.
fn refused(name: &str, e: offsets::ResetRefused) -> Response {
    match e {
        offsets::ResetRefused::Retention(m) => error(StatusCode::CONFLICT, m),
        offsets::ResetRefused::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        e @ offsets::ResetRefused::Kafka(_) => {
            tracing::warn!(connector = %name, error = %e, "Offsets check failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot check the offsets against Kafka; see the logs",
            )
        }
    }
}

/// Query of `PATCH /connectors/{name}/offsets`.
#[derive(Debug, Deserialize)]
struct AlterQuery {
    /// Accept re-reading commands older than the ledger's retention.
    #[serde(default)]
    force: bool,
}

/// Checks a cursor before it is stored: a changed-data cursor must parse as one.
fn check_cursor(kind: Kind) -> impl Fn(&str, &Value) -> Result<(), String> {
    move |key, v| match kind {
        Kind::ChangedData => {
            let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
            changed_data_source::cursor::Cursor::from_bytes(key, &bytes)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Kind::FhirPush | Kind::WriteBack => Ok(()),
    }
}

async fn patch_offsets(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    query: Result<Query<AlterQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(StatusCode::BAD_REQUEST, "force must be true or false");
    };
    let def = match stopped_def(&st, &name) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON in the shape GET /connectors/{name}/offsets shows: {e}"
                ),
            );
        }
    };
    let alts = match offsets::parse_alter(&def.offsets, &body, check_cursor(def.kind)) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Ok(_guard) = st.offsets_lock.try_lock() else {
        return error(StatusCode::CONFLICT, "another offsets operation is running");
    };
    if let Err(e) = offsets::check_alter(&st.kafka, &def.offsets, &alts, q.force).await {
        return refused(&name, e);
    }
    match offsets::alter(&st.kafka, &def.offsets, alts).await {
        Ok(n) => {
            tracing::info!(connector = %name, altered = n, "Offsets altered.");
            Json(
                json!({"message": "The offsets for this connector have been altered successfully"}),
            )
            .into_response()
        }
        Err(e) => {
            tracing::warn!(connector = %name, error = %e, "Offsets alteration failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot alter offsets; see the logs",
            )
        }
    }
}

/// Query of `DELETE /connectors/{name}/offsets`.
#[derive(Debug, Deserialize)]
struct ResetQuery {
    /// RFC 3339 time to reset a consumer group to.
    to_time: Option<String>,
    /// Accept re-reading commands older than the ledger's retention.
    #[serde(default)]
    force: bool,
}

async fn delete_offsets(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    query: Result<Query<ResetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "the query takes to_time=<RFC 3339 time> and force=true|false",
        );
    };
    let to_time = match q
        .to_time
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("to_time must be an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"),
            );
        }
    };
    let req = offsets::ResetRequest {
        to_time,
        force: q.force,
    };
    let def = match stopped_def(&st, &name) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    // One offsets operation at a time.
    let Ok(_guard) = st.offsets_lock.try_lock() else {
        return error(StatusCode::CONFLICT, "another offsets operation is running");
    };
    if let Err(e) = offsets::check_reset(&st.kafka, &def.offsets, &req).await {
        return refused(&name, e);
    }
    match offsets::reset(&st.kafka, &def.offsets, &req).await {
        Ok(n) => {
            tracing::info!(connector = %name, removed = n, "Offsets reset.");
            Json(json!({"message": "The offsets for this connector have been reset successfully", "removed": n}))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(connector = %name, error = %e, "Offsets reset failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot reset offsets; see the logs",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::tests::counting;
    use axum::body::Body;
    use std::sync::atomic::AtomicUsize;
    use tower::ServiceExt;

    const TOKEN: &str = "test-admin-token-0123456789";

    fn state() -> AdminState {
        let sup = Supervisor::start(
            vec![counting(
                "sink",
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
            )],
            Duration::from_secs(5),
        );
        let kafka = KafkaConfig::plaintext("127.0.0.1:1");
        AdminState {
            supervisor: sup,
            token: Arc::new(Secret::new(TOKEN)),
            kafka: kafka.clone(),
            readiness: Arc::new(Readiness::new(
                kafka,
                RegistryClient::new(connector_core::avro::RegistryConfig::new(
                    "http://127.0.0.1:1",
                ))
                .unwrap(),
                None,
                Duration::from_secs(5),
            )),
            worker_id: "test:0".into(),
            offsets_lock: Arc::new(tokio::sync::Mutex::new(())),
            public_metrics: false,
        }
    }

    async fn call(app: &Router, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn auth_and_control() {
        let app = router(state());
        let (code, body) = call(&app, "GET", "/healthz", None).await;
        assert_eq!(code, 200, "{body}");
        for (m, p) in [
            ("GET", "/connectors"),
            ("GET", "/metrics"),
            ("PUT", "/connectors/sink/pause"),
            ("GET", "/connectors/sink/offsets"),
        ] {
            assert_eq!(call(&app, m, p, None).await.0, 401, "{m} {p}");
            assert_eq!(call(&app, m, p, Some("wrong")).await.0, 401, "{m} {p}");
        }
        // Wait until the task reports it started.
        for _ in 0..500 {
            let (_, body) = call(&app, "GET", "/connectors/sink/status", Some(TOKEN)).await;
            if body.contains("RUNNING") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (code, body) = call(&app, "GET", "/connectors", Some(TOKEN)).await;
        assert_eq!((code, body.as_str()), (200, "[\"sink\"]"));
        let (code, _) = call(&app, "PUT", "/connectors/sink/pause", Some(TOKEN)).await;
        assert_eq!(code, 202);
        let (_, body) = call(&app, "GET", "/connectors/sink/status", Some(TOKEN)).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["connector"]["state"], "PAUSED", "{body}");
        assert_eq!(v["type"], "sink");
        // Offsets can only be reset while stopped: 400, as Kafka Connect (KIP-875) answers.
        let (code, body) = call(&app, "DELETE", "/connectors/sink/offsets", Some(TOKEN)).await;
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("\"error_code\":400"), "{body}");
        let (code, _) = call(&app, "PUT", "/connectors/sink/resume", Some(TOKEN)).await;
        assert_eq!(code, 202);
        let (code, _) = call(&app, "PUT", "/connectors/sink/stop", Some(TOKEN)).await;
        assert_eq!(code, 204);
        let (code, body) = call(&app, "DELETE", "/connectors/sink/offsets", Some(TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        // A plain restart answers 204 once restarted (KIP-745; it answered 202 before).
        let (code, body) = call(&app, "POST", "/connectors/sink/restart", Some(TOKEN)).await;
        assert_eq!((code, body.as_str()), (204, ""));
        let (code, _) = call(&app, "GET", "/connectors/nope/status", Some(TOKEN)).await;
        assert_eq!(code, 404);
        let (code, body) = call(&app, "GET", "/connectors?expand=status", Some(TOKEN)).await;
        assert_eq!(code, 200);
        assert!(!body.contains(TOKEN));
        let (code, body) = call(&app, "GET", "/readyz", None).await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("unavailable"), "{body}");
    }

    /// A changed-data connector `src` whose runs fail with `class` while the returned switch is
    /// on, then run until stopped.
    fn switchable(
        class: connector_core::ErrorClass,
        message: &str,
    ) -> (ConnectorDef, Arc<std::sync::atomic::AtomicBool>) {
        use crate::supervisor::TaskError;
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let message = message.to_string();
        let def = ConnectorDef {
            name: "src".into(),
            kind: crate::config::Kind::ChangedData,
            offsets: crate::offsets::OffsetsLocation::None,
            topics: Vec::new(),
            restart: crate::supervisor::tests::fast_restart(),
            factory: Arc::new(move |ctl: connector_core::runtime::TaskControl| {
                let fail = f.load(std::sync::atomic::Ordering::SeqCst);
                let message = message.clone();
                Box::pin(async move {
                    if fail {
                        return Err(TaskError { message, class });
                    }
                    ctl.set_state(TaskState::Running);
                    ctl.shutdown_requested().await;
                    Ok(())
                })
            }),
        };
        (def, fail)
    }

    #[tokio::test]
    async fn readyz_is_503_while_a_connector_is_failed_and_status_shows_restarts() {
        let (def, fail) = switchable(
            connector_core::ErrorClass::Retriable,
            "schema registry unavailable",
        );
        let mut st = state();
        st.supervisor = Supervisor::start(vec![def], Duration::from_secs(5));
        let app = router(st);
        let mut failed_seen = false;
        for _ in 0..500 {
            let (code, body) = call(&app, "GET", "/readyz", None).await;
            if code == 503 && body.contains("\"failed\":[\"src\"]") {
                failed_seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(failed_seen, "readyz names the failed connector");
        let (_, body) = call(&app, "GET", "/connectors/src/status", Some(TOKEN)).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["last_error"].as_str().unwrap_or("").contains("registry"),
            "{body}"
        );
        // The dependency heals: the connector becomes RUNNING by itself.
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut v = Value::Null;
        for _ in 0..1000 {
            let (_, body) = call(&app, "GET", "/connectors/src/status", Some(TOKEN)).await;
            v = serde_json::from_str(&body).unwrap();
            if v["connector"]["state"] == "RUNNING" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(v["connector"]["state"], "RUNNING", "{v}");
        assert!(v["restarts"].as_u64().unwrap() >= 1, "{v}");
        assert_eq!(v["auto_restart"], true);
        // No connector failed: readiness is down to the dependencies (unreachable here).
        let (code, body) = call(&app, "GET", "/readyz", None).await;
        assert_eq!(code, 503);
        assert!(body.contains("kafka"), "{body}");
        let (_, text) = call(&app, "GET", "/metrics", Some(TOKEN)).await;
        assert!(
            text.contains("athena_connect_connector_state{connector=\"src\",state=\"RUNNING\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("athena_connect_connector_restarts_total{connector=\"src\"}"),
            "{text}"
        );
    }

    async fn call_body(
        app: &Router,
        method: &str,
        path: &str,
        auth: &str,
        body: &str,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn wait_running(app: &Router) {
        for _ in 0..1000 {
            let (_, body) = call(app, "GET", "/connectors/sink/status", Some(TOKEN)).await;
            if body.contains("\"state\":\"RUNNING\"") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("sink never RUNNING");
    }

    #[tokio::test]
    async fn connect_rest_shapes() {
        let app = router(state());
        // Any case of the scheme (RFC 9110); errors in Connect's shape, also for 405.
        for auth in [
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
            format!("Bearer {TOKEN}"),
        ] {
            let (code, v) = call_body(&app, "GET", "/connectors", &auth, "").await;
            assert_eq!(code, 200, "{auth}: {v}");
        }
        let bearer = format!("Bearer {TOKEN}");
        let (code, v) = call_body(&app, "GET", "/connectors", &format!("Basic {TOKEN}"), "").await;
        assert_eq!((code, v["error_code"].as_u64()), (401, Some(401)), "{v}");
        let (code, v) = call_body(&app, "DELETE", "/connectors/sink/status", &bearer, "").await;
        assert_eq!((code, v["error_code"].as_u64()), (405, Some(405)), "{v}");
        assert!(v["message"].is_string());
        let (code, v) = call_body(&app, "GET", "/nope", &bearer, "").await;
        assert_eq!((code, v["error_code"].as_u64()), (404, Some(404)), "{v}");

        let (code, v) = call_body(&app, "GET", "/", &bearer, "").await;
        assert_eq!(code, 200);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            v["commit"].is_string() && v.get("kafka_cluster_id").is_some(),
            "{v}"
        );
        let (_, v) = call_body(&app, "GET", "/connector-plugins", &bearer, "").await;
        let types: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(types, ["source", "source", "sink"], "{v}");

        wait_running(&app).await;
        let (_, v) = call_body(&app, "GET", "/connectors/sink", &bearer, "").await;
        assert_eq!(v["config"]["name"], "sink", "{v}");
        assert_eq!(v["tasks"][0], json!({"connector": "sink", "task": 0}));
        let (_, v) = call_body(&app, "GET", "/connectors/sink/config", &bearer, "").await;
        assert_eq!(
            v["connector.class"], "athena-connect/write-back-sink",
            "{v}"
        );
        let (_, v) = call_body(&app, "GET", "/connectors/sink/tasks", &bearer, "").await;
        assert_eq!(v[0]["id"], json!({"connector": "sink", "task": 0}), "{v}");
        let (code, v) =
            call_body(&app, "GET", "/connectors/sink/tasks/0/status", &bearer, "").await;
        assert_eq!(
            (code, v["state"].as_str(), v["id"].as_u64()),
            (200, Some("RUNNING"), Some(0)),
            "{v}"
        );
        let (code, v) =
            call_body(&app, "GET", "/connectors/sink/tasks/1/status", &bearer, "").await;
        assert_eq!(code, 404, "{v}");
        let (code, _) =
            call_body(&app, "GET", "/connectors/nope/tasks/0/status", &bearer, "").await;
        assert_eq!(code, 404);
        let (_, v) = call_body(&app, "GET", "/connectors/sink/topics", &bearer, "").await;
        assert!(v["sink"]["topics"].is_array(), "{v}");
        let (code, v) = call_body(&app, "PUT", "/connectors/sink/topics/reset", &bearer, "").await;
        assert_eq!((code, v["error_code"].as_u64()), (403, Some(403)), "{v}");
        let (_, v) = call_body(
            &app,
            "GET",
            "/connectors?expand=status&expand=info",
            &bearer,
            "",
        )
        .await;
        assert!(v["sink"]["status"]["connector"]["state"].is_string(), "{v}");
        assert_eq!(v["sink"]["info"]["name"], "sink", "{v}");

        // Restart (KIP-745): onlyFailed on a running connector restarts nothing (202 + status);
        // includeTasks answers 202 with RESTARTING and restarts in the background.
        let (code, v) = call_body(
            &app,
            "POST",
            "/connectors/sink/restart?onlyFailed=true",
            &bearer,
            "",
        )
        .await;
        assert_eq!(
            (code, v["connector"]["state"].as_str()),
            (202, Some("RUNNING")),
            "{v}"
        );
        let (code, v) = call_body(
            &app,
            "POST",
            "/connectors/sink/restart?includeTasks=true",
            &bearer,
            "",
        )
        .await;
        assert_eq!(code, 202, "{v}");
        assert_eq!(v["connector"]["state"], "RESTARTING", "{v}");
        assert_eq!(v["tasks"][0]["state"], "RESTARTING", "{v}");
        wait_running(&app).await;
        let (code, _) = call_body(
            &app,
            "POST",
            "/connectors/sink/restart?includeTasks=maybe",
            &bearer,
            "",
        )
        .await;
        assert_eq!(code, 400);
        let (code, _) = call_body(
            &app,
            "POST",
            "/connectors/sink/tasks/0/restart",
            &bearer,
            "",
        )
        .await;
        assert_eq!(code, 204);

        // PATCH offsets: 400 unless stopped, 400 for a body that does not fit.
        let body = r#"{"offsets":[{"partition":{"kafka_topic":"t","kafka_partition":0},"offset":{"kafka_offset":1}}]}"#;
        let (code, v) = call_body(&app, "PATCH", "/connectors/sink/offsets", &bearer, body).await;
        assert_eq!((code, v["error_code"].as_u64()), (400, Some(400)), "{v}");
        assert!(v["message"].as_str().unwrap().contains("STOPPED"), "{v}");
        let (code, _) = call(&app, "PUT", "/connectors/sink/stop", Some(TOKEN)).await;
        assert_eq!(code, 204);
        for bad in ["not json", "{}", r#"{"offsets":[]}"#, body] {
            // The test connector keeps no offsets: even a well-formed body is refused.
            let (code, v) =
                call_body(&app, "PATCH", "/connectors/sink/offsets", &bearer, bad).await;
            assert_eq!(
                (code, v["error_code"].as_u64()),
                (400, Some(400)),
                "{bad}: {v}"
            );
        }
        let (code, _) = call_body(&app, "PATCH", "/connectors/nope/offsets", &bearer, body).await;
        assert_eq!(code, 404);
    }

    /// `onlyFailed=true` restarts a FAILED connector (202, RESTARTING) and a fatal failure,
    /// never restarted by the supervisor, runs again.
    #[tokio::test]
    async fn only_failed_restarts_a_failed_connector() {
        let (def, fail) = switchable(connector_core::ErrorClass::Fatal, "credentials refused");
        let mut st = state();
        st.supervisor = Supervisor::start(vec![def], Duration::from_secs(5));
        let sup = st.supervisor.clone();
        let app = router(st);
        for _ in 0..1000 {
            if !sup.full_status("src").unwrap().auto_restart {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sup.status("src").unwrap().state, TaskState::Failed);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let bearer = format!("Bearer {TOKEN}");
        let (code, v) = call_body(
            &app,
            "POST",
            "/connectors/src/restart?onlyFailed=true",
            &bearer,
            "",
        )
        .await;
        assert_eq!(code, 202, "{v}");
        assert_eq!(v["connector"]["state"], "RESTARTING", "{v}");
        // Without includeTasks Connect's body leaves the task's state as it was.
        assert_eq!(v["tasks"][0]["state"], "FAILED", "{v}");
        for _ in 0..1000 {
            if sup.status("src").unwrap().state == TaskState::Running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "not running after the restart: {:?}",
            sup.full_status("src")
        );
    }

    #[tokio::test]
    async fn public_metrics_opens_only_metrics() {
        let app = router(AdminState {
            public_metrics: true,
            ..state()
        });
        assert_eq!(call(&app, "GET", "/metrics", None).await.0, 200);
        assert_eq!(call(&app, "GET", "/connectors", None).await.0, 401);
    }
}

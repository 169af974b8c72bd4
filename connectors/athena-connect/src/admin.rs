//! The admin HTTP API: health, readiness, Prometheus metrics and Kafka-Connect-like connector
//! control.
//!
//! | Method and path                        | Auth | Answer                                       |
//! |----------------------------------------|------|----------------------------------------------|
//! | `GET /healthz`                         | no   | 200 while the process serves                 |
//! | `GET /readyz`                          | no   | 200 when Kafka, registry and athena answer, else 503 |
//! | `GET /metrics`                         | yes¹ | Prometheus text                              |
//! | `GET /connectors[?expand=status]`      | yes  | names (or name -> status)                    |
//! | `GET /connectors/{name}`               | yes  | name, type, kind (never its config)          |
//! | `GET /connectors/{name}/status`        | yes  | Connect's status shape                       |
//! | `PUT /connectors/{name}/pause`         | yes  | 202                                          |
//! | `PUT /connectors/{name}/resume`        | yes  | 202 (starts it again when stopped)           |
//! | `PUT /connectors/{name}/stop`          | yes  | 204 once stopped (bounded wait)              |
//! | `POST /connectors/{name}/restart`      | yes  | 202 with the new status                      |
//! | `GET /connectors/{name}/offsets`       | yes  | Connect's offsets shape                      |
//! | `DELETE /connectors/{name}/offsets`    | yes  | 200 when reset; 409 unless stopped (KIP-875)² |
//!
//! ² `?to_time=<RFC 3339>` resets a consumer group to that time instead of deleting it;
//! on a write-back sink a reset that would read commands older than its `ledger_retention`
//! again answers 409 unless `?force=true` (see [`offsets::check_reset`]).
//!
//! ¹ Open when `admin.public_metrics = true`.
//!
//! Authentication is a bearer token compared in constant time. Health and readiness are open so
//! orchestrator probes need no secret; they reveal only "up" or "unavailable". No response ever
//! contains a config value, so no secret can be echoed (the mistake of KAFKA-5117). Errors use
//! Connect's `{"error_code", "message"}` body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_client::AthenaClient;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use connector_core::Secret;
use connector_core::avro::RegistryClient;
use connector_core::kafka::KafkaConfig;
use connector_core::runtime::TaskState;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::offsets;
use crate::supervisor::{ConnectorStatus, Supervisor, SupervisorError};

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
        .and_then(|v| v.strip_prefix("Bearer "))
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
        .route("/connectors/{name}", get(info))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route(
            "/connectors/{name}/offsets",
            get(get_offsets).delete(delete_offsets),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    open.merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
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

#[derive(Debug, Deserialize)]
struct ListQuery {
    expand: Option<String>,
}

fn status_json(st: &AdminState, full: &ConnectorStatus, connect_type: &str) -> Value {
    let s = &full.task;
    let state = serde_json::to_value(s.state).unwrap_or(Value::Null);
    let mut task = json!({"id": 0, "state": state, "worker_id": st.worker_id});
    if let Some(e) = &s.last_error {
        task["trace"] = Value::String(e.clone());
    }
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
    v
}

async fn list(State(st): State<AdminState>, Query(q): Query<ListQuery>) -> Response {
    let names = st.supervisor.names();
    if q.expand.as_deref() == Some("status") {
        let mut out = serde_json::Map::new();
        for n in names {
            if let (Ok(s), Ok(d)) = (st.supervisor.full_status(&n), st.supervisor.def(&n)) {
                out.insert(
                    n,
                    json!({"status": status_json(&st, &s, d.kind.connect_type())}),
                );
            }
        }
        return Json(Value::Object(out)).into_response();
    }
    Json(names).into_response()
}

async fn info(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    match st.supervisor.def(&name) {
        Ok(d) => Json(json!({
            "name": d.name,
            "type": d.kind.connect_type(),
            "kind": d.kind.name(),
            "config_section": format!("{}.{}", d.kind.section(), d.name),
            "tasks": [{"connector": d.name, "task": 0}],
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
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

async fn restart(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    if let Err(e) = st.supervisor.restart(&name).await {
        return e.into_response();
    }
    match (st.supervisor.full_status(&name), st.supervisor.def(&name)) {
        (Ok(s), Ok(d)) => (
            StatusCode::ACCEPTED,
            Json(status_json(&st, &s, d.kind.connect_type())),
        )
            .into_response(),
        (Err(e), _) | (_, Err(e)) => e.into_response(),
    }
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
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read offsets from Kafka; see the logs",
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
    Query(q): Query<ResetQuery>,
) -> Response {
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
    let (def, status) = match (st.supervisor.def(&name), st.supervisor.status(&name)) {
        (Ok(d), Ok(s)) => (d, s),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if status.state != TaskState::Stopped {
        return SupervisorError::Conflict {
            name,
            state: serde_json::to_value(status.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            hint: "stop it first: PUT /connectors/{name}/stop (KIP-875)",
        }
        .into_response();
    }
    // One reset at a time; Kafka calls are awaited with the lock released between attempts.
    let Ok(_guard) = st.offsets_lock.try_lock() else {
        return error(StatusCode::CONFLICT, "another offsets operation is running");
    };
    match offsets::check_reset(&st.kafka, &def.offsets, &req).await {
        Ok(()) => {}
        Err(offsets::ResetRefused::Retention(m)) => return error(StatusCode::CONFLICT, m),
        Err(offsets::ResetRefused::BadRequest(m)) => return error(StatusCode::BAD_REQUEST, m),
        Err(e @ offsets::ResetRefused::Kafka(_)) => {
            tracing::warn!(connector = %name, error = %e, "Offsets reset check failed.");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the reset against Kafka; see the logs",
            );
        }
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
                StatusCode::SERVICE_UNAVAILABLE,
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
        // Offsets can only be reset while stopped.
        let (code, _) = call(&app, "DELETE", "/connectors/sink/offsets", Some(TOKEN)).await;
        assert_eq!(code, 409);
        let (code, _) = call(&app, "PUT", "/connectors/sink/resume", Some(TOKEN)).await;
        assert_eq!(code, 202);
        let (code, _) = call(&app, "PUT", "/connectors/sink/stop", Some(TOKEN)).await;
        assert_eq!(code, 204);
        let (code, body) = call(&app, "DELETE", "/connectors/sink/offsets", Some(TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = call(&app, "POST", "/connectors/sink/restart", Some(TOKEN)).await;
        assert_eq!(code, 202, "{body}");
        let (code, _) = call(&app, "GET", "/connectors/nope/status", Some(TOKEN)).await;
        assert_eq!(code, 404);
        let (code, body) = call(&app, "GET", "/connectors?expand=status", Some(TOKEN)).await;
        assert_eq!(code, 200);
        assert!(!body.contains(TOKEN));
        let (code, body) = call(&app, "GET", "/readyz", None).await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("unavailable"), "{body}");
    }

    #[tokio::test]
    async fn readyz_is_503_while_a_connector_is_failed_and_status_shows_restarts() {
        use crate::supervisor::{ConnectorDef, TaskError};
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let def = ConnectorDef {
            name: "src".into(),
            kind: crate::config::Kind::ChangedData,
            offsets: crate::offsets::OffsetsLocation::None,
            restart: crate::supervisor::tests::fast_restart(),
            factory: Arc::new(move |ctl: connector_core::runtime::TaskControl| {
                let fail = f.load(std::sync::atomic::Ordering::SeqCst);
                Box::pin(async move {
                    if fail {
                        return Err(TaskError {
                            message: "schema registry unavailable".into(),
                            class: connector_core::ErrorClass::Retriable,
                        });
                    }
                    ctl.set_state(TaskState::Running);
                    ctl.shutdown_requested().await;
                    Ok(())
                })
            }),
        };
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

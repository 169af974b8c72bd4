//! The webhook receiver: authenticate, make durable, then answer.
//!
//! For each POST: the adapter verifies the raw body (401 and nothing produced when unsigned or
//! forged; 413 above the body limit). Handshakes, heartbeats and status answers are
//! acknowledged without producing. Everything else that is authentic (event notifications, and
//! authentic bodies we cannot parse, so a format change loses nothing) is produced *as received*
//! to the notifications topic with the idempotent `acks=all` producer, and the receiver answers
//! 200 only once Kafka acknowledged it within `ack_budget` (athena allows 2 s). Otherwise it
//! answers 503 and athena retries the same notification; if the slow produce completes later,
//! the retry is a duplicate that the inflation stage drops by `notificationEvent.id`.

use std::sync::Arc;
use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use connector_core::metrics::{ConnectorLabels, global};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::adapter::PushAdapter;
use crate::gap::GapMonitor;
use crate::notification::NotificationKind;

/// Header naming the adapter that received a notification.
pub const ADAPTER_HEADER: &str = "athena.push.adapter";
/// Header with the receive time (RFC 3339).
pub const RECEIVED_AT_HEADER: &str = "athena.push.received_at";

/// A hook run after Kafka acknowledged a notification and before the answer is sent. Used by
/// crash tests (kill between produce and answer); `None` in production.
pub type AfterDurable = Arc<dyn Fn() + Send + Sync>;

/// Everything a receiver needs; cheap to clone.
#[derive(Clone)]
pub struct ReceiverState {
    inner: Arc<Inner>,
}

struct Inner {
    adapter: Arc<dyn PushAdapter>,
    producer: FutureProducer,
    topic: String,
    budget: Duration,
    labels: ConnectorLabels,
    gap: Arc<GapMonitor>,
    after_durable: Option<AfterDurable>,
}

impl ReceiverState {
    /// A receiver producing to `topic`, answering within `budget`.
    pub fn new(
        connector: &str,
        adapter: Arc<dyn PushAdapter>,
        producer: FutureProducer,
        topic: impl Into<String>,
        budget: Duration,
        gap: Arc<GapMonitor>,
    ) -> Self {
        ReceiverState {
            inner: Arc::new(Inner {
                adapter,
                producer,
                topic: topic.into(),
                budget,
                labels: ConnectorLabels {
                    connector: connector.to_string(),
                },
                gap,
                after_durable: None,
            }),
        }
    }

    /// Installs a crash-test hook (see [`AfterDurable`]).
    pub fn with_after_durable(mut self, hook: AfterDurable) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.after_durable = Some(hook);
        }
        self
    }
}

/// The receiver app: `POST /` and `POST /notifications` take notifications, `GET /healthz`
/// answers 200. Bodies above `body_limit` get 413.
pub fn router(state: ReceiverState, body_limit: usize) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/notifications", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn receive(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    let s = &s.inner;
    let m = global();
    if let Err(why) = s.adapter.verify(&headers, &body) {
        m.errors
            .get_or_create(&connector_core::metrics::ErrorLabels {
                connector: s.labels.connector.clone(),
                class: "permanent".into(),
            })
            .inc();
        tracing::warn!(connector = %s.labels.connector, reason = ?why, "Rejected an unauthenticated notification.");
        return (StatusCode::UNAUTHORIZED, "signature required").into_response();
    }
    let parsed = s.adapter.parse(&body);
    let key = match &parsed {
        Ok(n)
            if matches!(
                n.kind,
                NotificationKind::Handshake
                    | NotificationKind::Heartbeat
                    | NotificationKind::QueryStatus
            ) =>
        {
            s.gap.seen();
            tracing::debug!(connector = %s.labels.connector, kind = ?n.kind, "Notification without events acknowledged.");
            return StatusCode::OK.into_response();
        }
        // Partition by resource id (athena gives no ordering anyway).
        Ok(n) => n.events.first().and_then(|e| {
            e.focus
                .reference
                .clone()
                .or(e.focus.identifier_value.clone())
        }),
        Err(e) => {
            tracing::warn!(connector = %s.labels.connector, error = %e, "Authentic notification did not parse; keeping it for the dead-letter queue.");
            None
        }
    };
    let received_at = chrono::Utc::now().to_rfc3339();
    let hdrs = connector_core::headers::inject_current_trace(
        OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: ADAPTER_HEADER,
                value: Some(s.adapter.name()),
            })
            .insert(rdkafka::message::Header {
                key: RECEIVED_AT_HEADER,
                value: Some(received_at.as_str()),
            }),
    );
    let mut record: FutureRecord<'_, str, [u8]> =
        FutureRecord::to(&s.topic).payload(&body[..]).headers(hdrs);
    if let Some(k) = key.as_deref() {
        record = record.key(k);
    }
    let delivery = match s.producer.send_result(record) {
        Ok(d) => d,
        Err((e, _)) => {
            tracing::warn!(connector = %s.labels.connector, error = %e, "Could not queue a notification for Kafka; answering 503.");
            return unavailable(s);
        }
    };
    match tokio::time::timeout(s.budget, delivery).await {
        Ok(Ok(Ok(_))) => {
            s.gap.seen();
            m.push_notifications.get_or_create(&s.labels).inc();
            if let Some(hook) = &s.after_durable {
                hook();
            }
            StatusCode::OK.into_response()
        }
        Ok(Ok(Err((e, _)))) => {
            tracing::warn!(connector = %s.labels.connector, error = %e, "Kafka refused a notification; answering 503.");
            unavailable(s)
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!(connector = %s.labels.connector, budget_ms = s.budget.as_millis() as u64, "Kafka did not acknowledge a notification in time; answering 503.");
            unavailable(s)
        }
    }
}

fn unavailable(s: &Inner) -> Response {
    global()
        .errors
        .get_or_create(&connector_core::metrics::ErrorLabels {
            connector: s.labels.connector.clone(),
            class: "retriable".into(),
        })
        .inc();
    (StatusCode::SERVICE_UNAVAILABLE, "not durable yet, retry").into_response()
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves.
pub async fn serve_tls(
    listener: crate::tls::TlsListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

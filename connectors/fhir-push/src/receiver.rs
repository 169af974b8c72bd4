//! The webhook receiver: authenticate, make durable, then answer.
//!
//! For each POST: the adapter verifies the raw body (401 and nothing produced when unsigned or
//! forged; 413 above the body limit). Handshakes, heartbeats and status answers are
//! acknowledged without producing (liveness only when their event counter moved, see
//! [`crate::gap`]). An event notification whose every event was accepted within the replay
//! window is answered 200 without a new record ([`crate::replay`]); one whose every event is
//! older than `max_event_age` is refused with 422. Everything else that is authentic (new event
//! notifications, and authentic bodies we cannot parse, so a format change loses nothing) is
//! produced *as received* to the notifications topic with the idempotent `acks=all` producer,
//! and the receiver answers 200 only once Kafka acknowledged it within `ack_budget` (athena
//! allows 2 s). Otherwise it answers 503 and athena retries the same notification; if the slow
//! produce completes later, the retry is a duplicate that the inflation stage drops by
//! `notificationEvent.id`.
//!
//! Connection handling (timeouts, caps, shutdown) is [`connector_core::http_server`]'s.

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
use connector_core::emit::InternalEvent;
use connector_core::http_server::{self, HttpServerConfig};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use crate::adapter::PushAdapter;
use crate::gap::GapMonitor;
use crate::notification::{Notification, NotificationKind};
use crate::replay::{Admit, ReplayGuard};
use crate::telemetry::{NotificationReceived, NotificationResult, Unavailable};

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
    connector: String,
    gap: Arc<GapMonitor>,
    after_durable: Option<AfterDurable>,
    replay: Option<Arc<ReplayGuard>>,
    max_event_age: Option<Duration>,
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
                connector: connector.to_string(),
                gap,
                after_durable: None,
                replay: None,
                max_event_age: None,
            }),
        }
    }

    /// Answers notifications already accepted (per `guard`) 2xx without a new record.
    pub fn with_replay_guard(mut self, guard: Arc<ReplayGuard>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.replay = Some(guard);
        }
        self
    }

    /// Refuses (422) notifications whose every event is older than `age`.
    pub fn with_max_event_age(mut self, age: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.max_event_age = Some(age);
        }
        self
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

/// One OpenTelemetry SERVER span per webhook (HTTP semantic conventions), the root of the
/// notification's trace: the notification record carries the context of its `send` span.
async fn receive(
    State(s): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only the two routes reach this handler, so the path is the route (no id in it).
    let route = if uri.path() == "/" {
        "/"
    } else {
        "/notifications"
    };
    let span = tracing::info_span!(
        parent: None,
        "fhir_push.receive",
        otel.name = %format_args!("POST {route}"),
        otel.kind = "server",
        http.request.method = "POST",
        http.route = route,
        connector = %s.inner.connector,
        http.response.status_code = tracing::field::Empty,
    );
    let response = receive_in_span(&s, headers, body)
        .instrument(span.clone())
        .await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}

async fn receive_in_span(s: &ReceiverState, headers: HeaderMap, body: Bytes) -> Response {
    let s = &s.inner;
    if let Err(why) = s.adapter.verify(&headers, &body) {
        s.answered(NotificationResult::Unauthorized { reason: &why });
        return (StatusCode::UNAUTHORIZED, "signature required").into_response();
    }
    let parsed = s.adapter.parse(&body);
    let now = chrono::Utc::now();
    let mut reservation = None;
    let key = match &parsed {
        Ok(n)
            if matches!(
                n.kind,
                NotificationKind::Handshake
                    | NotificationKind::Heartbeat
                    | NotificationKind::QueryStatus
            ) =>
        {
            let live = s
                .gap
                .heartbeat(n.subscription.as_deref(), n.events_since_start);
            s.answered(NotificationResult::Heartbeat { kind: n.kind, live });
            return StatusCode::OK.into_response();
        }
        Ok(n) => {
            if let Some(guard) = &s.replay {
                match guard.admit(&replay_keys(n), now) {
                    Admit::Replay => {
                        s.answered(NotificationResult::Replayed);
                        return StatusCode::OK.into_response();
                    }
                    Admit::InFlight => {
                        return unavailable(s, Unavailable::InFlight);
                    }
                    Admit::New(r) => reservation = Some(r),
                }
            }
            if let Some(age) = s.max_event_age
                && is_stale(n, now, age)
            {
                s.answered(NotificationResult::Stale { max_event_age: age });
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "events older than max_event_age",
                )
                    .into_response();
            }
            // Partition by resource id (athena gives no ordering anyway).
            n.events.first().and_then(|e| {
                e.focus
                    .reference
                    .clone()
                    .or(e.focus.identifier_value.clone())
            })
        }
        Err(e) => {
            tracing::warn!(connector = %s.connector, error = %e, "Authentic notification did not parse; keeping it for the dead-letter queue.");
            None
        }
    };
    let received_at = now.to_rfc3339();
    // The notification's PRODUCER span, a child of the webhook's server span; its context is
    // the record's `traceparent`, which the inflater continues.
    let send = connector_core::telemetry::send_span(&s.topic, 1);
    let hdrs = send.in_scope(|| {
        connector_core::headers::inject_current_trace(notification_headers(s, &body, &received_at))
    });
    let mut record: FutureRecord<'_, str, [u8]> =
        FutureRecord::to(&s.topic).payload(&body[..]).headers(hdrs);
    if let Some(k) = key.as_deref() {
        record = record.key(k);
    }
    let delivery = match s.producer.send_result(record) {
        Ok(d) => d,
        Err((e, _)) => {
            return unavailable(s, Unavailable::NotQueued(&e));
        }
    };
    match tokio::time::timeout(s.budget, delivery)
        .instrument(send)
        .await
    {
        Ok(Ok(Ok(_))) => {
            if let Some(r) = reservation {
                r.commit(now);
            }
            s.gap.seen();
            if let Ok(n) = &parsed
                && let Some(c) = n.events_since_start
            {
                s.gap.note_counter(n.subscription.as_deref(), c);
            }
            s.answered(NotificationResult::Accepted);
            if let Some(hook) = &s.after_durable {
                hook();
            }
            StatusCode::OK.into_response()
        }
        Ok(Ok(Err((e, _)))) => unavailable(s, Unavailable::Refused(&e)),
        Ok(Err(_)) | Err(_) => unavailable(s, Unavailable::Timeout(s.budget)),
    }
}

/// The CloudEvents `ce_type` of a raw push notification.
pub const NOTIFICATION_CE_TYPE: &str = "com.athenaconnect.push.Notification";

/// The headers of a notification record: the adapter, the receive time and the CloudEvents
/// binding. `ce_id` is a digest of the body, so a webhook athena delivers twice has one id;
/// `ce_source` names the receiving connector.
fn notification_headers(s: &Inner, body: &[u8], received_at: &str) -> OwnedHeaders {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let source = format!("athena-connect://fhir-push/{}", s.connector);
    let h = OwnedHeaders::new_with_capacity(9)
        .insert(rdkafka::message::Header {
            key: ADAPTER_HEADER,
            value: Some(s.adapter.name()),
        })
        .insert(rdkafka::message::Header {
            key: RECEIVED_AT_HEADER,
            value: Some(received_at),
        });
    let h = connector_core::headers::with_cloud_event(
        h,
        &connector_core::headers::CloudEvent {
            id: &id,
            ty: NOTIFICATION_CE_TYPE,
            source: &source,
            time: Some(received_at),
            subject: None,
        },
    );
    connector_core::headers::with_str(
        h,
        connector_core::headers::CONTENT_TYPE,
        connector_core::headers::JSON_CONTENT_TYPE,
    )
}

impl Inner {
    fn answered(&self, result: NotificationResult<'_>) {
        NotificationReceived {
            connector: &self.connector,
            result,
        }
        .emit();
    }
}

fn unavailable(s: &Inner, why: Unavailable<'_>) -> Response {
    s.answered(NotificationResult::Unavailable(why));
    (StatusCode::SERVICE_UNAVAILABLE, "not durable yet, retry").into_response()
}

/// The ids replay protection keys a notification on: every event's dedup key, or none at all
/// when one event has no key (such a notification cannot be recognised, so it is always new).
fn replay_keys(n: &Notification) -> Vec<String> {
    (0..n.events.len())
        .map(|i| n.dedup_key(i))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// Whether every event carries a timestamp older than `max_age` (an event without one, or a
/// notification without events, is never stale).
fn is_stale(n: &Notification, now: chrono::DateTime<chrono::Utc>, max_age: Duration) -> bool {
    let Ok(max_age) = chrono::Duration::from_std(max_age) else {
        return false;
    };
    !n.events.is_empty()
        && n.events
            .iter()
            .all(|e| e.timestamp.is_some_and(|t| now - t > max_age))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, with the default
/// [`HttpServerConfig`] limits.
pub async fn serve_tls(
    listener: crate::tls::TlsListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tcp, tls) = listener.into_parts();
    http_server::serve(
        tcp,
        Some(tls),
        app,
        HttpServerConfig::default(),
        "receiver",
        shutdown,
    )
    .await
}

/// Serves `app` on `listener` until `shutdown` resolves, with the default
/// [`HttpServerConfig`] limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http_server::serve(
        listener,
        None,
        app,
        HttpServerConfig::default(),
        "receiver",
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::parse_bundle;

    fn note(events: &[(&str, Option<&str>)]) -> Notification {
        let evs: Vec<serde_json::Value> = events
            .iter()
            .map(|(id, ts)| {
                let mut e =
                    serde_json::json!({"id": id, "focus": {"reference": "Patient/a-1.E-1"}});
                if let Some(t) = ts {
                    e["timestamp"] = (*t).into();
                }
                e
            })
            .collect();
        let b = serde_json::json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "SubscriptionStatus", "type": "event-notification",
            "notificationEvent": evs}}]});
        parse_bundle(b.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn stale_only_when_every_event_is_old() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let h2 = Duration::from_secs(7200);
        assert!(is_stale(
            &note(&[("a", Some("2026-01-01T09:00:00Z"))]),
            now,
            h2
        ));
        assert!(!is_stale(
            &note(&[("a", Some("2026-01-01T11:00:00Z"))]),
            now,
            h2
        ));
        assert!(!is_stale(
            &note(&[
                ("a", Some("2026-01-01T09:00:00Z")),
                ("b", Some("2026-01-01T11:30:00Z"))
            ]),
            now,
            h2
        ));
        assert!(!is_stale(&note(&[("a", None)]), now, h2), "no timestamp");
        assert!(!is_stale(&note(&[]), now, h2), "no events");
        assert_eq!(
            replay_keys(&note(&[("a", None), ("b", None)])),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}

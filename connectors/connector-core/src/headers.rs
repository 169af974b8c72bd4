//! Kafka headers athena-connect reads and writes: W3C trace context (`traceparent`,
//! `tracestate`) so a command's trace continues through the athena call into its result, and
//! the CloudEvents Kafka protocol binding (binary mode: `ce_specversion`, `ce_id`, `ce_type`,
//! `ce_source`, `ce_time`, `ce_subject`, `ce_dataschema` and `content-type`) on every record
//! the project writes (events, command results, push notifications) so generic tooling can
//! route them without decoding Avro.
//!
//! Avro values are in the Confluent wire format (magic byte 0, 4-byte schema id, Avro binary):
//! their `content-type` is [`AVRO_CONTENT_TYPE`] and `ce_dataschema` is the registry URL of
//! the writer schema, `<registry>/schemas/ids/<id>` (decision record 0018).
//!
//! Header values are ids, types and times only: never patient data.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// W3C trace context header names.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state header.
pub const TRACESTATE: &str = "tracestate";

/// The value of header `name` as UTF-8, if present and valid.
pub fn get_str<'a>(headers: &'a impl Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Adds a UTF-8 header.
pub fn with_str(headers: OwnedHeaders, name: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header {
        key: name,
        value: Some(value.as_bytes()),
    })
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);
impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct HeaderExtractor<'a, H: Headers>(&'a H);
impl<H: Headers> Extractor for HeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        get_str(self.0, key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Adds the current `tracing` span's W3C trace context to `headers` (nothing when no
/// OpenTelemetry layer is installed or the span is not sampled).
pub fn inject_current_trace(headers: OwnedHeaders) -> OwnedHeaders {
    let cx = tracing::Span::current().context();
    let mut map = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapInjector(&mut map))
    });
    let mut headers = headers;
    for (k, v) in &map {
        headers = with_str(headers, k, v);
    }
    headers
}

/// Makes the trace context carried in `headers` (if any) the parent of `span`.
pub fn continue_trace(span: &tracing::Span, headers: &impl Headers) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    // Errors only when the span is disabled; nothing to continue then.
    let _ = span.set_parent(cx);
}

/// Makes the current span's context the `traceparent` of a record whose headers were built
/// earlier (under another span, or none): a copy of `headers` without any trace context, plus
/// the current one.
pub fn retrace(headers: &OwnedHeaders) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.count() + 2);
    for h in headers.iter() {
        if h.key != TRACEPARENT && h.key != TRACESTATE {
            out = out.insert(h);
        }
    }
    inject_current_trace(out)
}

/// The CloudEvents `content-type` header (the binding's `datacontenttype`).
pub const CONTENT_TYPE: &str = "content-type";
/// `content-type` of Avro values in the Confluent wire format (the schema id prefix names the
/// writer schema; `ce_dataschema` gives its registry URL).
pub const AVRO_CONTENT_TYPE: &str = "application/avro";
/// `content-type` of the raw push notifications (the webhook body as received).
pub const JSON_CONTENT_TYPE: &str = "application/json";

static REGISTRY_URL: OnceLock<String> = OnceLock::new();

/// Remembers the schema registry's base URL for `ce_dataschema` (the first one wins: a
/// process talks to one registry). Credentials in the URL are dropped.
pub fn set_registry_url(url: &str) {
    let base = match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => return,
    };
    let _ = REGISTRY_URL.set(base.trim_end_matches('/').to_string());
}

/// The schema id of a Confluent wire-format value (magic byte 0, then the id, big-endian).
pub fn wire_schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Adds `content-type: application/avro` and `ce_dataschema` (the registry URL of the
/// value's writer schema, `<registry>/schemas/ids/<id>`, when the registry is known) to the
/// headers of an Avro record whose value is `value`.
pub fn with_avro_data(headers: OwnedHeaders, value: &[u8]) -> OwnedHeaders {
    let h = with_str(headers, CONTENT_TYPE, AVRO_CONTENT_TYPE);
    match (REGISTRY_URL.get(), wire_schema_id(value)) {
        (Some(base), Some(id)) => with_str(h, "ce_dataschema", &format!("{base}/schemas/ids/{id}")),
        _ => h,
    }
}

/// CloudEvents attributes for an event record.
#[derive(Debug, Clone)]
pub struct CloudEvent<'a> {
    /// `ce_id`: the deterministic event id.
    pub id: &'a str,
    /// `ce_type`: e.g. `com.athenaconnect.events.PatientChanged`.
    pub ty: &'a str,
    /// `ce_source`: e.g. `athena://195900/patients`.
    pub source: &'a str,
    /// `ce_time`: RFC 3339 time of the change.
    pub time: Option<&'a str>,
    /// `ce_subject`: the entity id (or the command id of a result).
    pub subject: Option<&'a str>,
}

/// Adds `ce_specversion` and the CloudEvents attributes of `ev`.
pub fn with_cloud_event(headers: OwnedHeaders, ev: &CloudEvent<'_>) -> OwnedHeaders {
    let mut h = with_str(headers, "ce_specversion", "1.0");
    h = with_str(h, "ce_id", ev.id);
    h = with_str(h, "ce_type", ev.ty);
    h = with_str(h, "ce_source", ev.source);
    if let Some(t) = ev.time {
        h = with_str(h, "ce_time", t);
    }
    match ev.subject {
        Some(s) => with_str(h, "ce_subject", s),
        None => h,
    }
}

/// The headers of one event record: `event_id`, the CloudEvents attributes (`ce_id` = event id,
/// `ce_subject` = entity id, `ce_time` = change time when known) and the current trace context.
/// Consumers can deduplicate on `event_id` without decoding Avro. `athena-contracts` calls this
/// with an event's envelope.
pub fn event_record_headers(
    event_id: &str,
    entity_id: &str,
    changed_at: Option<chrono::DateTime<chrono::Utc>>,
    ce_type: &str,
    ce_source: &str,
) -> OwnedHeaders {
    let time = changed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let h = with_str(OwnedHeaders::new_with_capacity(10), "event_id", event_id);
    let h = with_cloud_event(
        h,
        &CloudEvent {
            id: event_id,
            ty: ce_type,
            source: ce_source,
            time: time.as_deref(),
            subject: Some(entity_id),
        },
    );
    inject_current_trace(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_event_headers() {
        let h = with_cloud_event(
            OwnedHeaders::new(),
            &CloudEvent {
                id: "e1",
                ty: "com.athenaconnect.events.PatientChanged",
                source: "athena://195900/patients",
                time: Some("2026-01-01T00:00:00Z"),
                subject: Some("60178"),
            },
        );
        assert_eq!(get_str(&h, "ce_id"), Some("e1"));
        assert_eq!(get_str(&h, "ce_specversion"), Some("1.0"));
        assert_eq!(get_str(&h, "ce_subject"), Some("60178"));
        assert_eq!(get_str(&h, "missing"), None);
    }

    #[test]
    fn avro_values_carry_content_type_and_their_schema_url() {
        set_registry_url("http://user:pw@127.0.0.1:8081/apis/ccompat/v7/");
        let h = with_avro_data(OwnedHeaders::new(), &[0, 0, 0, 1, 44, 2, 3]);
        assert_eq!(get_str(&h, CONTENT_TYPE), Some(AVRO_CONTENT_TYPE));
        let url = get_str(&h, "ce_dataschema").expect("dataschema");
        assert!(url.ends_with("/schemas/ids/300"), "{url}");
        assert!(
            !url.contains("pw"),
            "credentials never reach a header: {url}"
        );
        assert_eq!(wire_schema_id(b"{}"), None);
    }

    #[test]
    fn retrace_replaces_the_trace_context() {
        let h = with_str(OwnedHeaders::new(), "event_id", "e1");
        let h = with_str(
            h,
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let r = retrace(&h);
        // No span is current in a unit test: the old context is gone, nothing new is added.
        assert_eq!(get_str(&r, TRACEPARENT), None);
        assert_eq!(get_str(&r, "event_id"), Some("e1"));
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let mut map = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut MapInjector(&mut map))
        });
        let mut h = OwnedHeaders::new();
        for (k, v) in &map {
            h = with_str(h, k, v);
        }
        assert_eq!(
            get_str(&h, TRACEPARENT),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let back =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&h)));
        assert_eq!(
            back.span().span_context().trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
    }
}

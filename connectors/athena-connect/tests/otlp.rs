//! OpenTelemetry export of the real binary, checked on the wire: an in-process OTLP/gRPC trace
//! collector (the protocol's own generated server), reached over TLS (`https://`, a private CA
//! from the config), receives what `athena-connect run` exports while a changed-data source, a
//! push receiver and a write-back sink work:
//! - the resource carries the configured `service.name`;
//! - write-back: the caller's trace continues in the process: the command's CONSUMER span
//!   `process <topic>`, the athena call's CLIENT span and the result's PRODUCER span are in the
//!   command's trace, with the messaging and HTTP semantic-convention attributes, and the
//!   result's `traceparent` names the result's span;
//! - changed-data source: an event's `traceparent` names a PRODUCER span `send <topic>` that the
//!   collector received while the process still runs (one trace per poll, not per process);
//! - push receiver: a webhook is a SERVER span whose trace the notification record carries;
//! - the CloudEvents Kafka binding on events, results and notifications, read back with a plain
//!   consumer: `ce_*`, `content-type`, and a `ce_dataschema` the registry really serves;
//! - no span name or attribute carries the synthetic patient's data (ids only).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::BookAppointment;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use common::*;
use connector_core::avro::{AvroCodec, SubjectStrategy};
use connector_core::headers::{get_str, wire_schema_id};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const SERVICE: &str = "athena-connect-otlp-e2e";
const FIRST: &str = "Otlpfirstname";
const LAST: &str = "Otlplastname";
const PUSH_SECRET: &str = "otlp-push-secret-0123456789abcdef";
const TLS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fhir-push/tests/fixtures/tls"
);

/// Keeps every export request it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    fn spans(&self) -> Vec<Seen> {
        flatten(&self.0.lock().unwrap())
    }

    /// Waits (the batch exporter sends every few seconds) for a span matching `pred`.
    async fn wait_for(&self, what: &str, proc: &Proc, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector never received {what}; names seen: {:?}\noutput:\n{}",
                self.spans().iter().map(|s| &s.name).collect::<Vec<_>>(),
                proc.output()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Collector {
    /// The `send <topic>` PRODUCER span a record's `traceparent` names, once exported.
    async fn send_span_of(&self, m: &OwnedMessage, proc: &Proc) -> Seen {
        let (trace, span) = traceparent(m);
        let what = format!("the producer span of a record on {}", m.topic());
        let s = self
            .wait_for(&what, proc, |s| s.trace_id == trace && s.span_id == span)
            .await;
        assert_eq!(s.name, format!("send {}", m.topic()));
        assert_eq!(s.kind, kind(SpanKind::Producer));
        assert_eq!(s.attr("messaging.system"), Some("kafka"));
        assert_eq!(s.attr("messaging.operation.type"), Some("send"));
        assert_eq!(s.attr("messaging.destination.name"), Some(m.topic()));
        s
    }
}

/// One exported span, flattened for the assertions.
#[derive(Debug, Clone)]
struct Seen {
    service: Option<String>,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i32,
    name: String,
    attributes: Vec<(String, String)>,
}

impl Seen {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn flatten(requests: &[ExportTraceServiceRequest]) -> Vec<Seen> {
    let mut out = Vec::new();
    for req in requests {
        for rs in &req.resource_spans {
            let service = rs.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(&kv.value))
            });
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(Seen {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        name: span.name.clone(),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(&kv.value)))
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

/// (trace id, span id) of a record's W3C `traceparent`.
fn traceparent(m: &OwnedMessage) -> (String, String) {
    let tp = m
        .headers()
        .and_then(|h| get_str(h, "traceparent"))
        .unwrap_or_else(|| panic!("record on {} has no traceparent", m.topic()));
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp}");
    (parts[1].to_string(), parts[2].to_string())
}

fn header<'a>(m: &'a OwnedMessage, key: &str) -> &'a str {
    m.headers()
        .and_then(|h| get_str(h, key))
        .unwrap_or_else(|| panic!("record on {} has no {key} header", m.topic()))
}

/// `content-type: application/avro` and a `ce_dataschema` URL the registry answers with the
/// writer schema of the record's value.
async fn assert_avro_binding(m: &OwnedMessage) {
    assert_eq!(header(m, "ce_specversion"), "1.0");
    assert_eq!(header(m, "content-type"), "application/avro");
    let id = wire_schema_id(m.payload().unwrap_or_default()).expect("wire-format value");
    let url = header(m, "ce_dataschema");
    assert!(url.ends_with(&format!("/schemas/ids/{id}")), "{url}");
    let schema = reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap();
    assert!(schema.contains("schema"), "GET {url}: {schema}");
}

fn kind(k: SpanKind) -> i32 {
    k as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_convention_spans_reach_a_tls_collector_and_records_carry_cloudevents() {
    let stack = Stack::get().await;

    // The collector, over TLS with the fixture certificate (127.0.0.1, signed by ca.pem).
    // Both rustls providers are compiled in (dependencies enable ring too), so tonic's server
    // needs the process default named; the binary's exporter picks its provider itself.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(format!("{TLS}/cert.pem")).unwrap(),
        std::fs::read(format!("{TLS}/key.pem")).unwrap(),
    );
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let names = SinkNames::new();
    for t in [&names.patients, &names.appointments, &names.billing] {
        stack.create_topic(t, 3).await;
    }
    let prefix = format!("{}.", unique("otlp"));
    let push_port = free_port();
    let push_base = format!("{prefix}push");
    let notifications = format!("{push_base}.notifications");
    let extra = format!(
        r#"{sink}
[telemetry.otlp]
endpoint = "{endpoint}"
service_name = "{SERVICE}"
ca_file = "{TLS}/ca.pem"
{source}
{push}"#,
        sink = names.section("wb"),
        source = source_section("src", &prefix, &["patients"]),
        push = push_section("push", push_port, PUSH_SECRET, &push_base),
    );
    let config = base_config(&stack, &sim.base_url, "json", &extra);
    let mut proc = Proc::start(&config, &[]);
    for c in ["wb", "src", "push"] {
        wait_state(&proc.admin, c, "RUNNING", Duration::from_secs(60)).await;
    }

    // ---- Changed-data source: a change becomes an event whose trace is exported while the
    // process runs.
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            firstname: FIRST.into(),
            lastname: LAST.into(),
            ..NewPatient::default()
        },
    );
    let events_topic = format!("{prefix}athena.patients.v1");
    let events = read_topic(
        &stack.kafka(),
        &events_topic,
        Duration::from_secs(60),
        |m| !m.is_empty(),
    )
    .await;
    let event = events.first().unwrap_or_else(|| {
        panic!(
            "no changed-data event on {events_topic}:\n{}",
            proc.output()
        )
    });
    let send = collector.send_span_of(event, &proc).await;
    let poll = collector
        .wait_for("the poll's span", &proc, |s| {
            s.span_id == send.parent_span_id
        })
        .await;
    assert_eq!(
        poll.name, "poll patients",
        "the send span's parent: {poll:?}"
    );
    assert!(
        poll.parent_span_id.is_empty(),
        "a poll is the root of its trace: {poll:?}"
    );
    assert_eq!(header(event, "ce_subject"), patient);
    assert_eq!(
        header(event, "ce_source"),
        format!("athena://{PRACTICE}/patients")
    );
    assert_avro_binding(event).await;

    // ---- Push receiver: a webhook is a server span; the notification carries its trace.
    let body = notification(
        &unique("otlp-ev"),
        1,
        "Patient.update",
        &format!("Patient/a-{PRACTICE}.E-{patient}"),
    );
    let code = post_signed(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{push_port}/notifications"),
        PUSH_SECRET,
        &body,
    )
    .await;
    assert_eq!(code, 200, "output:\n{}", proc.output());
    let notes = read_topic(
        &stack.kafka(),
        &notifications,
        Duration::from_secs(30),
        |m| !m.is_empty(),
    )
    .await;
    let note = notes.first().expect("the notification record");
    assert_eq!(header(note, "ce_specversion"), "1.0");
    assert_eq!(
        header(note, "ce_type"),
        "com.athenaconnect.push.Notification"
    );
    assert_eq!(header(note, "content-type"), "application/json");
    for k in ["ce_id", "ce_source", "ce_time"] {
        assert!(!header(note, k).is_empty(), "{k}");
    }
    let note_send = collector.send_span_of(note, &proc).await;
    assert_eq!(note.topic(), notifications);
    let webhook = collector
        .wait_for("the webhook's server span", &proc, |s| {
            s.span_id == note_send.parent_span_id
        })
        .await;
    assert_eq!(webhook.name, "POST /notifications");
    assert_eq!(webhook.kind, kind(SpanKind::Server));
    assert_eq!(webhook.attr("http.request.method"), Some("POST"));
    assert_eq!(webhook.attr("http.response.status_code"), Some("200"));
    // The inflater continues the notification's trace into the event it produces.
    let inflated = read_topic(
        &stack.kafka(),
        &format!("{push_base}.patients"),
        Duration::from_secs(60),
        |m| !m.is_empty(),
    )
    .await;
    let inflated = inflated.first().expect("the inflated event");
    assert_eq!(traceparent(inflated).0, note_send.trace_id);
    assert_avro_binding(inflated).await;

    // ---- Write-back: command -> athena call -> result in the caller's trace.
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
    let slots = sim
        .state
        .add_open_slots(PRACTICE, "1", "71", date, &["10:00"]);
    let mut registry = stack.registry();
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    registry.auto_register = true;
    let codec = AvroCodec::new(registry).unwrap();
    let encoder = codec
        .encoder::<BookAppointment>(&names.appointments)
        .await
        .unwrap();
    let command = BookAppointment {
        command_id: "otlp-1".into(),
        practice_id: PRACTICE.to_string(),
        correlation_id: None,
        issued_at: None,
        appointment_id: slots[0].clone(),
        patient_id: patient.clone(),
        department_id: Some("1".into()),
        appointment_type_id: Some("82".into()),
        reason_id: None,
        booking_note: None,
        ignore_schedulable_permission: true,
        no_patient_case: false,
    };
    let producer = stack.kafka().build_producer().unwrap();
    producer
        .send(
            FutureRecord::to(&names.appointments)
                .key(&format!("{PRACTICE}/{}", slots[0]))
                .payload(&encoder.encode(&command).unwrap())
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(format!("00-{TRACE_ID}-00f067aa0ba902b7-01").as_bytes()),
                })),
            Duration::from_secs(30),
        )
        .await
        .expect("produce command");
    let r = read_topic(
        &stack.kafka(),
        &names.results,
        Duration::from_secs(90),
        |m| has_key(m, "otlp-1"),
    )
    .await;
    let result = r
        .iter()
        .find(|m| m.key() == Some(b"otlp-1".as_slice()))
        .unwrap_or_else(|| panic!("no result for the command:\n{}", proc.output()));
    let (res_trace, res_span) = traceparent(result);
    assert_eq!(res_trace, TRACE_ID, "the result is in the command's trace");
    assert_eq!(header(result, "ce_id"), "otlp-1");
    assert_eq!(header(result, "ce_subject"), "otlp-1");
    assert_eq!(
        header(result, "ce_type"),
        "com.athenaconnect.commands.CommandResult"
    );
    assert_eq!(
        header(result, "ce_source"),
        format!("athena://{PRACTICE}/write-back")
    );
    assert!(!header(result, "ce_time").is_empty());
    assert_avro_binding(result).await;
    let created = collector
        .wait_for("the result's producer span", &proc, |s| {
            s.trace_id == TRACE_ID && s.span_id == res_span
        })
        .await;
    assert_eq!(created.name, format!("create {}", names.results));
    assert_eq!(created.kind, kind(SpanKind::Producer));
    let process = collector
        .wait_for("the command's consumer span", &proc, |s| {
            s.trace_id == TRACE_ID && s.kind == kind(SpanKind::Consumer)
        })
        .await;
    assert_eq!(process.name, format!("process {}", names.appointments));
    assert_eq!(process.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(created.parent_span_id, process.span_id);
    assert_eq!(process.attr("messaging.system"), Some("kafka"));
    assert_eq!(process.attr("messaging.operation.type"), Some("process"));
    assert_eq!(
        process.attr("messaging.destination.name"),
        Some(names.appointments.as_str())
    );
    assert!(process.attr("messaging.kafka.offset").is_some());
    assert!(process.attr("messaging.destination.partition.id").is_some());
    assert_eq!(process.attr("command_id"), Some("otlp-1"));
    let call = collector
        .wait_for("the athena call's client span", &proc, |s| {
            s.trace_id == TRACE_ID && s.kind == kind(SpanKind::Client)
        })
        .await;
    assert!(
        call.attr("http.request.method").is_some()
            && call.attr("http.response.status_code").is_some()
            && call.attr("url.template").is_some_and(|t| t.contains('{'))
            && call.attr("server.address") == Some("127.0.0.1"),
        "HTTP client attributes: {call:?}"
    );
    assert_eq!(
        call.name,
        format!(
            "{} {}",
            call.attr("http.request.method").unwrap(),
            call.attr("url.template").unwrap()
        )
    );

    // A clean stop flushes the batch exporter.
    proc.sigterm();
    assert_eq!(proc.wait_exit(Duration::from_secs(60)).await, 0);
    let spans = collector.spans();
    server.abort();
    assert!(
        spans.iter().all(|s| s.service.as_deref() == Some(SERVICE)),
        "every span carries service.name = {SERVICE}: {:?}",
        spans.iter().map(|s| &s.service).collect::<Vec<_>>()
    );
    for s in &spans {
        for (k, v) in &s.attributes {
            for phi in [FIRST, LAST] {
                assert!(
                    !v.contains(phi) && !s.name.contains(phi),
                    "span {} attribute {k} carries patient data",
                    s.name
                );
            }
        }
    }
    sim.shutdown().await;
}

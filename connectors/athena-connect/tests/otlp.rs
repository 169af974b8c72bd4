//! OpenTelemetry export of the real binary, checked on the wire: an in-process OTLP/gRPC trace
//! collector (the protocol's own generated server) receives what `athena-connect run` exports
//! while a write-back sink answers a command that carries a W3C `traceparent`:
//! - the resource carries the configured `service.name`;
//! - the caller's trace continues in the process: spans with the command's trace id reach the
//!   collector: the sink's `write_back.command` span and the `athena_request` span of the
//!   athena call;
//! - no span name or attribute carries the synthetic patient's data (ids only).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use athena_connect_tests::Stack;
use athena_contracts::BookAppointment;
use athena_sim::{NewPatient, RunningSim, SimConfig};
use common::*;
use connector_core::avro::{AvroCodec, SubjectStrategy};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const SERVICE: &str = "athena-connect-otlp-e2e";
const FIRST: &str = "Otlpfirstname";
const LAST: &str = "Otlplastname";

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

/// One exported span, flattened for the assertions.
#[derive(Debug)]
struct Seen {
    service: Option<String>,
    trace_id: String,
    name: String,
    attributes: Vec<(String, String)>,
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
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_with_the_callers_trace_and_no_phi() {
    let stack = Stack::get().await;

    // The collector, on a port of its own.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let names = SinkNames::new();
    for t in [&names.patients, &names.appointments, &names.billing] {
        stack.create_topic(t, 3).await;
    }
    let extra = format!(
        "{}\n[telemetry.otlp]\nendpoint = \"{endpoint}\"\nservice_name = \"{SERVICE}\"\n",
        names.section("wb")
    );
    let config = base_config(&stack, &sim.base_url, "json", &extra);
    let mut proc = Proc::start(&config, &[]);
    wait_state(&proc.admin, "wb", "RUNNING", Duration::from_secs(60)).await;

    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            firstname: FIRST.into(),
            lastname: LAST.into(),
            ..NewPatient::default()
        },
    );
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
    assert!(
        has_key(&r, "otlp-1"),
        "no result for the command:\n{}",
        proc.output()
    );

    // A clean stop flushes the batch exporter.
    proc.sigterm();
    assert_eq!(proc.wait_exit(Duration::from_secs(60)).await, 0);
    let spans = flatten(&collector.0.lock().unwrap());
    server.abort();

    assert!(
        !spans.is_empty(),
        "the collector received no span; output:\n{}",
        proc.output()
    );
    assert!(
        spans.iter().all(|s| s.service.as_deref() == Some(SERVICE)),
        "every span carries service.name = {SERVICE}: {:?}",
        spans.iter().map(|s| &s.service).collect::<Vec<_>>()
    );
    let in_trace: Vec<&Seen> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    assert!(
        in_trace
            .iter()
            .any(|s| s.name == connector_core::telemetry::ATHENA_REQUEST_SPAN),
        "the athena call continues the command's trace; spans in it: {:?}; all names: {:?}",
        in_trace.iter().map(|s| &s.name).collect::<Vec<_>>(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(
        in_trace.iter().any(|s| s.name == "write_back.command"
            && s.attributes
                .iter()
                .any(|(k, v)| k == "command_id" && v == "otlp-1")),
        "the command's own span is in the caller's trace: {:?}",
        in_trace.iter().map(|s| &s.name).collect::<Vec<_>>()
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

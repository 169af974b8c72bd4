//! Logs and traces: the `tracing` subscriber every binary installs, and the optional
//! OpenTelemetry OTLP trace exporter (off by default).
//!
//! Logs are human-readable (`pretty`) or one JSON object per line (`json`) for log shippers.
//! The W3C trace-context propagator is installed globally so the Kafka header helpers can carry
//! a command's trace into the athena call and on into its result.
//!
//! PHI rule: nothing here adds fields on its own; callers log ids only (see the PHI test).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Validate;
use crate::error::CoreError;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Telemetry settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `pretty` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info` or `info,athena_client=debug`. `RUST_LOG` wins when
    /// set.
    #[serde(default = "default_level")]
    pub log_level: String,
    /// OTLP trace export; absent = off.
    pub otlp: Option<OtlpConfig>,
    /// Also log one line per closed span with its fields (debugging, and the PHI test, which
    /// proves that no span attribute carries patient data).
    #[serde(default)]
    pub log_span_events: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Pretty,
            log_level: default_level(),
            otlp: None,
            log_span_events: false,
        }
    }
}

fn default_level() -> String {
    "info".to_string()
}

/// OTLP/gRPC trace export settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// `service.name` resource attribute.
    #[serde(default = "default_service")]
    pub service_name: String,
}

fn default_service() -> String {
    "athena-connect".to_string()
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), CoreError> {
        EnvFilter::try_new(&self.log_level)
            .map_err(|e| CoreError::config("telemetry.log_level", e.to_string()))?;
        if let Some(o) = &self.otlp {
            url::Url::parse(&o.endpoint).map_err(|e| {
                CoreError::config("telemetry.otlp.endpoint", format!("not a URL: {e}"))
            })?;
        }
        Ok(())
    }
}

/// Keeps the exporter alive; flushes pending spans when dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Best effort: a collector that is down must not block shutdown forever.
            let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Installs the global subscriber. Call once, at the top of a binary, inside a Tokio runtime
/// when OTLP is configured.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, CoreError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .map_err(|e| CoreError::config("telemetry.log_level", e.to_string()))?;

    // A tracer provider is installed even without OTLP export: spans then still get W3C ids, so
    // a trace context arriving in Kafka headers continues through the athena call into the
    // result's headers for whoever collects traces downstream. Without an exporter nothing
    // leaves the process.
    let provider = match &config.otlp {
        Some(o) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint_str(&o.endpoint)
                .build()
                .map_err(|e| CoreError::Telemetry(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(o.service_name.clone())
                .build();
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build()
        }
        None => SdkTracerProvider::builder().build(),
    };
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("athena-connect"));
    let provider = Some(provider);

    let span_events = if config.log_span_events {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    // Logs go to stderr so stdout stays free for command output (check, offsets, summary).
    let result = match config.log_format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(true)
                    .with_writer(std::io::stderr)
                    .with_span_events(span_events),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_span_events(span_events),
            )
            .try_init(),
    };
    result.map_err(|e| CoreError::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// Name of the span athena-client opens around each API call (fields `http.method`,
/// `http.route`, `http.status_code`).
pub const ATHENA_REQUEST_SPAN: &str = "athena_request";

trait EndpointExt: Sized {
    fn with_endpoint_str(self, endpoint: &str) -> Self;
}

impl<B: opentelemetry_otlp::WithExportConfig> EndpointExt for B {
    fn with_endpoint_str(self, endpoint: &str) -> Self {
        self.with_endpoint(endpoint)
    }
}

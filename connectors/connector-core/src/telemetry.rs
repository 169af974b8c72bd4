//! Logs and traces: the `tracing` subscriber every binary installs, and the optional
//! OpenTelemetry OTLP trace exporter (off by default).
//!
//! Logs are human-readable (`pretty`) or one JSON object per line (`json`) for log shippers.
//! `pretty` is coloured only when stderr is a terminal and `NO_COLOR` is unset, so a log file
//! or a pipe gets no ANSI escape codes ([`ansi_colour`]).
//! The W3C trace-context propagator is installed globally so the Kafka header helpers can carry
//! a command's trace into the athena call and on into its result.
//!
//! PHI rule: nothing here adds fields on its own; callers log ids only (see the PHI test).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
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
    /// Collector endpoint, e.g. `http://127.0.0.1:4317`, or `https://collector:4317` for TLS
    /// (the system's root certificates plus `ca_file`, when set).
    pub endpoint: String,
    /// `service.name` resource attribute.
    #[serde(default = "default_service")]
    pub service_name: String,
    /// PEM file of a CA that signed the collector's certificate (a private CA); `https://`
    /// endpoints only.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key_file`).
    #[serde(default)]
    pub client_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<std::path::PathBuf>,
}

impl OtlpConfig {
    fn is_https(&self) -> bool {
        self.endpoint
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// The TLS settings of an `https://` endpoint: system roots, the private CA and the
    /// client identity, read from their files now so a missing file names its key.
    fn tls(&self) -> Result<ClientTlsConfig, CoreError> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| CoreError::config(key, format!("cannot read {}: {e}", path.display())))
        };
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read("telemetry.otlp.ca_file", ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.client_cert_file, &self.client_key_file) {
            tls = tls.identity(Identity::from_pem(
                read("telemetry.otlp.client_cert_file", cert)?,
                read("telemetry.otlp.client_key_file", key)?,
            ));
        }
        Ok(tls)
    }
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
            let tls_option = o.ca_file.as_ref().map(|_| "telemetry.otlp.ca_file").or(o
                .client_cert_file
                .as_ref()
                .map(|_| "telemetry.otlp.client_cert_file"));
            if let Some(key) = tls_option
                && !o.is_https()
            {
                return Err(CoreError::config(
                    key,
                    "TLS options need an https:// endpoint",
                ));
            }
            if o.client_cert_file.is_some() != o.client_key_file.is_some() {
                return Err(CoreError::config(
                    "telemetry.otlp.client_key_file",
                    "client_cert_file and client_key_file go together",
                ));
            }
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
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint_str(&o.endpoint);
            if o.is_https() {
                builder = builder.with_tls_config(o.tls()?);
            }
            let exporter = builder
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
        LogFormat::Pretty => {
            use std::io::IsTerminal;
            let ansi = ansi_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            registry
                .with(pretty_layer(std::io::stderr, ansi, span_events))
                .try_init()
        }
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

/// Whether `pretty` logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// a non-empty value (<https://no-color.org>). A file or pipe (`./dev demo`'s `connect.log`, a
/// container runtime's log driver) gets plain text.
pub fn ansi_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The `pretty` log layer writing to `writer`, coloured when `ansi`.
fn pretty_layer<S, W>(
    writer: W,
    ansi: bool,
    span_events: FmtSpan,
) -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    W,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer)
        .with_span_events(span_events)
}

/// Name of the `tracing` span athena-client opens around each API call. It is exported as an
/// OpenTelemetry HTTP client span named `<method> <route template>` (semantic conventions:
/// `http.request.method`, `url.template`, `server.address`, `server.port`,
/// `http.response.status_code`).
pub const ATHENA_REQUEST_SPAN: &str = "athena_request";

// OpenTelemetry semantic conventions for Kafka spans (messaging, development status as of
// semconv 1.3x): the exported name is `<operation> <destination>` (`otel.name`), the kind
// (`otel.kind`) tells producer from consumer. Attribute values are topic names, partitions,
// offsets and counts only: never record keys or payloads (PHI).

/// An INFO span `kafka.<op>` with the attributes every messaging span shares, exported as
/// `$name` with kind `$kind`; more fields after those.
macro_rules! messaging_span {
    ($op:literal, $kind:literal, $name:expr $(, $($field:tt)+)?) => {
        tracing::info_span!(
            concat!("kafka.", $op),
            otel.name = %$name,
            otel.kind = $kind,
            messaging.system = "kafka",
            messaging.operation.type = $op,
            messaging.operation.name = $op,
            $($($field)+)?
        )
    };
}

/// A PRODUCER span `send <topic>` around handing one batch of `count` records to the producer
/// and awaiting its acknowledgements. Its context is what [`crate::headers`] injects into the
/// records' `traceparent` when it is current.
pub fn send_span(topic: &str, count: usize) -> tracing::Span {
    messaging_span!(
        "send",
        "producer",
        format_args!("send {topic}"),
        messaging.destination.name = %topic,
        messaging.batch.message_count = count as i64,
    )
}

/// A PRODUCER span for one batch of records bound for `topics` (one entry per record):
/// `send <topic>` when they share a topic, plain `send` without a destination otherwise (as
/// the conventions ask for a batch with several destinations); no span for an empty batch.
pub fn batch_send_span<'a>(topics: impl IntoIterator<Item = &'a str>) -> tracing::Span {
    let mut topics = topics.into_iter();
    let Some(first) = topics.next() else {
        return tracing::Span::none();
    };
    let (mut count, mut same) = (1usize, true);
    for t in topics {
        count += 1;
        same &= t == first;
    }
    if same {
        return send_span(first, count);
    }
    messaging_span!(
        "send",
        "producer",
        "send",
        messaging.batch.message_count = count as i64,
    )
}

/// A CONSUMER span `process <topic>` for handling one consumed record, at `partition` and
/// `offset`; continue the record's trace with [`crate::headers::continue_trace`].
pub fn process_span(topic: &str, partition: i32, offset: i64) -> tracing::Span {
    messaging_span!(
        "process",
        "consumer",
        format_args!("process {topic}"),
        messaging.destination.name = %topic,
        messaging.destination.partition.id = %partition,
        messaging.kafka.offset = offset,
    )
}

/// A PRODUCER span `create <topic>` for one record built now and sent later (in a transaction
/// with others): the record's own creation context, injected into its `traceparent`.
pub fn create_span(topic: &str) -> tracing::Span {
    messaging_span!(
        "create",
        "producer",
        format_args!("create {topic}"),
        messaging.destination.name = %topic,
    )
}

trait EndpointExt: Sized {
    fn with_endpoint_str(self, endpoint: &str) -> Self;
}

impl<B: opentelemetry_otlp::WithExportConfig> EndpointExt for B {
    fn with_endpoint_str(self, endpoint: &str) -> Self {
        self.with_endpoint(endpoint)
    }
}

#[cfg(test)]
mod colour_tests {
    use super::*;
    use std::ffi::OsStr;
    use std::sync::{Arc, Mutex};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi_colour(true, None));
        assert!(ansi_colour(true, Some(OsStr::new(""))));
        assert!(!ansi_colour(true, Some(OsStr::new("1"))));
        assert!(!ansi_colour(false, None));
        assert!(!ansi_colour(false, Some(OsStr::new("1"))));
    }

    /// One pretty line through the layer `init` installs, written to a buffer.
    fn pretty_line(ansi: bool) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let writer = move || BufWriter(sink.clone());
        let subscriber =
            tracing_subscriber::registry().with(pretty_layer(writer, ansi, FmtSpan::NONE));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(connector = "wb", "Connector failed; restarting it.");
        });
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    struct BufWriter(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for BufWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_file_gets_no_escape_codes() {
        // What `init` chooses when stderr is not a terminal (a file or a pipe).
        let plain = pretty_line(ansi_colour(false, None));
        assert!(plain.contains("Connector failed"), "{plain}");
        assert!(!plain.contains('\x1b'), "escape codes in a file: {plain:?}");
        // The same layer on a terminal colours (so the check above can fail).
        let coloured = pretty_line(ansi_colour(true, None));
        assert!(coloured.contains('\x1b'), "{coloured:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otlp(toml_text: &str) -> TelemetryConfig {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn tls_options_need_https_and_go_in_pairs() {
        let ok = otlp(
            "[otlp]\nendpoint = \"https://collector:4317\"\nca_file = \"/ca.pem\"\n\
             client_cert_file = \"/c.pem\"\nclient_key_file = \"/k.pem\"\n",
        );
        assert!(ok.validate().is_ok());
        let plain = otlp("[otlp]\nendpoint = \"http://collector:4317\"\nca_file = \"/ca.pem\"\n");
        let e = plain.validate().unwrap_err().to_string();
        assert!(e.contains("telemetry.otlp.ca_file"), "{e}");
        let half =
            otlp("[otlp]\nendpoint = \"https://collector:4317\"\nclient_cert_file = \"/c.pem\"\n");
        let e = half.validate().unwrap_err().to_string();
        assert!(e.contains("telemetry.otlp.client_key_file"), "{e}");
    }

    #[test]
    fn a_missing_ca_file_names_its_key() {
        let c = otlp(
            "[otlp]\nendpoint = \"HTTPS://collector:4317\"\nca_file = \"/nonexistent/ca.pem\"\n",
        );
        let o = c.otlp.as_ref().unwrap();
        assert!(o.is_https());
        let e = o.tls().unwrap_err().to_string();
        assert!(e.contains("telemetry.otlp.ca_file"), "{e}");
    }
}

//! `fhir-push-receiver`: the webhook receiver alone, as a process (for deployments that scale the
//! receiver apart from inflation, and for the crash tests). Flags mirror
//! `[sources.fhir_push.<name>]`; the secret comes from the environment, never from a flag.
//!
//! Exit codes: 0 on SIGTERM/Ctrl-C, 1 on a startup error.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use connector_core::kafka::{KafkaConfig, TopicSpec, ensure_topics};

#[derive(Debug, Parser)]
#[command(about = "FHIR push webhook receiver: durable on Kafka before 2xx")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap: String,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    /// Notifications topic.
    #[arg(long, default_value = "athena.push.notifications.v1")]
    topic: String,
    /// Ack budget in milliseconds.
    #[arg(long, default_value_t = 1500)]
    ack_budget_ms: u64,
    /// Body limit in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    body_limit: usize,
    /// Environment variable holding the shared secret.
    #[arg(long, default_value = "FHIR_PUSH_SECRET")]
    secret_env: String,
    /// Create the topic when missing (partitions).
    #[arg(long)]
    create_topic: Option<i32>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = connector_core::telemetry::init(&Default::default());
    let args = Args::parse();
    let secret = std::env::var(&args.secret_env)
        .map_err(|_| anyhow::anyhow!("set {} to the shared secret", args.secret_env))?;
    let secret = connector_core::Secret::new(secret);
    // The same rule as the config files: a short HMAC key makes signatures forgeable.
    secret.validate_shared(&args.secret_env)?;
    let mut kafka = KafkaConfig::plaintext(args.bootstrap.clone());
    // Fail deliveries fast when Kafka is away: the receiver answers 503 anyway, and a message
    // that lingers only turns into a harmless duplicate.
    kafka
        .producer
        .insert("message.timeout.ms".into(), "30000".into());
    if let Some(p) = args.create_topic {
        ensure_topics(&kafka.build_admin()?, 1, &[TopicSpec::new(&args.topic, p)]).await?;
    }
    let producer = kafka.build_producer()?;
    let adapter = Arc::new(fhir_push::adapter::AthenaAdapter::new(secret));
    let gap = Arc::new(fhir_push::gap::GapMonitor::new(
        "receiver",
        Duration::from_secs(600),
    ));
    let mut state = fhir_push::receiver::ReceiverState::new(
        "receiver",
        adapter,
        producer,
        args.topic.clone(),
        Duration::from_millis(args.ack_budget_ms),
        gap,
    );
    // Crash test hook: die right after Kafka acknowledged, before the 200 goes out.
    if std::env::var("FHIR_PUSH_CRASH_AFTER_DURABLE").as_deref() == Ok("1") {
        state = state.with_after_durable(Arc::new(|| {
            eprintln!("crash hook: exiting after a durable notification, before answering");
            std::process::exit(137);
        }));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = fhir_push::receiver::router(state, args.body_limit);
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = fhir_push::tls::server_config(cert, key)?;
            let listener = fhir_push::tls::TlsListener::new(listener, tls)?;
            fhir_push::receiver::serve_tls(listener, app, stop).await?;
        }
        _ => fhir_push::receiver::serve(listener, app, stop).await?,
    }
    Ok(())
}

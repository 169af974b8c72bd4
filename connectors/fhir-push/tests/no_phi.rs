//! No patient data in the push connector's logs, span fields or dead-letter headers.
//!
//! Runs the whole connector against the simulator at TRACE for `fhir_push` and `athena_client`
//! while a patient with distinctive synthetic names is created and pushed, a forged notification
//! carrying those names is refused, and an authentic but unparseable body carrying them is
//! dead-lettered; then proves none of the names or the birth date appear anywhere but in the
//! payloads themselves. The capture is checked to be non-empty so the test cannot pass vacuously.

use std::time::Duration;

use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect_tests::{LogCapture, Stack, unique};
use athena_sim::{NewPatient, RunningSim, SimConfig};
use connector_core::Secret;
use connector_core::runtime::RunEnv;
use fhir_push::signature::sign;
use rdkafka::message::{Headers, Message};
use secrecy::SecretString;
use tracing_subscriber::fmt::format::FmtSpan;

const FIRST: &str = "Zyxpushfirst";
const LAST: &str = "Qwvpushlast";
const SECRET: &str = "test-shared-secret-0123456789";
const PRACTICE: u64 = 195_900;

#[tokio::test]
async fn push_logs_and_dead_letter_headers_carry_no_phi() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "fhir_push=trace,athena_client=trace,connector_core=trace",
        ))
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let stack = Stack::get().await;
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let mut cc = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().unwrap()),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    cc.rate_limit.qps = 200.0;
    cc.rate_limit.token_requests_per_minute = 60;
    // The simulator enforces scopes per route: the proprietary API, the Subscription scopes
    // and a FHIR read per typed resource type.
    use athena_client::scopes;
    cc.scopes = scopes::with_fhir_reads(
        &[
            scopes::MDP,
            scopes::SUBSCRIPTION_READ,
            scopes::SUBSCRIPTION_WRITE,
        ],
        &[athena_contracts::events::FHIR_RESOURCE_TYPES, &["Patient"]].concat(),
    );
    let client = AthenaClient::new(cc).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = fhir_push::Config::new(
        PRACTICE,
        Secret::new(SECRET),
        format!("http://127.0.0.1:{port}/notifications"),
    );
    cfg.listen = format!("127.0.0.1:{port}");
    cfg.notifications_topic = unique("push.notifications");
    cfg.patients_topic = Some(unique("patients"));
    cfg.appointments_topic = Some(unique("appointments"));
    cfg.fhir_resources_topic = Some(unique("fhir"));
    cfg.group_id = Some(unique("inflate"));
    cfg.subscription_topics = vec!["Patient.create".into()];
    for t in [
        cfg.patients_topic(),
        cfg.appointments_topic(),
        cfg.fhir_resources_topic(),
    ] {
        stack.create_topic(&t, 1).await;
    }
    let mut registry = stack.registry();
    registry.auto_register = true;
    let env = RunEnv {
        kafka: stack.kafka(),
        registry,
    };
    let (control, handle) = connector_core::runtime::task("phi", "fhir-push-source");
    let task = {
        let (cfg, env, client) = (cfg.clone(), env.clone(), client.clone());
        tokio::spawn(async move { fhir_push::run("phi", &cfg, &env, &client, control).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.state.push().subscriptions.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no subscription");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut p = NewPatient::new(
        FIRST,
        LAST,
        chrono::NaiveDate::from_ymd_opt(1977, 7, 17).unwrap(),
    );
    p.email = Some("zyx.push@example.invalid".into());
    sim.state.add_patient(PRACTICE, p);
    stack
        .consume(&cfg.patients_topic(), 1, Duration::from_secs(60))
        .await;

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/notifications");
    // A forged notification carrying names: refused.
    let forged = format!("{{\"resourceType\":\"Bundle\",\"note\":\"{FIRST} {LAST}\"}}");
    let r = http
        .post(&url)
        .header("X-Hub-Signature", sign(b"wrong", forged.as_bytes()))
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // An authentic body that is not a notification: durable, then dead-lettered.
    let odd = format!("{{\"resourceType\":\"Patient\",\"name\":[{{\"family\":\"{LAST}\"}}]}}");
    let r = http
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), odd.as_bytes()))
        .body(odd.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let dlq = stack
        .consume(
            &format!("{}.dlq", cfg.notifications_topic),
            1,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        dlq[0].payload().unwrap(),
        odd.as_bytes(),
        "byte-for-byte copy"
    );
    let headers = dlq[0].headers().expect("context headers");
    let mut header_text = String::new();
    for h in headers.iter() {
        header_text.push_str(h.key);
        header_text.push('=');
        header_text.push_str(&String::from_utf8_lossy(h.value.unwrap_or_default()));
        header_text.push('\n');
    }
    assert!(header_text.contains("__connect.errors"), "{header_text}");

    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    sim.shutdown().await;

    let logs = capture.text();
    assert!(
        logs.len() > 500,
        "captured too little to prove anything: {logs}"
    );
    // The birth date in both its forms; the bare year also matches random ports and ids
    // (e.g. 127.0.0.1:41977) and made this test fail by chance.
    for needle in [FIRST, LAST, "1977-07-17", "07/17/1977", "zyx.push"] {
        assert!(!logs.contains(needle), "`{needle}` leaked into logs");
        assert!(
            !header_text.contains(needle),
            "`{needle}` leaked into DLQ headers"
        );
    }
}

//! The receiver over HTTPS: a client trusting the test CA gets the same answers as over HTTP
//! (401 unsigned, 200 signed and durable on the real broker); plain HTTP to the TLS port fails.
//! The fixtures under `tests/fixtures/tls` are a throwaway test CA and a `localhost`/127.0.0.1
//! leaf certificate (never used outside tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use connector_core::Secret;
use fhir_push::adapter::{AthenaAdapter, PushAdapter};
use fhir_push::signature::sign;
use rdkafka::message::Message;

const SECRET: &str = "test-shared-secret-0123456789";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[tokio::test]
async fn receiver_serves_https_with_the_same_rules() {
    let stack = Stack::get().await;
    let topic = unique("push.notifications");
    stack.create_topic(&topic, 1).await;
    let adapter: Arc<dyn PushAdapter> = Arc::new(AthenaAdapter::new(Secret::new(SECRET)));
    let state = fhir_push::receiver::ReceiverState::new(
        "tls",
        adapter,
        stack.kafka().build_producer().unwrap(),
        topic.clone(),
        Duration::from_millis(1500),
        Arc::new(fhir_push::gap::GapMonitor::new(
            "tls",
            Duration::from_secs(60),
        )),
    );
    let tls = fhir_push::tls::server_config(&fixture("cert.pem"), &fixture("key.pem")).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = fhir_push::tls::TlsListener::new(tcp, tls).unwrap();
    let app = fhir_push::receiver::router(state, 64 * 1024);
    tokio::spawn(fhir_push::receiver::serve_tls(
        listener,
        app,
        std::future::pending(),
    ));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}/notifications");
    let body = r#"{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","notificationEvent":[{"id":"tls-1","focus":{"reference":"Patient/a-195900.E-1"}}]}}]}"#;
    let unsigned = https.post(&url).body(body).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let signed = https
        .post(&url)
        .header("X-Hub-Signature", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    let got = stack.consume(&topic, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].payload().unwrap(), body.as_bytes());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/notifications"))
        .timeout(Duration::from_secs(15))
        .body(body)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
    // A client that does not trust the CA fails the handshake.
    let untrusting = reqwest::Client::new().post(&url).body(body).send().await;
    assert!(untrusting.is_err());
}

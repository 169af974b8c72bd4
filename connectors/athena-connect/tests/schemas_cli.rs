//! `athena-connect schemas` as a user runs it: the real binary against the real registry, also
//! behind an authenticating proxy and behind HTTPS with a private CA (a secured registry).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use athena_connect_tests::{Stack, unique};

fn cli(args: &[&str], registry: &str) -> (i32, String) {
    cli_env(args, registry, &[])
}

fn cli_env(args: &[&str], registry: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_athena-connect"));
    cmd.args(args).env("SCHEMA_REGISTRY_URL", registry);
    for v in [
        "SCHEMA_REGISTRY_USERNAME",
        "SCHEMA_REGISTRY_PASSWORD",
        "SCHEMA_REGISTRY_TOKEN",
        "SCHEMA_REGISTRY_CA_FILE",
        "SCHEMA_REGISTRY_CLIENT_CERT_FILE",
        "SCHEMA_REGISTRY_CLIENT_KEY_FILE",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run athena-connect");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn register_check_and_refuse_incompatible() {
    let stack = Stack::get().await;
    let prefix = format!("{}.", unique("cli"));

    let (code, out) = cli(
        &["schemas", "check", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out}");
    // Every top-level bundled schema, and nothing else, is registered.
    let top_level: Vec<_> = connector_core::avro::Catalog::global()
        .iter()
        .filter(|s| s.default_topic.is_some())
        .collect();
    assert!(top_level.len() >= 4);
    for s in &top_level {
        let subject = connector_core::avro::Catalog::global().subject(
            connector_core::avro::SubjectStrategy::TopicName,
            &format!("{prefix}{}", s.default_topic.as_deref().unwrap()),
            &s.name,
        );
        assert!(out.contains(&subject), "{subject} missing from: {out}");
    }
    assert_eq!(out.matches("registered").count(), top_level.len(), "{out}");
    // Idempotent.
    let (code, out2) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 0, "{out2}");

    // Make the registry hold a version our bundled schema cannot be BACKWARD-compatible with:
    // a version with a required field we lack that has no default is fine for BACKWARD (we
    // would just ignore it), so instead register a version whose field type differs.
    let registry = stack.registry_client();
    let subject = format!("{prefix}athena.cmd.results.v1-value"); // the results topic holds one type
    registry.set_compatibility(&subject, "NONE").await.unwrap();
    let foreign = serde_json::json!({
        "type": "record", "name": "CommandResult", "namespace": "com.athenaconnect.commands",
        "fields": [{"name": "command_id", "type": "long"}]
    });
    registry
        .register(&subject, &foreign.to_string())
        .await
        .unwrap();
    registry
        .set_compatibility(&subject, "BACKWARD_TRANSITIVE")
        .await
        .unwrap();
    let (code, out) = cli(
        &["schemas", "check", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("INCOMPATIBLE") && out.contains(&subject),
        "{out}"
    );
    let (code, out) = cli(
        &["schemas", "register", "--topic-prefix", &prefix],
        &stack.registry_url,
    );
    assert_eq!(code, 3, "{out}");
}

#[test]
fn bad_usage_names_the_problem() {
    let (code, out) = cli(
        &["schemas", "register", "--compatibility", "SOMETIMES"],
        "http://127.0.0.1:1/apis/ccompat/v7",
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--compatibility") && out.contains("BACKWARD_TRANSITIVE"),
        "{out}"
    );
}

#[test]
fn list_names_every_schema() {
    let (code, out) = cli(&["schemas", "list"], "http://unused");
    assert_eq!(code, 0, "{out}");
    for name in [
        "PatientChanged",
        "AppointmentChanged",
        "BookAppointment",
        "CommandResult",
        "EventEnvelope",
    ] {
        assert!(out.contains(name), "{out}");
    }
}

/// A reverse proxy in front of the shared registry that answers 401 unless the request carries
/// `authorization` exactly (when given); the app and the count of requests it forwarded.
fn proxy_app(upstream: &str, authorization: Option<String>) -> (axum::Router, Arc<AtomicUsize>) {
    let up = url::Url::parse(upstream).expect("registry URL");
    let origin = up.origin().ascii_serialization();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (origin, client, count, authorization) = (
            origin.clone(),
            client.clone(),
            count.clone(),
            authorization.clone(),
        );
        async move {
            use axum::response::IntoResponse;
            let (parts, body) = req.into_parts();
            let given = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if authorization.is_some() && given != authorization.as_deref() {
                return (
                    http::StatusCode::UNAUTHORIZED,
                    "{\"error_code\":401,\"message\":\"Unauthorized\"}",
                )
                    .into_response();
            }
            count.fetch_add(1, Ordering::SeqCst);
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .expect("request body");
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut rb = client.request(parts.method.clone(), format!("{origin}{path}"));
            for h in ["content-type", "accept"] {
                if let Some(v) = parts.headers.get(h) {
                    rb = rb.header(h, v.clone());
                }
            }
            let resp = rb.body(body).send().await.expect("registry answers");
            let status = resp.status();
            let ct = resp.headers().get("content-type").cloned();
            let bytes = resp.bytes().await.expect("registry body");
            let mut out = (status, bytes).into_response();
            if let Some(ct) = ct {
                out.headers_mut().insert("content-type", ct);
            }
            out
        }
    });
    (app, forwarded)
}

/// [`proxy_app`] on plain HTTP; the registry URL through it and the forwarded count.
async fn auth_proxy(upstream: &str, authorization: String) -> (String, Arc<AtomicUsize>) {
    let (app, forwarded) = proxy_app(upstream, Some(authorization));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let path = url::Url::parse(upstream).unwrap().path().to_string();
    (format!("http://{addr}{path}"), forwarded)
}

/// The throwaway test CA and its `localhost` leaf certificate of the push receiver's TLS test.
fn tls_fixture(name: &str) -> String {
    format!(
        "{}/../fhir-push/tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_an_https_registry_signed_by_a_private_ca() {
    let stack = Stack::get().await;
    let (app, forwarded) = proxy_app(&stack.registry_url, None);
    let tls = fhir_push::tls::server_config(
        std::path::Path::new(&tls_fixture("cert.pem")),
        std::path::Path::new(&tls_fixture("key.pem")),
    )
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = fhir_push::tls::TlsListener::new(tcp, tls).unwrap();
    tokio::spawn(fhir_push::receiver::serve_tls(
        listener,
        app,
        std::future::pending(),
    ));
    let path = url::Url::parse(&stack.registry_url)
        .unwrap()
        .path()
        .to_string();
    let url = format!("https://localhost:{port}{path}");
    let prefix = format!("{}.", unique("tls"));
    let check = ["schemas", "check", "--topic-prefix", &prefix];

    // The private CA is not among the system's roots: the handshake fails.
    let (code, out) = cli_env(&check, &url, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(forwarded.load(Ordering::SeqCst), 0);
    // With ca_file it verifies and answers.
    let ca = tls_fixture("ca.pem");
    let (code, out) = cli_env(&check, &url, &[("SCHEMA_REGISTRY_CA_FILE", &ca)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("compatible"), "{out}");
    assert!(forwarded.load(Ordering::SeqCst) > 0);
    // A client certificate and key load and are offered (this server does not ask for one, so
    // this shows the files are accepted, not that a server verified them).
    let (code, out) = cli_env(
        &check,
        &url,
        &[
            ("SCHEMA_REGISTRY_CA_FILE", &ca),
            ("SCHEMA_REGISTRY_CLIENT_CERT_FILE", &tls_fixture("cert.pem")),
            ("SCHEMA_REGISTRY_CLIENT_KEY_FILE", &tls_fixture("key.pem")),
        ],
    );
    assert_eq!(code, 0, "{out}");
    // A key that does not belong to a PEM pair is a usage error naming the key.
    let (code, out) = cli_env(
        &check,
        &url,
        &[
            ("SCHEMA_REGISTRY_CA_FILE", &ca),
            ("SCHEMA_REGISTRY_CLIENT_CERT_FILE", &tls_fixture("cert.pem")),
            ("SCHEMA_REGISTRY_CLIENT_KEY_FILE", &ca),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("schema_registry.client_key_file"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_behind_basic_auth_and_check_with_a_token() {
    let stack = Stack::get().await;
    const USER: &str = "svc-schemas";
    const PASSWORD: &str = "registry-pw-7c1e55aa90";
    // The header a correct client sends, as reqwest itself builds it.
    let expected = reqwest::Client::new()
        .get("http://x")
        .basic_auth(USER, Some(PASSWORD))
        .build()
        .unwrap()
        .headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let (url, forwarded) = auth_proxy(&stack.registry_url, expected).await;
    let prefix = format!("{}.", unique("auth"));
    let args = ["schemas", "register", "--topic-prefix", &prefix];

    // Without credentials: refused, saying how to pass them.
    let (code, out) = cli_env(&args, &url, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 401") && out.contains("SCHEMA_REGISTRY_USERNAME"),
        "{out}"
    );
    // A wrong password: refused, and never printed.
    let (code, out) = cli_env(
        &args,
        &url,
        &[
            ("SCHEMA_REGISTRY_USERNAME", USER),
            ("SCHEMA_REGISTRY_PASSWORD", "wrong-pw-0000000000"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 401") && !out.contains("wrong-pw"),
        "{out}"
    );
    assert_eq!(forwarded.load(Ordering::SeqCst), 0);

    // The right credentials: every schema is registered through the proxy.
    let (code, out) = cli_env(
        &args,
        &url,
        &[
            ("SCHEMA_REGISTRY_USERNAME", USER),
            ("SCHEMA_REGISTRY_PASSWORD", PASSWORD),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("registered") && !out.contains(PASSWORD),
        "{out}"
    );
    assert!(forwarded.load(Ordering::SeqCst) > 0);
    // Looked up by subject: the registry's subject list is capped (Apicurio answers at most
    // 1,000), so a shared registry's list need not include this run's subjects.
    let results = connector_core::avro::Catalog::global()
        .get("com.athenaconnect.commands.CommandResult")
        .unwrap();
    let subject = format!("{prefix}athena.cmd.results.v1-value");
    assert!(
        stack
            .registry_client()
            .lookup(&subject, &results.json)
            .await
            .unwrap()
            .is_some(),
        "nothing registered under {subject}"
    );

    // A bearer token instead: `schemas check` through a proxy that wants exactly that token.
    const TOKEN: &str = "registry-token-3b9d0c6e21";
    let (token_url, forwarded) = auth_proxy(&stack.registry_url, format!("Bearer {TOKEN}")).await;
    let check = ["schemas", "check", "--topic-prefix", &prefix];
    let (code, out) = cli_env(&check, &token_url, &[]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = cli_env(&check, &token_url, &[("SCHEMA_REGISTRY_TOKEN", TOKEN)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("compatible") && !out.contains(TOKEN), "{out}");
    assert!(forwarded.load(Ordering::SeqCst) > 0);

    // The runtime's codec authenticates the same way ([schema_registry] username/password).
    let mut registry = connector_core::avro::RegistryConfig::new(url.clone());
    let topic = format!("{prefix}athena.cmd.results.v1");
    let codec = connector_core::avro::AvroCodec::new(registry.clone()).unwrap();
    let Err(refused) = codec
        .encoder::<athena_contracts::CommandResult>(&topic)
        .await
    else {
        panic!("the registry behind the proxy answered without credentials");
    };
    assert!(refused.to_string().contains("HTTP 401"), "{refused}");
    registry.username = Some(USER.into());
    registry.password = Some(connector_core::secret::Secret::new(PASSWORD));
    let codec = connector_core::avro::AvroCodec::new(registry).unwrap();
    codec
        .encoder::<athena_contracts::CommandResult>(&topic)
        .await
        .expect("the registered schema is found through the proxy");
}

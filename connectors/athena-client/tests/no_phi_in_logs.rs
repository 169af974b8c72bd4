//! No patient data in the client's logs, span fields or error messages.
//!
//! Captures everything `athena_client` emits at TRACE (events and span fields) while it creates, matches,
//! reads and fails to write synthetic patients with distinctive names, and proves none of those names or the
//! birth date appear. The capture is checked to be non-empty so the test cannot pass vacuously.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use athena_client::api::patients::PatientFields;
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_sim::{Fault, FaultRule, NewPatient, RunningSim, SimConfig};
use chrono::NaiveDate;
use secrecy::SecretString;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const FIRST: &str = "Zyxwfirst";
const LAST: &str = "Qwvlast";

#[tokio::test]
async fn client_logs_and_errors_carry_no_phi() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("athena_client=trace"))
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let mut cfg = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().unwrap()),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    cfg.retry.base = Duration::from_millis(10);
    cfg.retry.cap = Duration::from_millis(50);
    cfg.rate_limit.qps = 200.0;
    cfg.rate_limit.token_requests_per_minute = 60;
    let client = AthenaClient::new(cfg).unwrap();
    let practice = client.practice(195_900);

    let seeded = sim.state.add_patient(
        195_900,
        NewPatient {
            firstname: FIRST.into(),
            lastname: LAST.into(),
            dob: NaiveDate::from_ymd_opt(1977, 7, 17).unwrap(),
            email: Some("zyxw@example.invalid".into()),
            ..NewPatient::default()
        },
    );
    let fields = PatientFields {
        firstname: Some(FIRST.into()),
        lastname: Some(LAST.into()),
        dob: NaiveDate::from_ymd_opt(1977, 7, 17),
        departmentid: Some("1".into()),
        email: Some("zyxw@example.invalid".into()),
        ..PatientFields::default()
    };

    // Reads (with a retried 500), a match query carrying demographics in the URL, a create that matches,
    // an ambiguous write, and a validation failure.
    sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 500,
                retry_after: None,
                body: None,
            },
            1,
        )
        .method("GET"),
    );
    let p = practice.get_patient(&seeded).await.unwrap();
    assert!(
        p.raw.to_string().contains(FIRST),
        "the raw record itself is available to the caller"
    );
    let _ = practice.best_match(&fields).await;
    let id = practice.create_patient(&fields).await.unwrap();
    assert_eq!(id, seeded);
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 1)
            .method("POST")
            .path("/patients"),
    );
    let mut errors = vec![
        practice
            .create_patient(&fields)
            .await
            .unwrap_err()
            .to_string(),
    ];
    let bad = PatientFields {
        firstname: Some(FIRST.into()),
        lastname: Some(LAST.into()),
        ..PatientFields::default()
    };
    errors.push(practice.create_patient(&bad).await.unwrap_err().to_string());
    sim.shutdown().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("athena_request"), "capture works: {logs}");
    assert!(
        logs.contains("/v1/{practiceid}/patients/{patientid}"),
        "route templates are logged"
    );
    for needle in [FIRST, LAST, "1977", "zyxw@"] {
        assert!(!logs.contains(needle), "logs contain {needle}:\n{logs}");
        for e in &errors {
            assert!(!e.contains(needle), "error contains {needle}: {e}");
        }
    }
}

//! The client against the in-process simulator (`athena_sim::RunningSim`), with scripted faults.
//!
//! Every test starts its own simulator on `127.0.0.1:0`, so each has its own base URL and therefore its
//! own process-wide rate limiter. Assertions count what the *simulator* saw, not what the client believes.

use std::time::{Duration, Instant};

use athena_client::api::appointments::BookAppointment;
use athena_client::api::bulk::{ExportPolling, ExportRequest};
use athena_client::api::changed::{Feed, PollParams, Subscribe};
use athena_client::api::patients::PatientFields;
use athena_client::{
    AthenaClient, ClientConfig, Environment, Error, ErrorClass, PracticeClient, PracticeId,
};
use athena_sim::{Fault, FaultRule, NewPatient, RunningSim, SimConfig};
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use secrecy::SecretString;

const PRACTICE: u64 = 195_900;
const PING: &str = "/v1/{practiceid}/ping";
const BOOK: &str = "/v1/{practiceid}/appointments/{appointmentid}";

fn config(base_url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        Environment::Custom(base_url.parse().expect("sim url")),
        "sim-client",
        SecretString::from("sim-secret"),
    );
    c.request_timeout = Duration::from_secs(5);
    c.retry.base = Duration::from_millis(20);
    c.retry.cap = Duration::from_millis(200);
    c.rate_limit.qps = 200.0;
    c.rate_limit.burst = 50;
    c.rate_limit.token_requests_per_minute = 60;
    // The simulator enforces scopes per route: the proprietary API plus the FHIR types these
    // tests read, search and export.
    c.scopes = athena_client::scopes::with_fhir_reads(
        &[athena_client::scopes::MDP],
        &["Patient", "Observation", "Condition"],
    );
    c
}

async fn start(sim_config: SimConfig) -> (RunningSim, AthenaClient, PracticeClient) {
    let sim = RunningSim::start(sim_config)
        .await
        .expect("simulator starts");
    let client = AthenaClient::new(config(&sim.base_url)).expect("client builds");
    let practice = client.practice(PRACTICE);
    (sim, client, practice)
}

fn status_fault(code: u16, retry_after: Option<u64>, body: Option<&str>, times: u32) -> FaultRule {
    FaultRule::new(
        Fault::Status {
            code,
            retry_after,
            body: body.map(str::to_owned),
        },
        times,
    )
}

fn slot_date() -> NaiveDate {
    Utc::now().date_naive() + chrono::Duration::days(3)
}

#[tokio::test]
async fn five_hundreds_then_success_after_two_retries() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    sim.state
        .inject(status_fault(500, None, None, 2).method("GET").path("/ping"));
    practice.ping().await.expect("third attempt succeeds");
    assert_eq!(sim.state.request_count("GET", PING), 3);
    let stats = client.stats();
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.attempts(PING), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_are_bounded() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    sim.state.inject(
        status_fault(503, None, None, 10)
            .method("GET")
            .path("/ping"),
    );
    let err = practice.ping().await.expect_err("gives up");
    assert_eq!(err.class(), ErrorClass::Retriable);
    assert_eq!(sim.state.request_count("GET", PING), 5, "max_attempts = 5");
    sim.shutdown().await;
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    sim.state.inject(
        status_fault(429, Some(1), None, 1)
            .method("GET")
            .path("/ping"),
    );
    let started = Instant::now();
    practice.ping().await.expect("succeeds after waiting");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited at least 1 s, got {:?}",
        started.elapsed()
    );
    assert_eq!(sim.state.request_count("GET", PING), 2);
    assert_eq!(client.stats().throttled, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttling_403_is_rate_limited_then_success() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    sim.state.inject(
        status_fault(403, None, Some("<h1>Developer Over Qps</h1>"), 1)
            .method("GET")
            .path("/ping"),
    );
    practice.ping().await.expect("succeeds after the throttle");
    assert_eq!(sim.state.request_count("GET", PING), 2);
    assert_eq!(client.stats().throttled, 1);
    sim.shutdown().await;
}

/// What a [`athena_client::RequestObserver`] was told, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl athena_client::RequestObserver for Recorder {
    fn observe(&self, event: athena_client::ClientEvent<'_>) {
        let line = match event {
            athena_client::ClientEvent::Request {
                method,
                route,
                status_class,
                ..
            } => format!("{method} {route} {status_class}"),
            athena_client::ClientEvent::Throttled => "throttled".to_string(),
            athena_client::ClientEvent::QuotaRemaining(_) => "quota".to_string(),
        };
        self.0.lock().unwrap().push(line);
    }
}

#[tokio::test]
async fn the_observer_sees_every_attempt_throttle_and_quota_header() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    let recorder = std::sync::Arc::new(Recorder::default());
    assert!(client.set_observer(recorder.clone()));
    assert!(
        !client.set_observer(std::sync::Arc::new(Recorder::default())),
        "the first observer stays"
    );
    sim.state.inject(
        status_fault(429, Some(1), None, 1)
            .method("GET")
            .path("/ping"),
    );
    practice.ping().await.expect("succeeds after the throttle");
    let seen = recorder.0.lock().unwrap().clone();
    let requests: Vec<_> = seen.iter().filter(|l| l.starts_with("GET")).collect();
    assert_eq!(
        requests,
        [&format!("GET {PING} 4xx"), &format!("GET {PING} 2xx")],
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|l| *l == "throttled").count(),
        client.stats().throttled as usize,
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "quota"), "{seen:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn simulator_qps_throttle_is_absorbed() {
    // The simulator allows 5 req/s and answers 403 Mashery-style beyond; the client is set too fast on
    // purpose and must still complete every call by backing off the shared limiter.
    let sim_cfg = SimConfig {
        qps_limit: Some(5),
        throttle_retry_after: Some(1),
        ..SimConfig::default()
    };
    let (sim, client, practice) = start(sim_cfg).await;
    let calls = (0..12).map(|_| practice.ping());
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        client.stats().throttled >= 1,
        "the simulator should have throttled at least once"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn revoked_token_is_refreshed_exactly_once() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    practice.ping().await.unwrap();
    assert_eq!(sim.state.token_requests(), 1);
    sim.state.revoke_tokens();
    practice.ping().await.expect("401 -> refresh -> retry");
    assert_eq!(sim.state.token_requests(), 2, "exactly one new token");
    assert_eq!(sim.state.request_count("GET", PING), 3);
    assert_eq!(client.stats().auth_refreshes, 1);
    // Concurrent calls after another revocation still share one refresh.
    sim.state.revoke_tokens();
    let results = futures::future::join_all((0..5).map(|_| practice.ping())).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(sim.state.token_requests(), 3, "single in-flight refresh");
    sim.shutdown().await;
}

#[tokio::test]
async fn expiring_token_is_refreshed_ahead_of_expiry() {
    let sim_cfg = SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let (sim, client, practice) = start(sim_cfg).await;
    practice.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await; // past ttl/2, the effective refresh margin
    practice.ping().await.unwrap();
    assert_eq!(sim.state.token_requests(), 2);
    assert_eq!(
        client.stats().auth_refreshes,
        0,
        "refreshed before athena rejected it"
    );
    assert_eq!(sim.state.request_count("GET", PING), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_are_fatal() {
    let sim = RunningSim::start(SimConfig::default()).await.unwrap();
    let mut cfg = config(&sim.base_url);
    cfg.client_secret = SecretString::from("wrong");
    let client = AthenaClient::new(cfg).unwrap();
    let err = client
        .practice(PRACTICE)
        .ping()
        .await
        .expect_err("rejected");
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(!err.to_string().contains("wrong"));
    sim.shutdown().await;
}

#[tokio::test]
async fn business_403_is_not_retried() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    let err = practice
        .poll_changed(Feed::Appointments, &PollParams::default())
        .await
        .expect_err("no subscription");
    assert!(
        matches!(err, Error::Business { status: 403, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("Changed messages require setup"));
    assert_eq!(
        sim.state
            .request_count("GET", "/v1/{practiceid}/appointments/changed"),
        1
    );
    sim.shutdown().await;
}

async fn seed_slot(sim: &RunningSim) -> (String, String, String) {
    let slot = sim
        .state
        .add_open_slots(PRACTICE, "1", "71", slot_date(), &["10:00"])
        .remove(0);
    let a = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            email: Some("a@example.invalid".into()),
            ..NewPatient::default()
        },
    );
    let b = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            firstname: "Testb".into(),
            email: Some("b@example.invalid".into()),
            ..NewPatient::default()
        },
    );
    (slot, a, b)
}

fn book(patient: &str) -> BookAppointment {
    BookAppointment {
        patient_id: patient.into(),
        appointment_type_id: Some("82".into()),
        ..BookAppointment::default()
    }
}

#[tokio::test]
async fn booking_a_taken_slot_is_slot_taken() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    let (slot, a, b) = seed_slot(&sim).await;
    let booked = practice
        .book_appointment(&slot, &book(&a))
        .await
        .expect("first booking");
    assert_eq!(booked.patientid.as_deref(), Some(a.as_str()));
    assert_eq!(booked.appointmentstatus.as_deref(), Some("f"));
    let err = practice
        .book_appointment(&slot, &book(&b))
        .await
        .expect_err("slot taken");
    assert!(matches!(err, Error::SlotTaken { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        sim.state.request_count("PUT", BOOK),
        2,
        "no retry of the 409"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_booking_answer_is_ambiguous_and_not_retried() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    let (slot, a, _) = seed_slot(&sim).await;
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 1)
            .method("PUT")
            .path("/appointments/"),
    );
    let err = practice
        .book_appointment(&slot, &book(&a))
        .await
        .expect_err("outcome unknown");
    assert!(matches!(err, Error::Ambiguous { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert_eq!(sim.state.request_count("PUT", BOOK), 1, "never retried");
    let bookings = sim
        .state
        .ledger()
        .into_iter()
        .filter(|e| e.operation == "BookAppointment")
        .count();
    assert_eq!(bookings, 1, "exactly one booking applied");
    assert_eq!(client.stats().ambiguous, 1);
    // Reconciliation path: read back and find our patient on the slot.
    let appt = practice.get_appointment(&slot).await.unwrap();
    assert_eq!(appt.patientid.as_deref(), Some(a.as_str()));
    sim.shutdown().await;
}

#[tokio::test]
async fn server_error_on_a_write_is_ambiguous_but_connection_drop_on_read_is_retried() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    let (slot, a, _) = seed_slot(&sim).await;
    sim.state.inject(
        status_fault(502, None, None, 1)
            .method("PUT")
            .path("/appointments/"),
    );
    let err = practice
        .book_appointment(&slot, &book(&a))
        .await
        .expect_err("502 on a write");
    assert_eq!(err.class(), ErrorClass::Ambiguous);
    assert_eq!(sim.state.request_count("PUT", BOOK), 1);

    sim.state.inject(
        FaultRule::new(Fault::DropConnection, 1)
            .method("GET")
            .path("/appointments/"),
    );
    let appt = practice
        .get_appointment(&slot)
        .await
        .expect("GET retried after a dropped connection");
    assert_eq!(appt.appointmentid, slot);
    assert_eq!(sim.state.request_count("GET", BOOK), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn destructive_read_then_replay_window() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    practice
        .subscribe(Feed::Appointments, &Subscribe::default())
        .await
        .expect("subscribe");
    let status = practice
        .changed_subscription(Feed::Appointments)
        .await
        .unwrap();
    assert_eq!(status.status, "ACTIVE");
    let before = Utc::now() - chrono::Duration::seconds(2);
    let slots = sim.state.add_open_slots(
        PRACTICE,
        "21",
        "72",
        slot_date(),
        &["09:00", "09:15", "09:30"],
    );

    let first = practice
        .poll_changed(Feed::Appointments, &PollParams::default())
        .await
        .unwrap();
    let mut got: Vec<String> = first.ids().into_iter().flatten().collect();
    got.sort();
    let mut want = slots.clone();
    want.sort();
    assert_eq!(got, want, "the first poll returns the new slots");

    let second = practice
        .poll_changed(Feed::Appointments, &PollParams::default())
        .await
        .unwrap();
    assert!(
        second.items.is_empty(),
        "processed records are not returned again"
    );

    let replay = PollParams {
        replay: Some((before, Utc::now() + chrono::Duration::seconds(2))),
        ..PollParams::default()
    };
    let again = practice
        .poll_changed(Feed::Appointments, &replay)
        .await
        .unwrap();
    let mut replayed: Vec<String> = again.ids().into_iter().flatten().collect();
    replayed.sort();
    assert_eq!(replayed, want, "the replay window returns them");
    sim.shutdown().await;
}

#[tokio::test]
async fn pager_drains_without_offset_and_loses_nothing() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    practice
        .subscribe(Feed::Appointments, &Subscribe::default())
        .await
        .unwrap();
    let times = [
        "08:00", "08:15", "08:30", "08:45", "09:00", "09:15", "09:30",
    ];
    let slots = sim
        .state
        .add_open_slots(PRACTICE, "1", "73", slot_date(), &times);
    let mut pager = practice.changed_pager(Feed::Appointments, PollParams::default(), 3);
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        sizes.push(page.items.len());
        seen.extend(page.ids().into_iter().flatten());
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    seen.sort();
    let mut want = slots;
    want.sort();
    assert_eq!(seen, want);
    sim.shutdown().await;
}

#[tokio::test]
async fn patients_create_and_read_back() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    let fields = PatientFields {
        firstname: Some("Simfirst".into()),
        lastname: Some("Simlast".into()),
        dob: NaiveDate::from_ymd_opt(1990, 2, 3),
        departmentid: Some("1".into()),
        email: Some("simfirst@example.invalid".into()),
        ..PatientFields::default()
    };
    let id = practice.create_patient(&fields).await.expect("created");
    let again = practice.create_patient(&fields).await.expect("matched");
    assert_eq!(
        id, again,
        "athena's match-then-create returns the existing patient"
    );
    let p = practice.get_patient(&id).await.unwrap();
    assert_eq!(p.patientid, id);
    assert!(p.raw.get("firstname").is_some(), "raw record kept");

    let err = practice
        .create_patient(&PatientFields {
            firstname: Some("Onlyfirst".into()),
            ..PatientFields::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    assert!(
        !err.to_string().contains("Onlyfirst"),
        "error must not echo request fields: {err}"
    );
    assert!(
        !format!("{fields:?}").contains("Simfirst"),
        "Debug must not print demographics"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn quota_headers_and_stats_use_route_templates() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    practice.ping().await.unwrap();
    let q = client.quota();
    assert_eq!(q.limit, Some(50_000));
    assert!(q.remaining.is_some_and(|r| r < 50_000));
    assert!(q.observed_at.is_some());
    let stats = client.stats();
    assert!(
        stats
            .requests
            .keys()
            .all(|k| !k.route.contains(&PRACTICE.to_string())),
        "{stats:?}"
    );
    assert_eq!(stats.token_requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn fhir_read_and_bulk_export() {
    let sim_cfg = SimConfig {
        export_polls: 1,
        export_retry_after: 1,
        ..SimConfig::default()
    };
    let (sim, client, _practice) = start(sim_cfg).await;
    let pid = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            email: Some("f@example.invalid".into()),
            ..NewPatient::default()
        },
    );
    let fhir_id = athena_client::api::fhir::ids::patient(PracticeId(PRACTICE), &pid);
    let patient = client
        .fhir_read(&athena_client::model::FhirRef::new("Patient", &fhir_id).expect("valid ref"))
        .await
        .expect("FHIR read");
    assert_eq!(patient["resourceType"], "Patient");
    let bundle = client
        .fhir_search(PracticeId(PRACTICE), "Patient", &[("_id", &fhir_id)])
        .await
        .expect("FHIR search");
    let found = bundle.resources();
    assert_eq!(found.len(), 1, "{:?}", bundle.raw);
    assert_eq!(found[0]["id"], fhir_id.as_str());

    // Patient search pages like the clinical searches: `_count` per page, `next` links that
    // fhir_search_all follows, every match once.
    let mut added = Vec::new();
    for first in ["Pagea", "Pageb", "Pagec"] {
        let id = sim.state.add_patient(
            PRACTICE,
            NewPatient {
                firstname: first.into(),
                lastname: "Pagingtest".into(),
                ..NewPatient::default()
            },
        );
        added.push(athena_client::api::fhir::ids::patient(
            PracticeId(PRACTICE),
            &id,
        ));
    }
    let pages = client
        .fhir_search_all(
            PracticeId(PRACTICE),
            "Patient",
            &[
                ("family", "pagingtest"),
                ("birthdate", "1980-01-01"),
                ("_count", "2"),
            ],
            10,
        )
        .await
        .expect("paged FHIR patient search");
    assert_eq!(pages.len(), 2, "3 matches at 2 a page");
    assert_eq!(pages[0].total(), Some(3));
    assert!(pages[1].next_link().is_none(), "last page has no next link");
    let mut ids: Vec<String> = pages
        .iter()
        .flat_map(|b| b.resources().into_iter())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    added.sort();
    assert_eq!(ids, added);
    // Without `_count` the default page holds all three.
    let one = client
        .fhir_search(
            PracticeId(PRACTICE),
            "Patient",
            &[("family", "Pagingtest"), ("given", "pageb")],
        )
        .await
        .expect("FHIR search");
    assert_eq!(one.resources().len(), 1);
    assert!(one.next_link().is_none());

    let job = client
        .bulk_export_kickoff(
            PracticeId(PRACTICE),
            &ExportRequest {
                types: vec!["Patient".into()],
                since: None,
            },
        )
        .await
        .expect("kick-off");
    let polling = ExportPolling {
        min_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(2),
        timeout: Duration::from_secs(30),
    };
    let manifest = client
        .bulk_export_wait(&job, &polling)
        .await
        .expect("manifest");
    assert!(!manifest.output.is_empty());
    let file = &manifest.output[0];
    let mut stream = client
        .bulk_download(PracticeId(PRACTICE), file, manifest.requires_access_token)
        .await
        .unwrap();
    let mut n = 0;
    while let Some(item) = stream.next().await {
        let v = item.expect("valid NDJSON line");
        assert_eq!(v["resourceType"], "Patient");
        n += 1;
    }
    assert!(n >= 1);
    if let Some(count) = file.count {
        assert_eq!(n as u64, count);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn exhausted_daily_quota_fails_fast_and_is_reported() {
    let (sim, client, practice) = start(SimConfig::default()).await;
    practice.ping().await.unwrap();
    sim.state.inject(
        FaultRule::new(Fault::ExhaustQuota, 1)
            .method("GET")
            .path("/ping"),
    );
    let started = Instant::now();
    let err = practice.ping().await.expect_err("quota out");
    assert!(matches!(err, Error::QuotaExhausted { .. }), "{err:?}");
    match err.class() {
        ErrorClass::RateLimited {
            retry_after: Some(d),
        } => assert!(d > Duration::from_secs(60), "{d:?}"),
        other => panic!("unexpected class {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not block until midnight"
    );
    assert_eq!(
        sim.state.request_count("GET", PING),
        2,
        "the paused key sends nothing more"
    );
    assert!(client.quota().paused_until.is_some());
    assert_eq!(client.quota().remaining, Some(0));
    sim.shutdown().await;
}

#[tokio::test]
async fn lost_poll_answer_is_ambiguous_and_replay_recovers_it() {
    let (sim, _client, practice) = start(SimConfig::default()).await;
    practice
        .subscribe(Feed::Appointments, &Subscribe::default())
        .await
        .unwrap();
    let checkpoint = Utc::now() - chrono::Duration::seconds(2);
    let slots = sim
        .state
        .add_open_slots(PRACTICE, "150", "74", slot_date(), &["11:00", "11:15"]);
    // athena marks the page processed, then the answer is lost.
    sim.state.inject(
        FaultRule::new(Fault::ApplyThenDrop, 1)
            .method("GET")
            .path("/appointments/changed"),
    );
    let err = practice
        .poll_changed(Feed::Appointments, &PollParams::default())
        .await
        .expect_err("lost answer");
    assert_eq!(err.class(), ErrorClass::Ambiguous, "{err:?}");
    assert_eq!(
        sim.state
            .request_count("GET", "/v1/{practiceid}/appointments/changed"),
        1,
        "not retried"
    );
    let next = practice
        .poll_changed(Feed::Appointments, &PollParams::default())
        .await
        .unwrap();
    assert!(
        next.items.is_empty(),
        "the lost page is gone from the unprocessed set"
    );
    let replay = PollParams {
        replay: Some((checkpoint, Utc::now() + chrono::Duration::seconds(2))),
        ..PollParams::default()
    };
    let mut got: Vec<String> = practice
        .poll_changed(Feed::Appointments, &replay)
        .await
        .unwrap()
        .ids()
        .into_iter()
        .flatten()
        .collect();
    got.sort();
    let mut want = slots;
    want.sort();
    assert_eq!(got, want, "the replay window recovers the lost page");
    sim.shutdown().await;
}

#[tokio::test]
async fn write_workflow_checkin_claim_payment_document_insurance() {
    use athena_client::api::appointments::{CancelAppointment, RescheduleAppointment};
    use athena_client::api::claims::{AppointmentClaim, ClaimCharge, ClaimQuery};
    use athena_client::api::documents::ClinicalDocument;
    use athena_client::api::insurances::InsuranceFields;
    use athena_client::api::payments::RecordPayment;

    let (sim, _client, practice) = start(SimConfig::default()).await;
    let slots = sim.state.add_open_slots(
        PRACTICE,
        "1",
        "71",
        slot_date(),
        &["13:00", "13:15", "13:30"],
    );
    let patient = sim.state.add_patient(
        PRACTICE,
        NewPatient {
            email: Some("w@example.invalid".into()),
            ..NewPatient::default()
        },
    );

    // Book, check in, claim.
    practice
        .book_appointment(&slots[0], &book(&patient))
        .await
        .unwrap();
    practice.start_checkin(&slots[0]).await.unwrap();
    practice.checkin(&slots[0]).await.unwrap();
    assert_eq!(
        practice
            .get_appointment(&slots[0])
            .await
            .unwrap()
            .appointmentstatus
            .as_deref(),
        Some("2")
    );
    let charges = vec![ClaimCharge {
        procedurecode: "99213".into(),
        units: Some("1".into()),
        icd10code1: "Z0000".into(),
        ..ClaimCharge::default()
    }];
    let claim = practice
        .create_appointment_claim(
            &slots[0],
            &AppointmentClaim {
                charges: charges.clone(),
                supervising_provider_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(claim.claimids.len(), 1);
    let again = practice
        .create_appointment_claim(
            &slots[0],
            &AppointmentClaim {
                charges,
                supervising_provider_id: None,
            },
        )
        .await
        .expect_err("one claim per appointment");
    assert_eq!(again.class(), ErrorClass::Permanent, "{again:?}");
    let listed = practice
        .list_claims(
            &ClaimQuery {
                patient_id: Some(patient.clone()),
                ..ClaimQuery::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(listed.iter().any(|c| c.claimid == claim.claimids[0]));
    assert_eq!(
        practice
            .get_claim(&claim.claimids[0])
            .await
            .unwrap()
            .claimid,
        claim.claimids[0]
    );

    // Payment, document, insurance.
    let paid = practice
        .record_payment(
            &patient,
            &RecordPayment {
                department_id: "1".into(),
                payment_method: "CASH".into(),
                other_amount: Some("10.00".into()),
                ..RecordPayment::default()
            },
        )
        .await
        .unwrap();
    assert!(paid.paymentbatchid.is_some());
    let doc = practice
        .upload_clinical_document(
            &patient,
            &ClinicalDocument {
                department_id: "1".into(),
                document_subclass: "CLINICALDOCUMENT".into(),
                attachment: Some(b"%PDF-1.4 synthetic".to_vec()),
                attachment_type: Some("PDF".into()),
                original_filename: Some("synthetic-note".into()),
                autoclose: true,
                ..ClinicalDocument::default()
            },
        )
        .await
        .unwrap();
    assert!(!doc.clinicaldocumentid.is_empty());
    practice
        .create_insurance(
            &patient,
            &InsuranceFields {
                insurance_package_id: Some("0".into()),
                sequence_number: Some(1),
                ..InsuranceFields::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(practice.insurances(&patient).await.unwrap().len(), 1);

    // Reschedule then cancel.
    practice
        .book_appointment(&slots[1], &book(&patient))
        .await
        .unwrap();
    let moved = practice
        .reschedule_appointment(
            &slots[1],
            &RescheduleAppointment {
                new_appointment_id: slots[2].clone(),
                patient_id: patient.clone(),
                ..RescheduleAppointment::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.appointmentid, slots[2]);
    practice
        .cancel_appointment(
            &slots[2],
            &CancelAppointment {
                patient_id: patient.clone(),
                ..CancelAppointment::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        practice
            .get_appointment(&slots[2])
            .await
            .unwrap()
            .appointmentstatus
            .as_deref(),
        Some("x")
    );
    let reasons = practice.cancel_reasons().await.unwrap();
    assert!(!reasons.is_empty());

    let ops: Vec<String> = sim
        .state
        .ledger()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    for op in ["BookAppointment", "CreateAppointmentClaim", "RecordPayment"] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {ops:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn patient_scoped_fhir_search_follows_next_links_and_windows() {
    let (sim, client, _practice) = start(SimConfig::default()).await;
    let patient = 60_178u64;
    let want = |ty: &str| {
        sim.state
            .with_practice(PRACTICE, |p| {
                athena_sim::api::fhir::resources(p, ty, Some(patient)).len()
            })
            .unwrap()
    };
    let n = want("Observation");
    assert!(n >= 2, "the simulator seeds several observations: {n}");
    let all = client
        .fhir_search_patient(
            PracticeId(PRACTICE),
            "Observation",
            &patient.to_string(),
            None,
            1,
        )
        .await
        .expect("paged search");
    assert_eq!(all.len(), n, "one resource per page, every page followed");
    let ids: std::collections::BTreeSet<&str> =
        all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), n, "no resource twice");
    assert_eq!(
        sim.state.request_count("GET", "/fhir/r4/Observation"),
        n as u64,
        "one request per page"
    );
    // A window after the seed holds only what changed since.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = Utc::now();
    let mut changed = all[0].clone();
    changed["status"] = serde_json::json!("amended");
    sim.state.put_clinical(PRACTICE, changed.clone()).unwrap();
    let window = client
        .fhir_search_patient(
            PracticeId(PRACTICE),
            "Observation",
            &patient.to_string(),
            Some(since),
            20,
        )
        .await
        .expect("window search");
    assert_eq!(window.len(), 1);
    assert_eq!(window[0]["id"], changed["id"]);
    assert_eq!(window[0]["status"], "amended");
    // Another patient's resources never leak into the search.
    let other = client
        .fhir_search_patient(PracticeId(PRACTICE), "Condition", "60179", None, 50)
        .await
        .unwrap();
    assert!(!other.is_empty());
    assert!(other.iter().all(|r| {
        r["subject"]["reference"]
            .as_str()
            .unwrap()
            .ends_with(".E-60179")
    }));
    sim.shutdown().await;
}

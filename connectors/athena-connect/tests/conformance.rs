//! `athena-connect conformance` against the in-process simulator: the read and write passes
//! pass, and the command fails clearly when athena withholds a scope, has dropped a feed
//! subscription or changes a response shape. athena only: no Kafka or registry is contacted
//! (the config names them because every config must).

use athena_client::api::changed::{Feed, Subscribe};
use athena_client::{AthenaClient, ClientConfig, Environment};
use athena_connect::conformance;
use athena_sim::{Fault, FaultRule, RunningSim, SimConfig};

const PRACTICE: u64 = 195_900;

/// Every path enabled: two feeds, a write-back sink, a push receiver that reads Encounters
/// and manages its Subscriptions, and a small backfill. No `[athena] scopes`: derived.
fn config_text(sim_url: &str) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[schema_registry]
url = "http://127.0.0.1:9"
[athena]
base_url = "{sim_url}"
client_id = "sim-client"
client_secret = "sim-secret"
request_timeout = "5s"
[athena.retry]
max_attempts = 2
base = "10ms"
cap = "50ms"
[athena.rate_limit]
qps = 200.0
burst = 50
token_requests_per_minute = 600
[admin]
enabled = false
[sources.changed_data.changes]
practices = ["{PRACTICE}"]
state_topic = "conformance.state"
[sources.changed_data.changes.feeds]
patients = {{}}
appointments = {{}}
[sinks.write_back.commands]
topics = ["conformance.cmd.patients"]
results_topic = "conformance.results"
ledger_topic = "conformance.ledger"
[sources.fhir_push.push]
adapter = "athena"
practice_id = {PRACTICE}
secret = "conformance-test-secret-0123456789"
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:1/notifications"
subscription_topics = ["Patient.update", "Encounter.check-in"]
[backfill]
practice_id = {PRACTICE}
types = ["Patient", "Encounter"]
"#
    )
}

struct Setup {
    sim: RunningSim,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

async fn setup(config: SimConfig, subscribe: &[Feed]) -> Setup {
    let sim = RunningSim::start(config)
        .await
        .expect("start the simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("athena-connect.toml");
    std::fs::write(&path, config_text(&sim.base_url)).expect("write config");
    // A team runs conformance after its connectors subscribed their feeds once.
    let mut cc = ClientConfig::new(
        Environment::Custom(sim.base_url.parse().expect("url")),
        "sim-client",
        "sim-secret".to_string().into(),
    );
    cc.rate_limit.token_requests_per_minute = 600;
    let athena = AthenaClient::new(cc).expect("client");
    for feed in subscribe {
        athena
            .practice(PRACTICE)
            .subscribe(*feed, &Subscribe::default())
            .await
            .expect("subscribe");
    }
    Setup {
        sim,
        _dir: dir,
        path,
    }
}

async fn run(s: &Setup, writes: bool) -> (i32, String) {
    let mut out = Vec::new();
    let code = conformance::conformance(&s.path, writes, &mut out).await;
    (code, String::from_utf8(out).expect("utf-8 table"))
}

/// The table line of `check` (starts with it, then spaces).
fn line<'a>(table: &'a str, check: &str) -> &'a str {
    table
        .lines()
        .find(|l| {
            l.strip_prefix(check)
                .is_some_and(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no row {check:?} in:\n{table}"))
}

#[tokio::test]
async fn read_and_write_passes_against_the_simulator() {
    let s = setup(SimConfig::default(), &[Feed::Patients, Feed::Appointments]).await;
    let (code, table) = run(&s, true).await;
    assert_eq!(code, 0, "{table}");
    for check in [
        "token",
        "scopes",
        "departments@195900",
        "feed patients@195900 subscription",
        "feed appointments@195900 poll (leaveunprocessed)",
        "fhir Encounter search",
        "fhir Patient search",
        "$export",
        "push subscriptions list",
        "write: create patient",
        "write: update patient",
        "write: add insurance",
        "write: remove insurance (clean-up)",
        "write: add problem",
        "write: open slots",
        "write: book appointment",
        "write: cancel appointment (clean-up)",
        "write: freeze slot",
        "write: unfreeze slot (clean-up)",
        "write: book visit",
        "write: check in",
        "write: check out",
    ] {
        assert!(line(&table, check).contains("PASS"), "{check}:\n{table}");
    }
    // Command types the pass cannot undo are named as skipped, not left out.
    for skipped in [
        "write: CreateClaim",
        "write: RecordPayment",
        "write: RecordVitals",
    ] {
        assert!(
            line(&table, skipped).contains("skip"),
            "{skipped}:\n{table}"
        );
    }
    // Read pass never takes rows: the generator's changes are still queued for the connector.
    s.sim.state.generate(3);
    let before = s.sim.state.pending_changes(PRACTICE, "patients");
    let (code, table) = run(&s, false).await;
    assert_eq!(code, 0, "{table}");
    assert!(!table.contains("write:"), "{table}");
    assert_eq!(
        s.sim.state.pending_changes(PRACTICE, "patients"),
        before,
        "conformance took rows from a feed"
    );
    // The booking was cleaned up: the ledger shows the cancel after the book.
    let ops: Vec<String> = s
        .sim
        .state
        .ledger()
        .into_iter()
        .map(|e| e.operation)
        .collect();
    let book = ops
        .iter()
        .position(|o| o == "BookAppointment")
        .expect("booked");
    assert!(
        ops[book..].iter().any(|o| o == "CancelAppointment"),
        "{ops:?}"
    );
    // Every command type of the write pass reached athena, each clean-up after its write.
    let after = |first: &str, then: &str| {
        let i = ops.iter().position(|o| o == first);
        i.is_some_and(|i| ops[i..].iter().any(|o| o == then))
    };
    for (first, then) in [
        ("CreatePatient", "UpdatePatient"),
        ("AddInsurance", "RemoveInsurance"),
        ("FreezeAppointment", "UnfreezeAppointment"),
        ("CheckIn", "CheckOutAppointment"),
    ] {
        assert!(after(first, then), "{first} then {then}: {ops:?}");
    }
    assert!(ops.iter().any(|o| o == "AddProblem"), "{ops:?}");
    // The frozen slot was left open: nothing the pass froze stays frozen.
    let frozen = s
        .sim
        .state
        .with_practice(PRACTICE, |p| {
            p.appointments.values().filter(|a| a.frozen).count()
        })
        .unwrap();
    assert_eq!(frozen, 0);
    // PHI-free: the synthetic patient's name and email never reach the table.
    assert!(
        !table.contains("Synthetic") && !table.contains("example.invalid"),
        "{table}"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_withheld_scope_fails_the_scope_check_and_its_route() {
    let config = SimConfig {
        withheld_scopes: vec!["system/Encounter.read".into()],
        ..SimConfig::default()
    };
    let s = setup(config, &[Feed::Patients, Feed::Appointments]).await;
    let (code, table) = run(&s, false).await;
    assert_eq!(code, 1, "{table}");
    let scopes = line(&table, "scopes");
    assert!(
        scopes.contains("FAIL") && scopes.contains("system/Encounter.read"),
        "{table}"
    );
    let search = line(&table, "fhir Encounter search");
    assert!(
        search.contains("FAIL") && search.contains("insufficient_scope"),
        "{table}"
    );
    // Everything the granted scopes cover still passes.
    assert!(
        line(&table, "fhir Patient search").contains("PASS"),
        "{table}"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_feed_subscription_fails_that_feed() {
    let s = setup(SimConfig::default(), &[Feed::Patients]).await;
    let (code, table) = run(&s, false).await;
    assert_eq!(code, 1, "{table}");
    assert!(
        line(&table, "feed patients@195900 subscription").contains("PASS"),
        "{table}"
    );
    let dropped = line(&table, "feed appointments@195900 subscription");
    assert!(
        dropped.contains("FAIL") && dropped.contains("not subscribed"),
        "{table}"
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_changed_response_shape_fails_that_check() {
    let s = setup(SimConfig::default(), &[Feed::Patients, Feed::Appointments]).await;
    s.sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 200,
                retry_after: None,
                body: Some(r#"{"totalcount":1,"items":[{"departmentid":"1"}]}"#.into()),
            },
            1,
        )
        .method("GET")
        .path("/departments"),
    );
    let (code, table) = run(&s, false).await;
    assert_eq!(code, 1, "{table}");
    let row = line(&table, "departments@195900");
    assert!(
        row.contains("FAIL") && row.contains("could not decode"),
        "{table}"
    );
    s.sim.shutdown().await;
}

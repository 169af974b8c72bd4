//! The backfill on the real broker and registry against the simulator's `$export`:
//! - N generated resources give N snapshot events (patients as `PatientChanged`, encounters as
//!   their typed `EncounterChanged`), and the manifest's `transactionTime` becomes the next
//!   `_since`;
//! - typed clinical types arrive as their typed events, equal to the shared mapper's output for
//!   the resource the simulator holds, keyed by patient; a resource the mapper rejects is skipped
//!   and counted;
//! - a run stopped mid-file resumes inside that file (in-process, deterministic);
//! - a patient read that fails for good stops the run with every line before it durable, and the
//!   rerun resumes at that line;
//! - the backfill process (`athena-connect backfill`) killed with SIGKILL mid-download and
//!   restarted still yields all N, re-emitting at most one checkpoint batch and never a whole file
//!   (the restart waits out the dead run's lock session);
//! - a second start of the same backfill (`athena-connect backfill`) while the first runs is
//!   refused with a clear message and exit code 4, and the first completes with every resource
//!   once.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use athena_connect_tests::{Stack, unique};
use athena_contracts::events::encounters::EncounterChanged;
use athena_contracts::events::fhir::FhirEvent;
use athena_contracts::events::observations::ObservationChanged;
use athena_contracts::mapping::{Observation, typed_from_fhir};
use athena_contracts::{FhirResourceChanged, PatientChanged, SourceKind};
use athena_sim::{Fault, FaultRule, RunningSim};
use bulk_backfill::config::ProgressMode;
use bulk_backfill::state::BackfillState;
use bulk_backfill::{Config, checkpoint_key, run_backfill};
use common::{PRACTICE, athena, create_topics, env, high_watermark};
use connector_core::avro::AvroCodec;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
use connector_core::runtime::RunEnv;
use rdkafka::message::Message;

const LINES_PER_FILE: usize = 25;

async fn sim_with_patients(extra: usize) -> RunningSim {
    common::sim_with_patients(extra, LINES_PER_FILE).await
}

fn config(poll_ms: u64) -> Config {
    let mut c = Config::new(PRACTICE);
    c.types = vec!["Patient".into(), "Encounter".into()];
    c.poll_min_interval = Duration::from_millis(poll_ms);
    c.poll_max_interval = Duration::from_secs(2);
    c.checkpoint_topic = unique("backfill.state");
    c.patients_topic = Some(unique("patients"));
    c.fhir_resources_topic = Some(unique("fhir"));
    c.typed_topics
        .insert("Encounter".into(), unique("encounters"));
    c.checkpoint_every = 5;
    c.progress = ProgressMode::Log;
    c.log_interval = Duration::from_millis(200);
    c
}

/// Expected resources: every patient, and every Encounter the simulator serves (one per
/// checked-in appointment, none here, plus the seeded visits).
fn expected(sim: &RunningSim) -> usize {
    sim.state
        .with_practice(PRACTICE, |p| {
            p.patients.len() + athena_sim::api::fhir::resources(p, "Encounter", None).len()
        })
        .unwrap()
}

/// Every event on the two topics: (event id -> count), checking the snapshot flags.
async fn events(stack: &Stack, env: &RunEnv, cfg: &Config) -> BTreeMap<String, usize> {
    let codec = AvroCodec::new(env.registry.clone()).unwrap();
    let mut ids = BTreeMap::new();
    let np = high_watermark(env, &cfg.patients_topic()) as usize;
    for m in stack
        .consume(&cfg.patients_topic(), np, Duration::from_secs(60))
        .await
    {
        let ev: PatientChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        assert!(ev.envelope.snapshot);
        assert_eq!(ev.envelope.source, SourceKind::BulkExport);
        *ids.entry(ev.envelope.event_id).or_insert(0) += 1;
    }
    let nr = high_watermark(env, &cfg.fhir_resources_topic()) as usize;
    if nr > 0 {
        for m in stack
            .consume(&cfg.fhir_resources_topic(), nr, Duration::from_secs(60))
            .await
        {
            let ev: FhirResourceChanged = codec.decode(m.payload().unwrap()).await.unwrap();
            assert!(ev.envelope.snapshot);
            *ids.entry(ev.envelope.event_id).or_insert(0) += 1;
        }
    }
    let et = cfg.typed_topic("Encounter").unwrap();
    let ne = high_watermark(env, &et) as usize;
    for m in stack.consume(&et, ne, Duration::from_secs(60)).await {
        let ev: EncounterChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        assert!(ev.envelope.snapshot);
        assert_eq!(m.key(), Some(ev.key().as_bytes()));
        *ids.entry(ev.envelope.event_id).or_insert(0) += 1;
    }
    ids
}

async fn load_state(env: &RunEnv, cfg: &Config) -> Option<BackfillState> {
    let store = KafkaCheckpointStore::open(
        &env.kafka,
        &cfg.checkpoint_topic,
        env.kafka.build_producer().unwrap(),
    )
    .await
    .unwrap();
    store
        .load()
        .await
        .unwrap()
        .get(&checkpoint_key("default", PRACTICE))
        .map(|b| BackfillState::from_bytes(b).unwrap())
}

#[tokio::test]
async fn n_generated_resources_give_n_snapshot_events_and_the_next_since() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(60).await;
    let client = athena(&sim);
    let env = env(&stack);
    let cfg = config(100);
    create_topics(&stack, &cfg).await;
    let n = expected(&sim);
    assert!(n > 2 * LINES_PER_FILE, "several files: {n}");
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(s.events as usize, n);
    assert!(s.files >= n / LINES_PER_FILE);
    // `patient_source = "athena"` (the default): one proprietary read per exported patient.
    let patients = sim
        .state
        .with_practice(PRACTICE, |p| p.patients.len())
        .unwrap();
    assert_eq!(
        sim.state
            .request_count("GET", "/v1/{practiceid}/patients/{patientid}"),
        patients as u64
    );
    assert_eq!(s.patients_fallback, 0);
    let ids = events(&stack, &env, &cfg).await;
    assert_eq!(ids.len(), n, "one event per resource");
    assert!(ids.values().all(|c| *c == 1));
    let st = load_state(&env, &cfg).await.unwrap();
    assert!(st.job.is_none());
    assert_eq!(st.next_since, s.transaction_time);
    // The next run exports only what changed since: nothing.
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s2 = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(
        s2.events, 0,
        "incremental run with _since = previous transactionTime"
    );
    assert!(s2.transaction_time >= s.transaction_time);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_run_stopped_mid_file_resumes_inside_that_file() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(30).await;
    let client = athena(&sim);
    let env = env(&stack);
    let cfg = config(100);
    create_topics(&stack, &cfg).await;
    let n = expected(&sim);
    // The first file download is slow; shutdown is requested while it is in flight, so the run
    // stops at its first checkpoint inside file 1.
    sim.state.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(500)), 1)
            .method("GET")
            .path("/fhir/r4/bulkfiles/"),
    );
    let (control, handle) = connector_core::runtime::task("default", "bulk-backfill");
    let export_started = async {
        while sim
            .state
            .request_count("GET", "/fhir/r4/bulkfiles/{jobid}/{file}")
            == 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        handle.shutdown();
    };
    let (s1, ()) = tokio::join!(
        run_backfill("default", &cfg, &env, &client, control),
        export_started
    );
    let s1 = s1.unwrap();
    assert!(s1.interrupted);
    assert_eq!(s1.events as usize, cfg.checkpoint_every);
    let st = load_state(&env, &cfg).await.unwrap();
    let files = &st.job.as_ref().unwrap().manifest.as_ref().unwrap().files;
    assert_eq!(files[0].lines_done as usize, cfg.checkpoint_every);
    assert!(!files[0].done);

    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s2 = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(
        s1.events + s2.events,
        n as u64,
        "nothing lost, nothing repeated"
    );
    let ids = events(&stack, &env, &cfg).await;
    assert_eq!(ids.len(), n);
    assert!(ids.values().all(|c| *c == 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_patient_read_stops_the_run_with_the_lines_before_it_durable() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(30).await;
    let client = athena(&sim);
    let env = env(&stack);
    let cfg = config(100);
    create_topics(&stack, &cfg).await;
    let n = expected(&sim);
    // The export lists patients by id; the read of the 12th fails with an error the client does
    // not retry (a 400), while the reads after it are already in flight.
    let twelfth = sim
        .state
        .with_practice(PRACTICE, |p| *p.patients.keys().nth(11).unwrap())
        .unwrap();
    sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 400,
                retry_after: None,
                body: None,
            },
            1,
        )
        .method("GET")
        .path(&format!("/v1/{PRACTICE}/patients/{twelfth}")),
    );
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let e = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap_err();
    assert!(matches!(e, bulk_backfill::Error::Athena(_)), "{e}");
    let st = load_state(&env, &cfg).await.unwrap();
    let files = &st.job.as_ref().unwrap().manifest.as_ref().unwrap().files;
    assert_eq!(files[0].lines_done, 11, "every line before the failed one");
    assert_eq!(high_watermark(&env, &cfg.patients_topic()), 11);

    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(s.events as usize + 11, n, "resumed at the failed line");
    let ids = events(&stack, &env, &cfg).await;
    assert_eq!(ids.len(), n);
    assert!(ids.values().all(|c| *c == 1), "nothing repeated");
    sim.shutdown().await;
}

/// An `athena-connect` config file whose `[backfill]` section is `cfg`'s, on the test stack.
fn config_file(stack: &Stack, sim: &RunningSim, cfg: &Config) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1

[schema_registry]
url = "{registry}"
auto_register = true

[athena]
base_url = "{sim}"
client_id = "sim-client"
client_secret = "sim-secret"

[backfill]
practice_id = {PRACTICE}
types = ["Patient", "Encounter"]
poll_min_interval = "100ms"
poll_max_interval = "2s"
checkpoint_topic = "{cp}"
patients_topic = "{pt}"
fhir_resources_topic = "{rt}"
typed_topics = {{ Encounter = "{et}" }}
checkpoint_every = 5
progress = "log"
log_interval = "500ms"
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
        sim = sim.base_url,
        cp = cfg.checkpoint_topic,
        pt = cfg.patients_topic(),
        rt = cfg.fhir_resources_topic(),
        et = cfg.typed_topic("Encounter").unwrap(),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn killed_mid_download_and_restarted_yields_all_without_repeating_a_file() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(120).await;
    // Each file download takes a while, so the kill lands mid-download.
    sim.state.inject(
        FaultRule::new(Fault::Latency(Duration::from_millis(1500)), 10_000)
            .method("GET")
            .path("/fhir/r4/bulkfiles/"),
    );
    let env = env(&stack);
    let cfg = config(100);
    create_topics(&stack, &cfg).await;
    let n = expected(&sim);
    let file = config_file(&stack, &sim, &cfg);
    let path = file.path().to_str().unwrap().to_string();
    let bin = athena_connect_tests::athena_connect_bin();
    let run = move || {
        Command::new(&bin)
            .args(["backfill", "--config", &path])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut first = run();
    // Kill once at least two files are done but not all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backfill made no progress"
        );
        if let Some(st) = load_state(&env, &cfg).await
            && let Some(m) = st.job.as_ref().and_then(|j| j.manifest.as_ref())
            && m.files.iter().filter(|f| f.done).count() >= 2
        {
            assert!(m.files.iter().any(|f| !f.done), "killed before the end");
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            panic!("first run ended early: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let before = high_watermark(&env, &cfg.patients_topic())
        + high_watermark(&env, &cfg.fhir_resources_topic())
        + high_watermark(&env, &cfg.typed_topic("Encounter").unwrap());
    assert!(
        (before as usize) < n,
        "the first run did not finish: {before} of {n}"
    );

    let status = tokio::task::spawn_blocking(move || run().wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "second run: {status:?}");
    let ids = events(&stack, &env, &cfg).await;
    assert_eq!(ids.len(), n, "every resource arrived");
    let total: usize = ids.values().sum();
    assert!(
        total - n <= cfg.checkpoint_every,
        "re-emitted {} events: at most one checkpoint batch, never a whole file of {LINES_PER_FILE}",
        total - n
    );
    drop(file);
    sim.shutdown().await;
}

/// The members of the lock group of backfill `name` (empty when no run holds it).
fn lock_members(env: &RunEnv, cfg: &Config, name: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let group = bulk_backfill::lock::lock_group(&cfg.checkpoint_topic, name, PRACTICE);
    let c: BaseConsumer = env
        .kafka
        .consumer_config(&unique("probe"))
        .create()
        .unwrap();
    c.fetch_group_list(Some(&group), Duration::from_secs(10))
        .unwrap()
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum()
}

#[tokio::test]
async fn a_second_run_of_the_same_backfill_is_refused_and_the_first_completes() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(30).await;
    // The export stays "in progress" (202) until the fault is cleared, so the first run is
    // certainly still running when the second starts.
    sim.state.inject(
        FaultRule::new(
            Fault::Status {
                code: 202,
                retry_after: Some(1),
                body: Some(String::new()),
            },
            100_000,
        )
        .method("GET")
        .path("/fhir/r4/bulkstatus/"),
    );
    let client = athena(&sim);
    let env = env(&stack);
    let cfg = config(100);
    create_topics(&stack, &cfg).await;
    let n = expected(&sim);
    let name = unique("lock");
    let first = {
        let (cfg, env, client, name) = (cfg.clone(), env.clone(), client.clone(), name.clone());
        let (control, h) = connector_core::runtime::task(&name, "bulk-backfill");
        tokio::spawn(async move {
            let _h = h;
            run_backfill(&name, &cfg, &env, &client, control).await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while lock_members(&env, &cfg, &name) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first run never took its lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The second start as an operator makes it: `athena-connect backfill`, same config and name.
    let file = config_file(&stack, &sim, &cfg);
    let args = [
        "backfill",
        "--config",
        file.path().to_str().unwrap(),
        "--name",
        &name,
    ]
    .map(String::from);
    let bin = athena_connect_tests::athena_connect_bin();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "refused with the conflict exit code: {stderr}"
    );
    assert!(
        stderr.contains("backfill already running")
            && stderr.contains(&bulk_backfill::lock::lock_group(
                &cfg.checkpoint_topic,
                &name,
                PRACTICE
            )),
        "the message says what and which lock: {stderr}"
    );
    assert!(!first.is_finished(), "the first run was not disturbed");
    assert_eq!(
        lock_members(&env, &cfg, &name),
        1,
        "the refused run left the group"
    );

    sim.state.clear_faults();
    let s = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the first run completes")
        .unwrap()
        .expect("the first run succeeds");
    assert_eq!(s.events as usize, n);
    let ids = events(&stack, &env, &cfg).await;
    assert_eq!(ids.len(), n, "one event per resource");
    assert!(ids.values().all(|c| *c == 1), "nothing written twice");
    sim.shutdown().await;
}

#[tokio::test]
async fn typed_clinical_types_arrive_as_typed_events_from_the_shared_mapper() {
    let stack = Stack::get().await;
    let sim = sim_with_patients(0).await;
    // One Observation the typed mapper must reject (no status): skipped and counted, not fatal.
    let patient = sim
        .state
        .with_practice(PRACTICE, |p| *p.patients.keys().next().unwrap())
        .unwrap();
    sim.state
        .put_clinical(
            PRACTICE,
            serde_json::json!({"resourceType": "Observation", "id": format!("a-{PRACTICE}.vitals-bad-1"),
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("Patient/a-{PRACTICE}.E-{patient}")}}),
        )
        .unwrap();
    let client = athena(&sim);
    let env = env(&stack);
    let mut cfg = config(100);
    cfg.types = vec!["Observation".into()];
    cfg.include_original = false;
    cfg.typed_topics = [("Observation".to_string(), unique("observations"))].into();
    let topic = cfg.typed_topic("Observation").unwrap();
    create_topics(&stack, &cfg).await;
    let held: Vec<serde_json::Value> = sim
        .state
        .with_practice(PRACTICE, |p| {
            athena_sim::api::fhir::resources(p, "Observation", None)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        })
        .unwrap();
    let obs = Observation {
        source: SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original: false,
    };
    let mut want: BTreeMap<String, ObservationChanged> = BTreeMap::new();
    for r in &held {
        if let Ok(ev) = typed_from_fhir::<ObservationChanged>(&PRACTICE.to_string(), r, &obs) {
            want.insert(ev.envelope.event_id.clone(), ev);
        }
    }
    assert_eq!(
        want.len() + 1,
        held.len(),
        "exactly the bad one does not map"
    );
    let (control, _h) = connector_core::runtime::task("default", "bulk-backfill");
    let s = run_backfill("default", &cfg, &env, &client, control)
        .await
        .unwrap();
    assert_eq!(s.events as usize, want.len());
    assert_eq!(s.skipped, 1, "the unmappable resource");
    let codec = AvroCodec::new(env.registry.clone()).unwrap();
    let got = stack
        .consume(&topic, want.len(), Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), want.len());
    for m in got {
        let mut ev: ObservationChanged = codec.decode(m.payload().unwrap()).await.unwrap();
        assert_eq!(
            m.key(),
            Some(format!("{PRACTICE}/{}", ev.payload.patient_id).as_bytes())
        );
        let w = want
            .get(&ev.envelope.event_id)
            .unwrap_or_else(|| panic!("unexpected event {}", ev.envelope.event_id));
        // Same id and payload as the shared mapper gives the simulator's resource; only the
        // observation time belongs to the path.
        ev.envelope.observed_at = w.envelope.observed_at;
        assert_eq!(&ev, w);
        assert!(ev.envelope.snapshot && ev.original.is_none());
        assert!(!ev.payload.codes.is_empty());
    }
    assert_eq!(
        high_watermark(&env, &cfg.fhir_resources_topic()),
        0,
        "no untyped events"
    );
    sim.shutdown().await;
}

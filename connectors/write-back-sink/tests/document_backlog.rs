//! The document backlog (issue 11, "Done when"): a few thousand large `UploadClinicalDocument`
//! commands queued while the sink is stopped, then the real binary (`athena-connect run --only
//! docs`, production defaults for every memory setting) works through them against the
//! simulator. Its peak RSS (`VmHWM` of /proc/<pid>/status) must stay under the bound the memory
//! budget in docs/operations.md ("Memory") derives from the config:
//!
//! ```text
//! FIXED_OVERHEAD                                 (the process with nothing buffered; measured
//!                                                 here too, before the backlog, and asserted)
//! + (100 + ALLOCATOR_SLACK_PERCENT) % of
//!     max_buffered_bytes                         (the sink's read-ahead)
//!   + max_in_flight × IN_FLIGHT_COPIES × message (an upload's working copies: the attachment,
//!                                                 its base64 text, the form body)
//!   + 2 producers × queue.buffering.max.kbytes   (intents + dead letters, results)
//!   + 1 consumer × (queued.max.messages.kbytes + fetch.max.bytes)
//!   + commands × LEDGER_PEAK_PER_ENTRY           (tests/ledger_memory.rs)
//! ```
//!
//! Also: exactly one result per command, every one APPLIED, athena holds every document once.
//! The figures are printed. The topics (about 1 GB) are deleted at the end, also on failure of
//! an assertion (they are checked after the clean-up).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use athena_connect_tests::Stack;
use athena_contracts::CommandStatus;
use athena_contracts::commands::UploadClinicalDocument;
use athena_sim::{NewPatient, SimConfig};
use chrono::NaiveDate;
use common::kill_run::{Sink, count_results, spawn_sink, stop_gracefully};
use common::*;
use connector_core::kafka::{CONSUMER_CAPS, MemoryCap, PRODUCER_CAPS};
use futures::StreamExt;
use rdkafka::admin::AdminOptions;
use rdkafka::producer::FutureRecord;

/// Documents queued (~1 GB on the topic: the disk of a developer machine takes it).
const DOCUMENTS: usize = 2_000;
/// Size of each PDF.
const DOCUMENT_BYTES: usize = 512 * 1024;
/// Patients the documents are spread over (keys: one key is handled one command at a time).
const PATIENTS: usize = 100;
/// The process with nothing buffered: binary, runtimes, TLS and HTTP clients, librdkafka's
/// threads and broker buffers, metrics. Measured at 34 MiB for `run --only <sink>` (41 MiB
/// for `run` with every connector; docs/operations.md, Memory), rounded up for the HTTP
/// connection pool under load; checked below against this run's own idle figure.
const FIXED_OVERHEAD: u64 = 48 * 1024 * 1024;
/// glibc keeps freed large buffers in its arenas for reuse instead of returning them at once,
/// so RSS runs ahead of the live bytes while documents churn through; a margin, not measured
/// on its own (the peaks measured here reach 90-99 % of idle + the buffered terms;
/// docs/operations.md, Memory).
const ALLOCATOR_SLACK_PERCENT: u64 = 20;
/// Working copies of one upload at athena besides the decoded command (counted in the
/// read-ahead): the attachment handed to the client, its base64 text (4/3), the urlencoded form
/// (base64's `+` and `/` escaped), one spare for the allocator.
const IN_FLIGHT_COPIES: u64 = 4;
/// Bytes per ledger entry at the peak of a load (tests/ledger_memory.rs, PEAK_BOUND).
const LEDGER_PEAK_PER_ENTRY: u64 = 2048;
/// Whole run, generous: the test takes about a minute on a laptop.
const RESULTS_WITHIN: Duration = Duration::from_secs(150);

fn cap(caps: &[MemoryCap], key: &str) -> u64 {
    caps.iter()
        .find(|c| c.key == key)
        .map(|c| c.default)
        .expect("known cap")
}

fn write_config(dir: &Path, stack: &Stack, sim_url: &str, n: &Names) -> PathBuf {
    // Only names and speed-ups: every memory setting (max_buffered, max_buffered_bytes,
    // max_in_flight, the librdkafka caps) keeps its default, which the bound is derived from.
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
replication_factor = 1

[schema_registry]
url = "{registry}"
subject_strategy = "topic_record_name"
auto_register = true

[athena]
base_url = "{sim_url}"
client_id = "sim-client"
client_secret = "sim-secret"
request_timeout = "10s"
[athena.retry]
base = "20ms"
cap = "200ms"
[athena.rate_limit]
qps = 500.0
burst = 50
token_requests_per_minute = 600

[admin]
enabled = false

[sinks.write_back.docs]
topics = ["{p}", "{a}", "{b}"]
results_topic = "{results}"
ledger_topic = "{ledger}"
group_id = "{group}"
transactional_id = "{group}.tx"
backoff_base = "20ms"
backoff_cap = "500ms"
commit_interval = "50ms"
topic_partitions = 6
"#,
        bootstrap = stack.bootstrap,
        registry = stack.registry_url,
        p = n.patients,
        a = n.appointments,
        b = n.billing,
        results = n.results,
        ledger = n.ledger,
        group = n.group,
    );
    let path = dir.join("docs.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A field of /proc/<pid>/status in bytes (`VmHWM`, `VmRSS`).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples `VmHWM` of `pid` every 100 ms into `peak` until `stop`.
fn sample_peak(
    pid: u32,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(hwm) = proc_status(pid, "VmHWM:") {
                peak.fetch_max(hwm, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Waits until the sink's log says it runs (its group subscribed).
async fn wait_running(log: &Path, sink: &mut Sink) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Write-back sink running.") {
            return;
        }
        if let Ok(Some(exit)) = sink.try_wait() {
            panic!("the sink exited before running ({exit:?}); log:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not start within 60 s; log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pseudo-random bytes (incompressible, like a real PDF's streams), cheap to make.
fn pdf(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(b"%PDF-1.7\n");
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_backlog_stays_under_the_memory_bound() {
    let stack = Stack::get().await;
    let (sim, _athena) = start_sim(SimConfig::default()).await;
    let n = Names::new();
    create_topics_with(&stack, &n, 6).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &stack, &sim.base_url, &n);
    let log = dir.path().join("sink.log");

    // 1. Idle: the process with nothing to do, for the fixed overhead.
    let mut sink = spawn_sink(&config, "docs", &log);
    wait_running(&log, &mut sink).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = proc_status(sink.id(), "VmHWM:").expect("VmHWM of the sink");
    stop_gracefully(&mut sink, "docs (idle)");
    drop(sink);

    // 2. The backlog, queued while the sink is stopped. One encoding per patient; each
    // command's id is then patched in place (same length, so the Avro framing holds).
    let patients: Vec<String> = (0..PATIENTS)
        .map(|i| {
            sim.state.add_patient(
                PRACTICE,
                NewPatient::new(
                    "Docca",
                    &format!("Backlog{i}"),
                    NaiveDate::from_ymd_opt(1960, 1, 1).unwrap() + chrono::Duration::days(i as i64),
                ),
            )
        })
        .collect();
    let p = Producer::new(&stack);
    let template_id = "docs-xxxxxxxx";
    let mut templates = Vec::with_capacity(PATIENTS);
    for (i, patient) in patients.iter().enumerate() {
        let doc = UploadClinicalDocument {
            command_id: template_id.into(),
            practice_id: PRACTICE.to_string(),
            correlation_id: None,
            issued_at: None,
            patient_id: patient.clone(),
            department_id: "1".into(),
            document_subclass: "CLINICALDOCUMENT".into(),
            attachment: pdf(i as u64 + 1, DOCUMENT_BYTES),
            attachment_type: "PDF".into(),
            original_filename: None,
            document_type_id: None,
            autoclose: true,
            observation_date: None,
            provider_id: None,
            internal_note: None,
        };
        let bytes = p.encode(&n.patients, &doc).await;
        let at = bytes
            .windows(template_id.len())
            .position(|w| w == template_id.as_bytes())
            .expect("the command id in the encoding");
        templates.push((bytes, at));
    }
    let message_bytes = templates.iter().map(|(b, _)| b.len() as u64).max().unwrap();
    let ids: Vec<String> = (0..DOCUMENTS).map(|i| format!("docs-{i:08}")).collect();
    let produced = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (template, at) = &templates[i % PATIENTS];
            let mut bytes = template.clone();
            bytes[*at..*at + id.len()].copy_from_slice(id.as_bytes());
            let key = format!("{PRACTICE}/{}", patients[i % PATIENTS]);
            let producer = &p.producer;
            let topic = &n.patients;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&bytes[..]),
                        Duration::from_secs(60),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(produced.iter().all(Result::is_ok), "every command queued");
    drop(templates);

    // 3. The sink works through the backlog; its peak RSS is sampled until the last result.
    let (seen, counter) = count_results(&stack, &n.results);
    let started = Instant::now();
    let mut sink = spawn_sink(&config, "docs", &log);
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(sink.id(), peak.clone(), stop.clone());
    while seen.load(Ordering::Relaxed) < DOCUMENTS && started.elapsed() < RESULTS_WITHIN {
        if let Ok(Some(exit)) = sink.try_wait() {
            panic!("the sink exited ({exit:?}); log: {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let msgs = read_until(
        &stack.kafka(),
        &n.results,
        DOCUMENTS,
        Duration::from_secs(30),
    )
    .await;
    let late = drain_more(
        &stack.kafka(),
        &n.results,
        msgs.len(),
        Duration::from_secs(3),
    )
    .await;
    if let Some(hwm) = proc_status(sink.id(), "VmHWM:") {
        peak.fetch_max(hwm, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    stop_gracefully(&mut sink, "docs");
    drop(sink);
    counter.abort();
    let peak = peak.load(Ordering::Relaxed);
    let documents_at_athena = sim
        .state
        .with_practice(PRACTICE, |p| p.documents.len())
        .expect("practice");

    // 4. Clean up before asserting: the topics hold about 1 GB.
    let admin = stack.kafka().build_admin().expect("admin");
    let topics: Vec<String> = [&n.patients, &n.appointments, &n.billing]
        .into_iter()
        .flat_map(|t| [t.clone(), format!("{t}.dlq")])
        .chain([n.results.clone(), n.ledger.clone()])
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let deleted = admin
        .delete_topics(&names, &AdminOptions::new())
        .await
        .expect("delete topics");
    for r in deleted {
        if let Err((topic, code)) = r {
            eprintln!("could not delete {topic}: {code}");
        }
    }

    // 5. The bound, from the config this run used (defaults) and the documented constants.
    let sink_cfg = write_back_sink::Config::default();
    let producer_queue = cap(PRODUCER_CAPS, "queue.buffering.max.kbytes") * 1024;
    let consumer = cap(CONSUMER_CAPS, "queued.max.messages.kbytes") * 1024
        + cap(CONSUMER_CAPS, "fetch.max.bytes");
    let buffered = sink_cfg.max_buffered_bytes
        + sink_cfg.max_in_flight as u64 * IN_FLIGHT_COPIES * message_bytes
        + 2 * producer_queue
        + consumer
        + DOCUMENTS as u64 * LEDGER_PEAK_PER_ENTRY;
    let bound = FIXED_OVERHEAD + buffered * (100 + ALLOCATOR_SLACK_PERCENT) / 100;
    println!(
        "document backlog: {DOCUMENTS} x {} KiB documents ({:.0} MiB queued) in {:.1} s; \
         idle RSS {:.1} MiB (fixed overhead budget {:.0} MiB); peak RSS (VmHWM) {:.1} MiB; \
         bound {:.1} MiB = {:.0} fixed + {ALLOCATOR_SLACK_PERCENT} % slack on ({:.0} read-ahead \
         + {} x {IN_FLIGHT_COPIES} x {:.2} in flight + 2 x {:.0} producer queues + {:.0} consumer \
         + {:.1} ledger = {:.1}); peak/bound {:.0} %",
        DOCUMENT_BYTES / 1024,
        mib(message_bytes * DOCUMENTS as u64),
        elapsed.as_secs_f64(),
        mib(idle),
        mib(FIXED_OVERHEAD),
        mib(peak),
        mib(bound),
        mib(FIXED_OVERHEAD),
        mib(sink_cfg.max_buffered_bytes),
        sink_cfg.max_in_flight,
        mib(message_bytes),
        mib(producer_queue),
        mib(consumer),
        mib(DOCUMENTS as u64 * LEDGER_PEAK_PER_ENTRY),
        mib(buffered),
        peak as f64 * 100.0 / bound as f64,
    );

    // 6. Exactly one result per command, every one applied, every document at athena once.
    assert_eq!(
        late.len(),
        msgs.len(),
        "no result arrived after the first {} (a duplicate)",
        msgs.len()
    );
    let results: HashMap<_, _> = results_by_id(&p.codec, &msgs).await;
    assert_eq!(results.len(), DOCUMENTS, "one result per command");
    for id in &ids {
        let r = results
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r.status, CommandStatus::Applied, "{id}: {r:?}");
    }
    assert_eq!(documents_at_athena, DOCUMENTS, "every document filed once");
    assert!(
        idle <= FIXED_OVERHEAD,
        "idle RSS {:.1} MiB above the documented fixed overhead {:.0} MiB",
        mib(idle),
        mib(FIXED_OVERHEAD)
    );
    assert!(
        peak <= bound,
        "peak RSS {:.1} MiB above the documented bound {:.1} MiB",
        mib(peak),
        mib(bound)
    );
}

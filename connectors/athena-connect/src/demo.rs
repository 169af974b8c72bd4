//! `athena-connect demo-traffic`: the other direction of the demo. Produces a synthetic
//! `CreatePatient` command every few seconds onto the patients command topic, so the write-back
//! sink applies it to athena (the simulator), answers on the results topic, and the
//! changed-data source then streams the new patient back: data visibly flows both ways.
//!
//! Only for the simulator: the names are obviously synthetic (`Demo` / `Patient-<n>`).

use std::path::Path;
use std::time::Duration;

use athena_contracts::Date;
use athena_contracts::commands::CreatePatient;
use connector_core::avro::{AvroCodec, SubjectStrategy};
use rdkafka::producer::FutureRecord;

use crate::{exit, run};

/// Options of `demo-traffic`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrafficOptions {
    /// The TOML config (its `[kafka]` and `[schema_registry]` are used).
    #[arg(long, short, env = "ATHENA_CONNECT_CONFIG")]
    pub config: std::path::PathBuf,
    /// One command this often.
    #[arg(long, default_value = "3s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub every: Duration,
    /// The command topic.
    #[arg(long, default_value = "athena.cmd.patients.v1")]
    pub topic: String,
    /// The practice the commands are for.
    #[arg(long, default_value_t = 195_900)]
    pub practice: u64,
}

/// Produces commands until SIGTERM or Ctrl-C. Returns the exit code.
pub async fn traffic(o: &TrafficOptions) -> i32 {
    let config = match run::load(Path::new(&o.config), &mut std::io::stderr()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Command topics carry several record types: their subjects are TopicRecordName, as
    // `schemas register` binds them.
    let mut registry = config.schema_registry.clone();
    registry.subject_strategy = SubjectStrategy::TopicRecordName;
    let encoder = match AvroCodec::new(registry) {
        Ok(c) => match c.encoder::<CreatePatient>(&o.topic).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e} (run `athena-connect schemas register` first)");
                return exit::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let producer = match config.kafka.build_producer() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    let stop = run::termination_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(o.every);
    let run_id = uuid_like();
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return exit::OK,
            _ = tick.tick() => {}
        }
        n += 1;
        let command_id = format!("demo-{run_id}-{n}");
        let cmd = CreatePatient {
            command_id: command_id.clone(),
            practice_id: o.practice.to_string(),
            correlation_id: None,
            issued_at: Some(chrono::Utc::now().into()),
            department_id: "1".into(),
            first_name: "Demo".into(),
            last_name: format!("Patient-{n}"),
            dob: Date::from(chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap_or_default()),
            sex: None,
            email: None,
            home_phone: None,
            mobile_phone: None,
            address1: None,
            city: None,
            state: None,
            // athena requires one contact field; a placeholder zip is the least personal.
            zip: Some("00000".into()),
        };
        let bytes = match encoder.encode(&cmd) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::FAILURE;
            }
        };
        let key = format!("{}/{command_id}", o.practice);
        match producer
            .send(
                FutureRecord::to(&o.topic).key(&key).payload(&bytes),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(_) => eprintln!("demo-traffic: sent CreatePatient {command_id}"),
            Err((e, _)) => eprintln!("demo-traffic: produce failed: {e}"),
        }
    }
}

/// A short run id so command ids never repeat across demo runs (the sink deduplicates on them).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}

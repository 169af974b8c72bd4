//! The change generator is deterministic for a seed and feeds the subscribed feeds.

mod common;

use athena_sim::{SimConfig, SimState};
use common::{Harness, PID};

#[test]
fn same_seed_same_ledger_different_seed_different_ledger() {
    let run = |seed| {
        let s = SimState::new(SimConfig {
            seed,
            practices: vec![PID, 1_959_001],
            ..Default::default()
        });
        s.generate(200);
        s.ledger()
            .into_iter()
            .map(|e| (e.practice_id, e.operation, e.entity_id, e.params))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a.len(), 200, "every step writes once");
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    let ops: std::collections::BTreeSet<&str> = a.iter().map(|e| e.1.as_str()).collect();
    for op in [
        "CreatePatient",
        "BookAppointment",
        "CheckIn",
        "CreateAppointmentClaim",
        "AddProblem",
    ] {
        assert!(ops.contains(op), "{op} missing from {ops:?}");
    }
    assert!(
        a.iter()
            .all(|e| e.3.get("source").map(String::as_str) == Some("generator"))
    );
}

#[tokio::test]
async fn generated_changes_reach_subscribed_feeds() {
    let h = Harness::start(SimConfig {
        seed: 3,
        ..Default::default()
    })
    .await;
    for feed in [
        "patients",
        "appointments",
        "chart/healthhistory/problems",
        "claims",
        "labresults",
    ] {
        h.subscribe(feed).await;
    }
    h.sim.state.generate(300);
    let v = h.get_ok("/appointments/changed").await;
    assert!(v["totalcount"].as_u64().unwrap() > 0);
    let v = h.get_ok("/chart/healthhistory/problems/changed").await;
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["problemid"].is_number())
    );
    let v = h.get_ok("/claims/changed").await;
    assert!(v["totalcount"].as_u64().unwrap() > 0);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn background_generator_runs_while_serving() {
    use athena_sim::{GeneratorConfig, RunningSim};
    let cfg = SimConfig {
        generator: Some(GeneratorConfig {
            rate_per_sec: 100.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let sim = RunningSim::start(cfg).await.unwrap();
    let mut waited = 0;
    while sim.state.ledger().len() < 5 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(
        sim.state.ledger().len() >= 5,
        "generator produced writes in the background"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn generator_fills_every_feed_and_every_clinical_type() {
    let h = Harness::start(SimConfig {
        seed: 5,
        ..Default::default()
    })
    .await;
    for f in athena_sim::feeds::FEEDS {
        h.subscribe(f.path).await;
    }
    let before = h
        .sim
        .state
        .with_practice(PID, |p| p.clinical.len())
        .unwrap();
    h.sim.state.generate(1500);
    for f in athena_sim::feeds::FEEDS {
        let v = h
            .get_ok(&format!("/{}/changed?leaveunprocessed=true", f.path))
            .await;
        let n = v[f.items_key].as_array().map_or(0, Vec::len);
        assert!(n > 0, "feed {} got no rows: {v}", f.path);
    }
    // Every clinical type got new or updated resources from the generator.
    let changed: std::collections::BTreeSet<String> = h
        .sim
        .state
        .with_practice(PID, |p| {
            p.clinical
                .values()
                // Seeded resources are numbered from 7000001, generated ones by chart ids.
                .filter(|r| {
                    r.json["id"]
                        .as_str()
                        .and_then(|i| i.rsplit('-').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n < 7_000_000)
                })
                .map(|r| r.resource_type().to_string())
                .collect()
        })
        .unwrap();
    for ty in athena_sim::clinical::CLINICAL_TYPES {
        if matches!(*ty, "AllergyIntolerance") {
            // Allergies are chart items (served as FHIR by api/fhir.rs), not clinical-store rows.
            continue;
        }
        assert!(changed.contains(*ty), "{ty} not generated: {changed:?}");
    }
    let after = h
        .sim
        .state
        .with_practice(PID, |p| p.clinical.len())
        .unwrap();
    assert!(after > before);
    h.sim.shutdown().await;
}

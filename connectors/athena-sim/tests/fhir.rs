//! FHIR reads and the bulk `$export` flow end to end.

mod common;

use athena_sim::SimConfig;
use common::{Harness, PID};
use serde_json::Value;

#[tokio::test]
async fn patient_read_and_search_need_the_practice() {
    let h = Harness::start(SimConfig::default()).await;
    let base = &h.sim.base_url;
    let r = h
        .get(&format!("{base}/fhir/r4/Patient/a-{PID}.E-60178"))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "Patient");
    assert_eq!(v["id"], format!("a-{PID}.E-60178"));
    assert_eq!(v["name"][0]["family"], "Sandboxtest");
    let r = h
        .get(&format!("{base}/fhir/r4/Patient?_id=a-{PID}.E-60178"))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert!(
        v["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains("ah-practice")
    );
    let r = h
        .get(&format!(
            "{base}/fhir/r4/Patient?_id=a-{PID}.E-60178&ah-practice=Organization/a-1.Practice-{PID}"
        ))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total"], 1);
    let r = h
        .get(&format!(
            "{base}/fhir/r4/Condition?ah-practice=Organization/a-1.Practice-{PID}"
        ))
        .await;
    assert_eq!(r.status(), 400, "patient required");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn bulk_export_end_to_end_with_split_files() {
    let h = Harness::start(SimConfig {
        export_polls: 2,
        export_max_lines: 3,
        export_retry_after: 0,
        ..Default::default()
    })
    .await;
    h.sim.state.generate(40);
    let base = &h.sim.base_url;
    let patients = h
        .sim
        .state
        .with_practice(PID, |p| p.patients.len())
        .unwrap();
    let kick = h
        .http
        .get(format!(
            "{base}/fhir/r4/Group/a-1.C-{PID}/$export?_type=Patient,Condition"
        ))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(kick.status(), 400, "Prefer: respond-async is required");
    let kick = h
        .http
        .get(format!(
            "{base}/fhir/r4/Group/a-1.C-{PID}/$export?_type=Patient,Condition"
        ))
        .bearer_auth(&h.token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(kick.status(), 202);
    let status_url = kick.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        let r = h.get(&status_url).await;
        assert_eq!(r.status(), 202);
        assert!(r.headers().contains_key("retry-after"));
        assert!(r.headers()["x-progress"].to_str().unwrap().ends_with('%'));
    }
    let r = h.get(&status_url).await;
    assert_eq!(r.status(), 200);
    let manifest: Value = r.json().await.unwrap();
    assert!(manifest["transactionTime"].is_string());
    assert!(manifest["request"].as_str().unwrap().contains("$export"));
    let output = manifest["output"].as_array().unwrap();
    let mut lines_by_type = std::collections::BTreeMap::<String, usize>::new();
    for o in output {
        let body = h
            .http
            .get(o["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
        assert!(lines.len() <= 3, "split at export_max_lines");
        assert_eq!(lines.len() as u64, o["count"].as_u64().unwrap());
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["resourceType"], o["type"]);
        }
        *lines_by_type
            .entry(o["type"].as_str().unwrap().to_string())
            .or_default() += lines.len();
    }
    assert_eq!(lines_by_type["Patient"], patients);
    assert!(output.len() >= patients.div_ceil(3));
    let r = h
        .http
        .delete(&status_url)
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(h.get(&status_url).await.status(), 404);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn clinical_searches_page_window_and_read_by_id() {
    let h = Harness::start(SimConfig::default()).await;
    let base = &h.sim.base_url;
    let practice = format!("ah-practice=Organization/a-1.Practice-{PID}");
    let patient = 60_178u64;
    for ty in athena_sim::clinical::CLINICAL_TYPES {
        let want = h
            .sim
            .state
            .with_practice(PID, |p| {
                athena_sim::api::fhir::resources(p, ty, Some(patient)).len()
            })
            .unwrap();
        assert!(want >= 1, "{ty} seeded for the patient");
        // Page through with _count=1: every resource once, then no next link.
        let mut url =
            format!("{base}/fhir/r4/{ty}?patient=a-{PID}.E-{patient}&{practice}&_count=1");
        let mut seen = Vec::new();
        for _ in 0..=want {
            let r = h.get(&url).await;
            assert_eq!(r.status(), 200, "{ty}");
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["type"], "searchset");
            assert_eq!(b["total"], want, "{ty}");
            for e in b["entry"].as_array().unwrap() {
                let res = &e["resource"];
                assert_eq!(res["resourceType"], *ty);
                let subject = ["subject", "patient", "beneficiary"]
                    .iter()
                    .find_map(|k| res[k]["reference"].as_str())
                    .unwrap();
                assert_eq!(subject, format!("Patient/a-{PID}.E-{patient}"));
                seen.push(res["id"].as_str().unwrap().to_string());
            }
            let next = b["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| l["url"].as_str().unwrap().to_string());
            match next {
                Some(n) => url = n,
                None => break,
            }
        }
        assert_eq!(seen.len(), want, "{ty}: {seen:?}");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), want, "{ty}: no resource twice");
        // Read by id.
        let r = h.get(&format!("{base}/fhir/r4/{ty}/{}", seen[0])).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], seen[0].as_str());
        let r = h
            .get(&format!("{base}/fhir/r4/{ty}/a-{PID}.nothing-1"))
            .await;
        assert_eq!(r.status(), 404);
    }
    // _lastUpdated windows: nothing after now, everything up to now.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let q = |bound: &str| {
        format!(
            "{base}/fhir/r4/Observation?patient=a-{PID}.E-{patient}&{practice}&_lastUpdated={bound}{later}"
        )
    };
    let ge: Value = h.get(&q("ge")).await.json().await.unwrap();
    assert_eq!(ge["total"], 0);
    let lt: Value = h.get(&q("lt")).await.json().await.unwrap();
    assert!(lt["total"].as_u64().unwrap() >= 1);
    assert_eq!(h.get(&q("xx")).await.status(), 400, "bad prefix");
    let bad = h
        .get(&format!(
            "{base}/fhir/r4/Observation?patient=a-{PID}.E-{patient}&{practice}&_count=x"
        ))
        .await;
    assert_eq!(bad.status(), 400);
    // Category filter (vitals vs labs).
    let vitals: Value = h
        .get(&format!(
            "{base}/fhir/r4/Observation?patient=a-{PID}.E-{patient}&{practice}&category=vital-signs"
        ))
        .await
        .json()
        .await
        .unwrap();
    let labs: Value = h
        .get(&format!(
            "{base}/fhir/r4/Observation?patient=a-{PID}.E-{patient}&{practice}&category=laboratory"
        ))
        .await
        .json()
        .await
        .unwrap();
    let all: Value = h
        .get(&format!(
            "{base}/fhir/r4/Observation?patient=a-{PID}.E-{patient}&{practice}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(vitals["total"].as_u64().unwrap() >= 1 && labs["total"].as_u64().unwrap() >= 1);
    assert_eq!(
        vitals["total"].as_u64().unwrap() + labs["total"].as_u64().unwrap(),
        all["total"].as_u64().unwrap()
    );
    h.sim.shutdown().await;
}

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

//! Changed Data Subscriptions: 403 before subscribing, destructive read, showprocessed window,
//! leaveunprocessed, filters, subscription delay and the offset paging hazard.

mod common;

use std::time::Duration;

use athena_sim::{NewPatient, SimConfig};
use chrono::{NaiveDate, Utc};
use chrono_tz::America::New_York;
use common::{Harness, PID, patient_form};
use serde_json::Value;

fn eastern(t: chrono::DateTime<Utc>) -> String {
    t.with_timezone(&New_York)
        .format("%m/%d/%Y %H:%M:%S")
        .to_string()
}

fn ids(v: &Value, key: &str, id: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[id].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn poll_without_subscription_is_a_json_403() {
    let h = Harness::start(SimConfig::default()).await;
    let r = h.get(&h.v1("/patients/changed")).await;
    assert_eq!(r.status(), 403);
    assert!(!r.headers().contains_key("x-mashery-error-code"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "Changed messages require setup (subscription) that has not been done."
    );
    let v = h.get_ok("/patients/changed/subscription").await;
    assert_eq!(v["status"], "INACTIVE");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn destructive_read_window_and_leaveunprocessed() {
    let h = Harness::start(SimConfig::default()).await;
    let before = h.sim.state.add_patient(PID, NewPatient::default());
    h.subscribe("patients").await;
    assert_eq!(
        h.get_ok("/patients/changed/subscription").await["status"],
        "ACTIVE"
    );
    let created = h
        .post_ok("/patients", &patient_form("Testa", "Feedperson"))
        .await;
    let pid = created[0]["patientid"].as_str().unwrap().to_string();

    let peek = h.get_ok("/patients/changed?leaveunprocessed=true").await;
    assert_eq!(
        ids(&peek, "patients", "patientid"),
        vec![pid.clone()],
        "only changes after subscribing: not {before}"
    );
    assert_eq!(peek["totalcount"], 1);
    let start = Utc::now() - chrono::Duration::seconds(2);
    let first = h.get_ok("/patients/changed").await;
    assert_eq!(
        ids(&first, "patients", "patientid"),
        vec![pid.clone()],
        "leaveunprocessed kept it"
    );
    assert!(first["patients"][0].get("eventname").is_none());
    assert!(
        first["patients"][0]["lastmodified"]
            .as_str()
            .unwrap()
            .contains('/')
    );
    let second = h.get_ok("/patients/changed").await;
    assert_eq!(
        second["patients"].as_array().unwrap().len(),
        0,
        "read once, gone"
    );
    assert_eq!(second["totalcount"], 0);

    let end = Utc::now() + chrono::Duration::seconds(2);
    let url = format!(
        "/patients/changed?showprocessedstartdatetime={}&showprocessedenddatetime={}",
        urlencode(&eastern(start)),
        urlencode(&eastern(end))
    );
    let replay = h.get_ok(&url).await;
    assert_eq!(ids(&replay, "patients", "patientid"), vec![pid.clone()]);
    // A window that ends before the read does not re-deliver.
    let old = format!(
        "/patients/changed?showprocessedstartdatetime={}&showprocessedenddatetime={}",
        urlencode(&eastern(start - chrono::Duration::hours(2))),
        urlencode(&eastern(start - chrono::Duration::hours(1)))
    );
    assert_eq!(
        h.get_ok(&old).await["patients"].as_array().unwrap().len(),
        0
    );
    h.sim.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20")
        .replace('/', "%2F")
        .replace(':', "%3A")
}

#[tokio::test]
async fn filters_by_department_and_patient() {
    let h = Harness::start(SimConfig::default()).await;
    h.subscribe("patients").await;
    let a = h.sim.state.add_patient(
        PID,
        NewPatient {
            department_id: "1".into(),
            ..NewPatient::new(
                "Testa",
                "Deptone",
                NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            )
        },
    );
    let b = h.sim.state.add_patient(
        PID,
        NewPatient {
            department_id: "21".into(),
            ..NewPatient::new(
                "Testa",
                "Depttwo",
                NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            )
        },
    );
    let v = h
        .get_ok("/patients/changed?leaveunprocessed=true&departmentid=21")
        .await;
    assert_eq!(ids(&v, "patients", "patientid"), vec![b.clone()]);
    let v = h
        .get_ok(&format!(
            "/patients/changed?leaveunprocessed=true&patientid={a}"
        ))
        .await;
    assert_eq!(ids(&v, "patients", "patientid"), vec![a]);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn subscription_delay_is_honoured() {
    let h = Harness::start(SimConfig {
        subscription_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    h.subscribe("patients").await;
    h.sim.state.add_patient(
        PID,
        NewPatient::new(
            "Testa",
            "Tooearly",
            NaiveDate::from_ymd_opt(1970, 5, 5).unwrap(),
        ),
    );
    let r = h.get(&h.v1("/patients/changed")).await;
    assert_eq!(r.status(), 403, "not effective yet");
    assert_eq!(
        h.get_ok("/patients/changed/subscription").await["status"],
        "INACTIVE"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let late = h.sim.state.add_patient(
        PID,
        NewPatient::new(
            "Testa",
            "Intime",
            NaiveDate::from_ymd_opt(1970, 5, 5).unwrap(),
        ),
    );
    let v = h.get_ok("/patients/changed").await;
    assert_eq!(
        ids(&v, "patients", "patientid"),
        vec![late],
        "only the change after the delay"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn event_and_department_subscriptions_filter_what_is_queued() {
    let h = Harness::start(SimConfig::default()).await;
    let v = h.get_ok("/appointments/changed/subscription/events").await;
    assert!(
        v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["eventname"] == "ScheduleAppointment")
    );
    h.post_ok(
        "/appointments/changed/subscription",
        &[("eventname", "AddAppointmentSlot"), ("departmentids", "1")],
    )
    .await;
    assert_eq!(
        h.get_ok("/appointments/changed/subscription").await["status"],
        "PARTIAL"
    );
    let day = NaiveDate::from_ymd_opt(2030, 1, 2).unwrap();
    let in_dept = h.sim.state.add_open_slots(PID, "1", "71", day, &["08:00"]);
    h.sim.state.add_open_slots(PID, "21", "72", day, &["08:00"]);
    let v = h.get_ok("/appointments/changed").await;
    assert_eq!(ids(&v, "appointments", "appointmentid"), in_dept);
    assert!(
        v["appointments"][0]["duration"].is_number(),
        "athena sends duration as a number"
    );
    let r = h
        .form(
            reqwest::Method::DELETE,
            &h.v1("/appointments/changed/subscription"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.get(&h.v1("/appointments/changed")).await.status(), 403);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn following_offset_after_a_destructive_page_skips_rows() {
    let h = Harness::start(SimConfig::default()).await;
    h.subscribe("patients").await;
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(h.sim.state.add_patient(
            PID,
            NewPatient::new(
                "Testa",
                &format!("Pager{i}"),
                NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
            ),
        ));
    }
    let p1 = h.get_ok("/patients/changed?limit=2").await;
    assert_eq!(p1["totalcount"], 5);
    let next = p1["next"].as_str().expect("next link").to_string();
    assert!(next.starts_with(&format!("/v1/{PID}/patients/changed?")));
    let p2: Value = h
        .get(&format!("{}{next}", h.sim.base_url))
        .await
        .json()
        .await
        .unwrap();
    let mut seen = ids(&p1, "patients", "patientid");
    seen.extend(ids(&p2, "patients", "patientid"));
    // The hazard: rows 3-4 were skipped (offset 2 over the 3 still-unprocessed rows).
    assert_eq!(seen, vec![all[0].clone(), all[1].clone(), all[4].clone()]);
    // Paging without offset gets the rest.
    let rest = h.get_ok("/patients/changed?limit=2").await;
    assert_eq!(
        ids(&rest, "patients", "patientid"),
        vec![all[2].clone(), all[3].clone()]
    );
    h.sim.shutdown().await;
}

//! Write endpoints: patients (match-then-create, validation), booking 409, cancel, check-in,
//! claims (no dedup on /claims, one claim per appointment), payments, documents, insurances,
//! and the ledger.

mod common;

use athena_sim::SimConfig;
use base64::Engine;
use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use common::{Harness, PID, patient_form};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn patient_create_matches_existing_and_validates() {
    let h = Harness::start(SimConfig::default()).await;
    let a = h
        .post_ok("/patients", &patient_form("Testa", "Matchperson"))
        .await;
    let b = h
        .post_ok("/patients", &patient_form("testa", "MATCHPERSON"))
        .await;
    assert_eq!(a[0]["patientid"], b[0]["patientid"], "match-then-create");
    let mut bypass = patient_form("Testa", "Matchperson");
    bypass.push(("bypasspatientmatching", "true"));
    let c = h.post_ok("/patients", &bypass).await;
    assert_ne!(a[0]["patientid"], c[0]["patientid"]);

    let r = h
        .form(
            Method::POST,
            &h.v1("/patients"),
            &[
                ("firstname", "Testa"),
                ("dob", "01/01/1990"),
                ("departmentid", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    let missing: Vec<&str> = v["missingfields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"lastname") && missing.contains(&"zip"),
        "{missing:?}"
    );

    let id = a[0]["patientid"].as_str().unwrap();
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/patients/{id}")),
            &[("mobilephone", "6175550100")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let got = h.get_ok(&format!("/patients/{id}")).await;
    assert_eq!(got[0]["mobilephone"], "6175550100");
    let best = h
        .get_ok(
            "/patients/enhancedbestmatch?firstname=Testa&lastname=Matchperson&dob=02%2F03%2F1981",
        )
        .await;
    assert_eq!(best.as_array().unwrap().len(), 2);
    // Scored: the candidate whose phone matches too comes first, with the higher score.
    let best = h
        .get_ok(
            "/patients/enhancedbestmatch?firstname=TESTA&lastname=matchperson&dob=02%2F03%2F1981&mobilephone=617-555-0100",
        )
        .await;
    let scores: Vec<u32> = best
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(best[0]["patientid"].as_str(), Some(id));
    assert!(scores.len() == 2 && scores[0] > scores[1], "{scores:?}");
    // A nickname-free other first name with only name and birth date is below the threshold.
    let none = h
        .get_ok("/patients/bestmatch?firstname=Zed&lastname=Matchperson&dob=02%2F03%2F1981")
        .await;
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");
    let ops: Vec<String> = h
        .sim
        .state
        .ledger()
        .iter()
        .map(|e| e.operation.clone())
        .collect();
    assert_eq!(
        ops,
        vec![
            "CreatePatient",
            "CreatePatient",
            "CreatePatient",
            "UpdatePatient"
        ]
    );
    h.sim.shutdown().await;
}

async fn book_one(h: &Harness) -> (String, String) {
    let patient = h
        .post_ok("/patients", &patient_form("Testa", "Booker"))
        .await[0]["patientid"]
        .as_str()
        .unwrap()
        .to_string();
    let day = (Utc::now() + ChronoDuration::days(3)).date_naive();
    let slot = h
        .sim
        .state
        .add_open_slots(PID, "1", "71", day, &["15:00"])
        .remove(0);
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/appointments/{slot}")),
            &[("patientid", &patient), ("appointmenttypeid", "82")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["appointmentstatus"], "f");
    (patient, slot)
}

#[tokio::test]
async fn booking_a_past_slot_is_refused() {
    let h = Harness::start(SimConfig::default()).await;
    let patient = h
        .post_ok("/patients", &patient_form("Testa", "Pastbooker"))
        .await[0]["patientid"]
        .as_str()
        .unwrap()
        .to_string();
    let yesterday = (Utc::now() - ChronoDuration::days(1)).date_naive();
    let past = h
        .sim
        .state
        .add_open_slots(PID, "1", "71", yesterday, &["10:00"])
        .remove(0);
    let form = [("patientid", patient.as_str()), ("appointmenttypeid", "82")];
    let r = h
        .form(Method::PUT, &h.v1(&format!("/appointments/{past}")), &form)
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("past"), "{v}");
    let one = h.get_ok(&format!("/appointments/{past}")).await;
    assert_eq!(one[0]["appointmentstatus"], "o", "nothing booked");
    // Rescheduling onto it is refused too; the booking stays where it was.
    let (patient, slot) = book_one(&h).await;
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/appointments/{slot}/reschedule")),
            &[("patientid", patient.as_str()), ("newappointmentid", &past)],
        )
        .await;
    assert_eq!(r.status(), 400);
    let one = h.get_ok(&format!("/appointments/{slot}")).await;
    assert_eq!(one[0]["appointmentstatus"], "f");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn booking_a_taken_slot_is_409_and_counts_requests() {
    let h = Harness::start(SimConfig::default()).await;
    let (patient, slot) = book_one(&h).await;
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/appointments/{slot}")),
            &[("patientid", &patient)],
        )
        .await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "That appointment time was already booked or not available for booking."
    );
    assert_eq!(
        h.sim
            .state
            .request_count("PUT", "/v1/{practiceid}/appointments/{appointmentid}"),
        2
    );
    let booked = h
        .get_ok(&format!("/appointments/booked?patientid={patient}"))
        .await;
    assert_eq!(booked["totalcount"], 1);
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/appointments/{slot}/cancel")),
            &[("patientid", &patient), ("appointmentcancelreasonid", "1")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "x");
    let one = h.get_ok(&format!("/appointments/{slot}")).await;
    assert_eq!(one[0]["appointmentstatus"], "x");
    let reasons = h.get_ok("/appointmentcancelreasons").await;
    assert!(
        reasons["appointmentcancelreasons"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn open_slots_create_and_reschedule() {
    let h = Harness::start(SimConfig::default()).await;
    let day = NaiveDate::from_ymd_opt(2031, 3, 4).unwrap();
    let v = h
        .post_ok(
            "/appointments/open",
            &[
                ("appointmentdate", "03/04/2031"),
                ("appointmenttime", "08:00,08:30"),
                ("departmentid", "21"),
                ("providerid", "72"),
            ],
        )
        .await;
    let created: Vec<String> = v["appointmentids"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(created.len(), 2);
    let open = h
        .get_ok("/appointments/open?departmentid=21&startdate=03/04/2031&enddate=03/04/2031")
        .await;
    assert_eq!(open["totalcount"], 2, "{open}");
    let _ = day;
    let (patient, slot) = book_one(&h).await;
    let r = h
        .form(
            Method::PUT,
            &h.v1(&format!("/appointments/{slot}/reschedule")),
            &[("patientid", &patient), ("newappointmentid", &created[0])],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["appointmentid"], created[0].as_str());
    assert_eq!(v[0]["rescheduledappointmentid"], slot.as_str());
    h.sim.shutdown().await;
}

async fn checked_in(h: &Harness) -> (String, String) {
    let (patient, slot) = book_one(h).await;
    h.post_ok(&format!("/appointments/{slot}/startcheckin"), &[])
        .await;
    let v = h
        .post_ok(&format!("/appointments/{slot}/checkin"), &[])
        .await;
    assert_eq!(v["success"], "true");
    (patient, slot)
}

#[tokio::test]
async fn appointment_claim_refuses_a_second_claim_and_requires_checkin() {
    let h = Harness::start(SimConfig::default()).await;
    let (_, booked_only) = book_one(&h).await;
    let charges = r#"[{"procedurecode":"99213","units":"1","icd10code1":"Z0000"}]"#;
    let v = h
        .post_ok(
            &format!("/appointments/{booked_only}/claim"),
            &[("claimcharges", charges)],
        )
        .await;
    assert_eq!(
        v["success"], "false",
        "not checked in: business failure as HTTP 200"
    );
    let (_, slot) = checked_in(&h).await;
    let v = h
        .post_ok(
            &format!("/appointments/{slot}/claim"),
            &[("claimcharges", charges)],
        )
        .await;
    assert_eq!(v["success"], true);
    assert_eq!(v["claimids"].as_array().unwrap().len(), 1);
    let again = h
        .post_ok(
            &format!("/appointments/{slot}/claim"),
            &[("claimcharges", charges)],
        )
        .await;
    assert_eq!(again["success"], "false");
    assert!(again["errormessage"].as_str().unwrap().contains("already"));
    let claims = h
        .sim
        .state
        .ledger()
        .iter()
        .filter(|e| e.operation == "CreateAppointmentClaim")
        .count();
    assert_eq!(claims, 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn standalone_claims_have_no_duplicate_guard_and_bad_charges_fail_with_200() {
    let h = Harness::start(SimConfig::default()).await;
    let patient = h
        .post_ok("/patients", &patient_form("Testa", "Claimant"))
        .await[0]["patientid"]
        .as_str()
        .unwrap()
        .to_string();
    let charges = r#"[{"procedurecode":"99213","units":"1","icd10code1":"Z0000"}]"#;
    let form = [
        ("patientid", patient.as_str()),
        ("departmentid", "1"),
        ("supervisingproviderid", "71"),
        ("claimcharges", charges),
    ];
    let a = h.post_ok("/claims", &form).await;
    let b = h.post_ok("/claims", &form).await;
    assert_eq!(a["success"], true);
    assert_ne!(
        a["claimids"][0], b["claimids"][0],
        "athena does not dedupe POST /claims"
    );
    let list = h.get_ok(&format!("/claims?patientid={patient}")).await;
    assert_eq!(list["totalcount"], 2);
    let id = a["claimids"][0].as_str().unwrap();
    assert_eq!(h.get_ok(&format!("/claims/{id}")).await[0]["claimid"], id);
    let bad_json = h
        .post_ok(
            "/claims",
            &[
                ("patientid", &patient),
                ("departmentid", "1"),
                ("supervisingproviderid", "71"),
                ("claimcharges", "[{"),
            ],
        )
        .await;
    assert_eq!(bad_json["success"], "false");
    let bad_code = h
        .post_ok(
            "/claims",
            &[
                ("patientid", &patient),
                ("departmentid", "1"),
                ("supervisingproviderid", "71"),
                (
                    "claimcharges",
                    r#"[{"procedurecode":"00000","icd10code1":"Z0000"}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(bad_code["success"], "false");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn payments_reject_duplicates_unless_allowed_and_only_test_cards() {
    let h = Harness::start(SimConfig::default()).await;
    let patient = h
        .post_ok("/patients", &patient_form("Testa", "Payer"))
        .await[0]["patientid"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/patients/{patient}/recordpayment");
    let form = [
        ("departmentid", "1"),
        ("paymentmethod", "CASH"),
        ("otheramount", "12.50"),
    ];
    let first = h.post_ok(&path, &form).await;
    assert_eq!(first[0]["success"], "true");
    let dup = h.post_ok(&path, &form).await;
    assert_eq!(dup["success"], "false");
    let mut allowed = form.to_vec();
    allowed.push(("allowduplicatepayments", "true"));
    assert_eq!(h.post_ok(&path, &allowed).await[0]["success"], "true");

    let card = |pan: &'static str| {
        vec![
            ("departmentid", "1"),
            ("accountnumber", pan),
            ("expirationmonthmm", "12"),
            ("expirationyearyyyy", "2030"),
            ("nameoncard", "Testa Payer"),
            ("billingzip", "02472"),
            ("otheramount", "5.00"),
        ]
    };
    let path = format!("/patients/{patient}/collectpayment");
    assert_eq!(
        h.post_ok(&path, &card("4111111111111111")).await["success"],
        "true"
    );
    assert_eq!(
        h.post_ok(&path, &card("4000123412341234")).await["success"],
        "false"
    );
    let entry = h
        .sim
        .state
        .ledger()
        .into_iter()
        .find(|e| e.operation == "CollectPayment")
        .unwrap();
    assert_eq!(
        entry.params["accountnumber"], "************1111",
        "PAN masked in the ledger"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn clinical_documents_and_insurances() {
    let h = Harness::start(SimConfig::default()).await;
    let patient = h
        .post_ok("/patients", &patient_form("Testa", "Documented"))
        .await[0]["patientid"]
        .as_str()
        .unwrap()
        .to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 synthetic");
    let path = format!("/patients/{patient}/documents/clinicaldocument");
    let v = h
        .post_ok(
            &path,
            &[
                ("departmentid", "1"),
                ("documentsubclass", "CLINICALDOCUMENT_CONSULTNOTE"),
                ("attachmentcontents", &b64),
                ("originalfilename", "consult"),
            ],
        )
        .await;
    assert_eq!(v["success"], true);
    assert!(v["clinicaldocumentid"].is_number());
    let list = h.get_ok(&path).await;
    assert_eq!(list["totalcount"], 1);
    let r = h
        .form(
            Method::POST,
            &h.v1(&path),
            &[
                ("departmentid", "1"),
                ("documentsubclass", "CLINICALDOCUMENT"),
                ("attachmentcontents", "!!notbase64"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);

    let ins = format!("/patients/{patient}/insurances");
    let holder = [
        ("insuranceidnumber", "SIM123"),
        ("insurancepolicyholderfirstname", "Testa"),
        ("insurancepolicyholderlastname", "Documented"),
        ("insurancepolicyholderdob", "02/03/1981"),
        ("insurancepolicyholdersex", "F"),
    ];
    let mut secondary = vec![("insurancepackageid", "1001"), ("sequencenumber", "2")];
    secondary.extend(holder);
    let r = h.form(Method::POST, &h.v1(&ins), &secondary).await;
    assert_eq!(r.status(), 400, "secondary without primary");
    let mut primary = vec![("insurancepackageid", "1001"), ("sequencenumber", "1")];
    primary.extend(holder);
    h.post_ok(&ins, &primary).await;
    h.post_ok(&ins, &secondary).await;
    assert_eq!(h.get_ok(&ins).await["totalcount"], 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn reference_lists_page_with_next_links() {
    let h = Harness::start(SimConfig::default()).await;
    // Follow `next` from a one-item page until it is absent, as a client does (§3.4).
    let mut url = h.v1("/appointmenttypes?limit=1");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let v: Value = h.get(&url).await.json().await.unwrap();
        pages += 1;
        assert_eq!(v["totalcount"], 2, "{v}");
        for t in v["appointmenttypes"].as_array().unwrap() {
            ids.push(t["appointmenttypeid"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&format!("/v1/{PID}/appointmenttypes?")),
                    "{next}"
                );
                url = format!("{}{next}", h.sim.base_url);
            }
            None => break,
        }
    }
    assert_eq!((pages, ids), (2, vec!["2".to_string(), "82".to_string()]));
    // Reasons need a department and a provider, like athena's.
    let r = h.get(&h.v1("/patientappointmentreasons")).await;
    assert_eq!(r.status(), 400);
    let v: Value = h
        .get(&h.v1("/patientappointmentreasons?departmentid=1&providerid=71"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["patientappointmentreasons"].as_array().unwrap().len(), 2);
    let v: Value = h
        .get(&h.v1("/insurancepackages?insurancepackagename=synthetic&limit=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["totalcount"], 2, "{v}");
    assert!(
        v["next"]
            .as_str()
            .unwrap()
            .contains("insurancepackagename=synthetic"),
        "{v}"
    );
    // Open slots page too: the first page of one slot links to the second.
    let v: Value = h
        .get(&h.v1("/appointments/open?departmentid=1&limit=1"))
        .await
        .json()
        .await
        .unwrap();
    let next = v["next"].as_str().expect("more than one open slot");
    assert!(
        next.contains("departmentid=1") && next.contains("offset=1"),
        "{next}"
    );
    h.sim.shutdown().await;
}

#[tokio::test]
async fn booking_needs_a_schedulable_type_or_reason() {
    let h = Harness::start(SimConfig::default()).await;
    let (patient, _) = book_one(&h).await;
    let day = (Utc::now() + ChronoDuration::days(4)).date_naive();
    let slot = h
        .sim
        .state
        .add_open_slots(PID, "1", "71", day, &["15:00"])
        .remove(0);
    let url = h.v1(&format!("/appointments/{slot}"));
    for (form, field) in [
        (vec![("patientid", patient.as_str())], "missingfields"),
        (
            vec![
                ("patientid", patient.as_str()),
                ("appointmenttypeid", "999"),
            ],
            "invalidfields",
        ),
        (
            vec![("patientid", patient.as_str()), ("reasonid", "5")],
            "invalidfields",
        ),
    ] {
        let r = h.form(Method::PUT, &url, &form).await;
        assert_eq!(r.status(), 400, "{form:?}");
        let v: Value = r.json().await.unwrap();
        assert!(!v[field].as_array().unwrap().is_empty(), "{form:?}: {v}");
    }
    // A reason from the list books (web scheduling).
    let r = h
        .form(
            Method::PUT,
            &url,
            &[("patientid", &patient), ("reasonid", "1082")],
        )
        .await;
    assert_eq!(r.status(), 200);
    h.sim.shutdown().await;
}

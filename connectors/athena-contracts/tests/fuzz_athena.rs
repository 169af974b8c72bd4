//! Fuzzing athena JSON rows to events: every feed's mapper (the feed table through
//! [`visit`]), [`changed_data_event`], [`from_athena`], `patient_from_athena`,
//! `appointment_from_athena` and [`parse_athena_time`], with arbitrary JSON and with
//! structure-aware records (athena's real keys, values of every JSON type, odd dates, DST hours,
//! huge strings). Properties: nothing panics, every mapped event encodes with its bundled Avro
//! schema and decodes back to itself (so one odd row can never fail at the producer), and ids
//! are stable. Bounded by `PROPTEST_CASES` (docs/testing.md).

mod common;

use athena_client::api::changed::Feed;
use athena_contracts::events::{EventTypeVisitor, FeedEvent, visit};
use athena_contracts::mapping::{
    MapContext, Observation, appointment_from_athena, changed_data_event, from_athena,
    patient_from_athena, record_event_id,
};
use athena_contracts::{SourceKind, TimestampMillis, parse_athena_time};
use proptest::prelude::*;
use serde_json::{Map, Value};

use common::{any_key, athena_datetime, config, iso_datetime, json, round_trip, scalar, text};

/// Every key a feed mapper reads (ids, dates, fields), so generated rows reach the mappers.
const ATHENA_KEYS: &[&str] = &[
    "address1",
    "address2",
    "administerdate",
    "admitdate",
    "allergenid",
    "allergenname",
    "allergyid",
    "appointmentid",
    "appointmentstatus",
    "appointmenttypeid",
    "billable",
    "cancelleddatetime",
    "cancelreasonid",
    "chargecodeid",
    "city",
    "claimid",
    "claimstatus",
    "code",
    "codeset",
    "criticality",
    "cvx",
    "date",
    "deactivatedate",
    "departmentid",
    "description",
    "dischargedate",
    "displayname",
    "dob",
    "documentclass",
    "documentid",
    "duration",
    "email",
    "encounterid",
    "enrollmentstatus",
    "enterpriseid",
    "events",
    "family",
    "familyhistoryid",
    "firstname",
    "homedepartment",
    "homephone",
    "imagingresultid",
    "insurancepackageid",
    "labresultid",
    "lastmodified",
    "lastmodifieddatetime",
    "lastupdated",
    "lastname",
    "medication",
    "medicationentryid",
    "medicationid",
    "middlename",
    "mobilephone",
    "name",
    "npi",
    "onsetdate",
    "orcaseid",
    "orderid",
    "ordertype",
    "paidamount",
    "patientcaseid",
    "patientid",
    "prescriptionid",
    "previouspatientids",
    "primaryproviderid",
    "problemid",
    "procedurecode",
    "providerid",
    "providernumbercategory",
    "providernumberid",
    "providertype",
    "referringproviderid",
    "referringprovidernumberid",
    "relation",
    "renderingproviderid",
    "rescheduledappointmentid",
    "scheduleddatetime",
    "servicedate",
    "sex",
    "specialty",
    "startdate",
    "starttime",
    "state",
    "status",
    "stayid",
    "stopdate",
    "supervisingproviderid",
    "surgerycaseid",
    "tietoorderid",
    "vaccineid",
    "visitid",
    "zip",
];

fn athena_key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => prop::sample::select(ATHENA_KEYS).prop_map(str::to_owned),
        1 => any_key(),
    ]
}

/// A value for an athena key: any JSON type, with dates and ids over-represented.
fn athena_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        2 => athena_datetime().prop_map(Value::String),
        1 => iso_datetime().prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => json(athena_key()),
        // `events: [{"startdate": ...}]` as problems carry it.
        1 => prop::collection::vec(
            prop::collection::vec(("startdate|eventtype|[a-z]{1,4}", scalar()), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            0..3
        )
        .prop_map(Value::Array),
    ]
}

/// A near-valid athena record: an object of athena's keys with random values.
fn athena_record() -> impl Strategy<Value = Value> {
    prop::collection::vec((athena_key(), athena_value()), 0..24)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// Maps `rec` through one feed's event type on every path and checks the result.
struct CheckFeed<'a> {
    rec: &'a Value,
}

impl EventTypeVisitor for CheckFeed<'_> {
    type Output = Result<(), TestCaseError>;

    fn visit<T: FeedEvent>(self) -> Self::Output {
        let ctx = MapContext {
            practice_id: "195900",
            observed_at: TimestampMillis(1),
            replayed: false,
            keep_original: true,
        };
        let (ev, changed_at) = changed_data_event::<T>(&ctx, self.rec);
        let env = ev.envelope();
        prop_assert!(!env.entity_id.is_empty());
        prop_assert_eq!(env.changed_at, changed_at.map(TimestampMillis::from));
        prop_assert_eq!(&env.event_id, &record_event_id::<T>("195900", self.rec));
        round_trip(&ev)?;
        let obs = Observation {
            source: SourceKind::FhirPush,
            event_name: Some("x".into()),
            snapshot: false,
            include_original: false,
        };
        match from_athena::<T>("195900", self.rec, &obs) {
            Some(pushed) => {
                // Same record, same id whichever path saw it.
                prop_assert_eq!(&pushed.envelope().event_id, &env.event_id);
                round_trip(&pushed)?;
            }
            None => prop_assert!(env.entity_id.starts_with("unknown-")),
        }
        Ok(())
    }
}

fn check_all_feeds(rec: &Value) -> Result<(), TestCaseError> {
    for feed in Feed::ALL {
        visit(feed, CheckFeed { rec })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary JSON (not only objects) through every feed's mapper.
    #[test]
    fn any_json_maps_on_every_feed(rec in json(any_key())) {
        check_all_feeds(&rec)?;
    }

    /// Near-valid athena records through every feed's mapper and both push entry points.
    #[test]
    fn athena_records_map_on_every_feed(rec in athena_record()) {
        check_all_feeds(&rec)?;
        let obs = Observation {
            source: SourceKind::BulkExport,
            event_name: None,
            snapshot: true,
            include_original: true,
        };
        if let Some(p) = patient_from_athena("1", &rec, &obs) {
            round_trip(&p)?;
        }
        if let Some(a) = appointment_from_athena("1", &rec, &obs) {
            round_trip(&a)?;
        }
    }

    /// athena's timestamps: odd, out-of-range, DST-gap and ISO strings parse or give None.
    #[test]
    fn athena_times_parse_or_are_absent(s in prop_oneof![athena_datetime(), iso_datetime(), text()]) {
        if let Some(t) = parse_athena_time(&s) {
            // Whatever parsed must fit the Avro timestamp-millis the events carry.
            let ms = TimestampMillis::from(t);
            prop_assert_eq!(ms.0, t.timestamp_millis());
            prop_assert!(ms.to_datetime().is_some());
        }
    }
}

/// Cases the fuzzing found or that sit on an edge, kept as plain regression tests.
#[test]
fn edge_times() {
    // Out of range parts are not a time.
    assert_eq!(parse_athena_time("02/30/2024 25:61:00"), None);
    // Spring-forward gap: read as EST.
    assert_eq!(
        parse_athena_time("03/10/2024 02:30:00").map(|t| t.to_rfc3339()),
        Some("2024-03-10T07:30:00+00:00".into())
    );
    // The end of chrono's range neither panics nor wraps.
    for s in ["12/31/262142 23:59:59", "01/01/-262143 00:00:00"] {
        let _ = parse_athena_time(s);
    }
}

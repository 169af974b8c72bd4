//! Avro logical-type newtypes and the one parser of athena's timestamps.

use athena_client::model::de;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use serde::{Deserialize, Serialize};

/// Avro `timestamp-millis`: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimestampMillis(pub i64);

impl TimestampMillis {
    /// The current time.
    pub fn now() -> Self {
        Utc::now().into()
    }
    /// As a chrono UTC time (None when out of chrono's range).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0)
    }
}

impl From<DateTime<Utc>> for TimestampMillis {
    fn from(t: DateTime<Utc>) -> Self {
        TimestampMillis(t.timestamp_millis())
    }
}

/// Avro `date`: days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Date(pub i32);

impl From<NaiveDate> for Date {
    fn from(d: NaiveDate) -> Self {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch");
        // Dates a real EHR holds fit comfortably in i32 days.
        Date(d.signed_duration_since(epoch).num_days() as i32)
    }
}

impl Date {
    /// As a chrono date.
    pub fn to_naive(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::Duration::days(i64::from(self.0)))
    }
}

/// Parses athena's timestamps to UTC: `MM/DD/YYYY HH:MM[:SS]` is US Eastern wall time (the
/// earlier instant when a fall-back hour makes it ambiguous); ISO 8601 carries its own offset.
/// Every path (changed data, push inflation and catch-up, backfill) reads athena times with this
/// one function, so one record gives one `changed_at` whichever path saw it.
pub fn parse_athena_time(s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = de::parse_iso_datetime(s) {
        return Some(t.with_timezone(&Utc));
    }
    let local: NaiveDateTime = de::parse_datetime(s)?;
    New_York
        .from_local_datetime(&local)
        .earliest()
        // A spring-forward gap time does not exist in Eastern; read it as EST (-5h).
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| Some(Utc.from_utc_datetime(&(local + chrono::Duration::hours(5)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_and_timestamp_conversions() {
        let d = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
        let days = Date::from(d);
        assert_eq!(days.0, 7305);
        assert_eq!(days.to_naive(), Some(d));
        let t = DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
        assert_eq!(TimestampMillis::from(t).to_datetime(), Some(t));
    }

    #[test]
    fn eastern_times_parse_across_dst() {
        let t = |s| parse_athena_time(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("01/15/2024 12:30:00").as_deref(),
            Some("2024-01-15T17:30:00+00:00")
        );
        assert_eq!(
            t("07/04/2024 12:00:00").as_deref(),
            Some("2024-07-04T16:00:00+00:00")
        );
        // Fall back: 01:30 happens twice; the earlier (EDT) instant is taken.
        assert_eq!(
            t("11/03/2024 01:30:00").as_deref(),
            Some("2024-11-03T05:30:00+00:00")
        );
        // Spring forward: 02:30 does not exist in Eastern; read as EST.
        assert_eq!(
            t("03/10/2024 02:30:00").as_deref(),
            Some("2024-03-10T07:30:00+00:00")
        );
        assert_eq!(
            t("2023-08-10T14:53:55-04:00").as_deref(),
            Some("2023-08-10T18:53:55+00:00")
        );
        assert_eq!(t("garbage"), None);
    }
}

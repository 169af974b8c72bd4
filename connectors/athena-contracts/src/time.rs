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
    // The common shape first, without chrono's format-string parser (it parses the format on
    // every call: a few percent of the changed-data source's CPU, twice per row). It cannot be
    // ISO 8601, and whatever it does not accept goes the general way below.
    let local = match us_datetime(s) {
        Some(local) => local,
        None => {
            if let Some(t) = de::parse_iso_datetime(s) {
                return Some(t.with_timezone(&Utc));
            }
            de::parse_datetime(s)?
        }
    };
    New_York
        .from_local_datetime(&local)
        .earliest()
        // A spring-forward gap time does not exist in Eastern; read it as EST (-5h).
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| Some(Utc.from_utc_datetime(&(local + chrono::Duration::hours(5)))))
}

/// Exactly `MM/DD/YYYY HH:MM:SS` (ASCII digits, a valid date and time), else `None`.
fn us_datetime(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[2] != b'/'
        || b[5] != b'/'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| digits(&b[from..to]);
    us_date(&s[..10])?.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)
}

/// Exactly `MM/DD/YYYY` (ASCII digits, a valid date), else `None`: the common shape of athena's
/// dates without chrono's format-string parser.
pub(crate) fn us_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[2] != b'/' || b[5] != b'/' {
        return None;
    }
    let year = i32::try_from(digits(&b[6..10])?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(&b[0..2])?, digits(&b[3..5])?)
}

/// The number written in `b`, all ASCII digits.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
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

    #[test]
    fn the_fast_path_agrees_with_chrono() {
        for s in [
            "01/15/2024 12:30:00",
            "12/31/1999 23:59:59",
            "02/29/2024 00:00:00",
            "02/30/2024 00:00:00",
            "13/01/2024 00:00:00",
            "01/01/2024 24:00:00",
            "01/01/2024 12:00:60",
            "1a/01/2024 12:00:00",
            "01-01-2024 12:00:00",
            "01/01/2024T12:00:00",
            "+1/01/2024 12:00:00",
            "01/01/2024 12:00",
            " 01/01/2024 12:00:00",
        ] {
            let fast = us_datetime(s);
            // Where the fast path answers, chrono gives the same; elsewhere chrono decides.
            assert!(fast.is_none() || fast == de::parse_datetime(s), "{s}");
            assert_eq!(
                parse_athena_time(s),
                de::parse_datetime(s).and_then(|l| New_York
                    .from_local_datetime(&l)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))),
                "{s}"
            );
        }
        assert!(us_datetime("01/15/2024 12:30:00").is_some());
        for s in [
            "01/15/2024",
            "02/29/2023",
            "00/10/2024",
            "1/15/2024 ",
            "2024-01-15",
            "01/1x/2024",
        ] {
            let fast = us_date(s);
            assert!(fast.is_none() || fast == de::parse_date(s), "{s}");
        }
        assert!(us_date("01/15/2024").is_some());
    }
}

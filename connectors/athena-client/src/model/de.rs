//! Lenient serde helpers for athena's loosely typed JSON.
//!
//! athena returns ids as strings in one payload and numbers in the next, booleans as `true` or `"true"`,
//! single records wrapped in one-element arrays, and dates as `MM/DD/YYYY`. These helpers accept every
//! observed form so a release that flips a type does not take a connector down. Use them with
//! `#[serde(deserialize_with = "...")]` (and `default` for the `opt_*` ones).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

/// Whether a JSON value means "true" in athena's dialect (`true`, `"true"`, `"Y"`, `1`, `"1"`).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "t" | "y" | "yes" | "1"
        ),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

/// The textual form of an id-like value: strings as-is, numbers printed, `null` as `None`.
pub fn value_to_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An id sent as a string or a number, always as `String`.
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    value_to_id(&v).ok_or_else(|| serde::de::Error::custom("expected a string or number id"))
}

/// Optional [`string_or_number`]: `null`, missing (with `#[serde(default)]`) and `""` become `None`.
pub fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(value_to_id).filter(|s| !s.is_empty()))
}

/// A boolean sent as `true`, `"true"`, `"Y"`, `1`...
pub fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(truthy(&Value::deserialize(d)?))
}

/// Optional [`bool_lenient`].
pub fn opt_bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .filter(|v| !v.is_null())
        .map(|v| truthy(&v)))
}

/// An unsigned number sent as a number or a numeric string.
pub fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A list that athena may send as a single value, an array, or a comma-separated string of ids.
pub fn string_list_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(value_to_id).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(other) => value_to_id(&other).into_iter().collect(),
    })
}

/// Decode `T` from either `T` or a one-element (or longer: first wins) array of `T`.
pub fn one_or_first<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    match v {
        Value::Array(mut a) if !a.is_empty() => serde_json::from_value(a.swap_remove(0)),
        other => serde_json::from_value(other),
    }
}

/// Decode a list that may also come as a single object.
pub fn one_or_many<T: DeserializeOwned>(v: Value) -> Result<Vec<T>, serde_json::Error> {
    match v {
        Value::Array(_) => serde_json::from_value(v),
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![serde_json::from_value(other)?]),
    }
}

/// Parse athena's `MM/DD/YYYY` date (also accepts ISO `YYYY-MM-DD`).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%m/%d/%Y")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        .ok()
}

/// Format a date the way athena wants it in requests: `MM/DD/YYYY`.
pub fn format_date(d: NaiveDate) -> String {
    d.format("%m/%d/%Y").to_string()
}

/// Parse a department-local `HH:MM` (or `HH:MM:SS`) time.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .ok()
}

/// Parse athena's local `MM/DD/YYYY HH:MM:SS` timestamp (also `MM/DD/YYYY HH:MM`).
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%m/%d/%Y %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%m/%d/%Y %H:%M"))
        .ok()
}

/// Parse the newer ISO-8601-with-offset timestamps (`2023-08-10T14:53:55-04:00`).
pub fn parse_iso_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s.trim()).ok()
}

/// Optional `MM/DD/YYYY` date; unparseable or empty values become `None` rather than failing the record.
pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| v.as_str().and_then(parse_date)))
}

/// Optional `HH:MM` time; unparseable values become `None`.
pub fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| v.as_str().and_then(parse_time)))
}

/// Optional `MM/DD/YYYY HH:MM:SS` timestamp; unparseable values become `None`.
pub fn opt_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.and_then(|v| v.as_str().and_then(parse_datetime)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Rec {
        #[serde(deserialize_with = "string_or_number")]
        id: String,
        #[serde(default, deserialize_with = "opt_string_or_number")]
        other: Option<String>,
        #[serde(default, deserialize_with = "opt_bool_lenient")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "opt_date")]
        date: Option<NaiveDate>,
        #[serde(default, deserialize_with = "opt_datetime")]
        at: Option<NaiveDateTime>,
        #[serde(default, deserialize_with = "string_list_lenient")]
        ids: Vec<String>,
    }

    #[test]
    fn ids_as_string_or_number() {
        let a: Rec = serde_json::from_str(r#"{"id":"3132","unknown":{"x":1}}"#).unwrap();
        let b: Rec = serde_json::from_str(r#"{"id":2204083,"other":15}"#).unwrap();
        assert_eq!(a.id, "3132");
        assert_eq!(b.id, "2204083");
        assert_eq!(b.other.as_deref(), Some("15"));
        assert!(a.other.is_none());
        assert!(serde_json::from_str::<Rec>(r#"{"id":null}"#).is_err());
    }

    #[test]
    fn booleans_and_lists() {
        let r: Rec = serde_json::from_str(r#"{"id":1,"flag":"true","ids":"1, 2"}"#).unwrap();
        assert_eq!(r.flag, Some(true));
        assert_eq!(r.ids, vec!["1", "2"]);
        let r: Rec = serde_json::from_str(r#"{"id":1,"flag":false,"ids":[3,"4"]}"#).unwrap();
        assert_eq!(r.flag, Some(false));
        assert_eq!(r.ids, vec!["3", "4"]);
        assert!(truthy(&serde_json::json!("Y")));
        assert!(!truthy(&serde_json::json!("false")));
    }

    #[test]
    fn dates_and_times() {
        let r: Rec =
            serde_json::from_str(r#"{"id":1,"date":"06/02/2020","at":"06/02/2020 09:06:50"}"#)
                .unwrap();
        assert_eq!(r.date, NaiveDate::from_ymd_opt(2020, 6, 2));
        assert_eq!(r.at.unwrap().to_string(), "2020-06-02 09:06:50");
        let r: Rec = serde_json::from_str(r#"{"id":1,"date":"garbage"}"#).unwrap();
        assert_eq!(r.date, None);
        assert_eq!(parse_time("10:00"), NaiveTime::from_hms_opt(10, 0, 0));
        assert_eq!(
            format_date(NaiveDate::from_ymd_opt(2024, 1, 5).unwrap()),
            "01/05/2024"
        );
        assert!(parse_iso_datetime("2023-08-10T14:53:55-04:00").is_some());
    }

    #[test]
    fn one_element_arrays() {
        #[derive(Deserialize)]
        struct P {
            #[serde(deserialize_with = "string_or_number")]
            patientid: String,
        }
        let p: P = one_or_first(serde_json::json!([{"patientid":"5309"}])).unwrap();
        assert_eq!(p.patientid, "5309");
        let p: P = one_or_first(serde_json::json!({"patientid":5309})).unwrap();
        assert_eq!(p.patientid, "5309");
        let v: Vec<P> = one_or_many(serde_json::json!({"patientid":1})).unwrap();
        assert_eq!(v.len(), 1);
    }
}

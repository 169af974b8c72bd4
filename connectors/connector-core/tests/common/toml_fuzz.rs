//! Generators for fuzzing config loading: random TOML values (every TOML type, `${VAR}`
//! interpolation forms, durations, URLs), near-valid documents made by mutating a valid one
//! (replace a value with another type, remove a key, add an unknown key, garble the text), and
//! random environments (interpolated variables and `ATHENA_CONNECT__A__B` overrides). Shared by
//! `connector-core/tests/fuzz_config.rs` and `athena-connect/tests/fuzz_config.rs` (included
//! there by path, so both fuzz the loader with the same generators and the same property).

#![allow(dead_code)] // each including test uses a subset

use std::collections::BTreeMap;

use connector_core::CoreError;
use proptest::prelude::*;
use proptest::sample::Index;

/// A load's result is `Ok`, or a config error naming a key; anything else fails the case.
pub fn names_a_key(result: Result<(), CoreError>) -> Result<(), TestCaseError> {
    match result {
        Ok(()) => {}
        Err(CoreError::Config { key, message }) => {
            prop_assert!(!key.is_empty(), "an error without a key: {}", message);
        }
        Err(other) => prop_assert!(false, "not a config error: {}", other),
    }
    Ok(())
}

/// Variable names the generated strings reference and the generated environment sets.
pub const VARS: &[&str] = &["A", "B_1", "SECRET", "EMPTY", "X"];

fn var() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VARS).prop_map(str::to_owned),
        1 => "[A-Za-z_:-]{0,6}",
    ]
}

/// A string value with interpolation in every form the loader knows, and broken ones.
pub fn string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => ".{0,16}",
        2 => (".{0,4}", var(), ".{0,4}").prop_map(|(a, v, b)| format!("{a}${{{v}}}{b}")),
        2 => (var(), ".{0,8}").prop_map(|(v, d)| format!("${{{v}:-{d}}}")),
        1 => (".{0,4}", var()).prop_map(|(a, v)| format!("{a}${{{v}")), // unterminated
        1 => Just("$${literal} $ $$ ${}".to_string()),
        2 => ("[0-9]{1,6}", "ms|s|m|h|d|x|").prop_map(|(n, u)| format!("{n}{u}")),
        2 => ("https?|ftp|", "[a-z0-9.]{0,10}", "[0-9]{0,6}", "[a-z/]{0,8}")
            .prop_map(|(s, h, p, path)| format!("{s}://{h}:{p}/{path}")),
        1 => ("[0-9.]{1,15}", "[0-9]{0,6}").prop_map(|(h, p)| format!("{h}:{p}")),
    ]
    .boxed()
}

/// Any TOML value (scalars, datetimes, arrays, inline tables), a few levels deep.
pub fn value() -> BoxedStrategy<toml::Value> {
    let leaf = prop_oneof![
        4 => string().prop_map(toml::Value::String),
        2 => any::<i64>().prop_map(toml::Value::Integer),
        1 => (-5i64..100_000).prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => prop::sample::select(vec!["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"])
            .prop_map(|d| toml::Value::Datetime(d.parse().expect("valid TOML datetime"))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A key: usually a plausible config word, sometimes anything (quoted in the output).
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z_]{1,12}", 1 => ".{0,6}"]
}

/// One edit of a document.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the value at the picked path.
    Replace(Index, toml::Value),
    /// Remove the picked key.
    Remove(Index),
    /// Add an unknown key to the picked table.
    Add(Index, String, toml::Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), key(), value()).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
    ]
}

/// Every path (key segments) in `t`, tables included, in a stable order.
fn paths(t: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in t {
        prefix.push(k.clone());
        out.push(prefix.clone());
        if let toml::Value::Table(sub) = v {
            paths(sub, prefix, out);
        }
        prefix.pop();
    }
}

fn table_at<'a>(t: &'a mut toml::Table, path: &[String]) -> Option<&'a mut toml::Table> {
    let mut cur = t;
    for seg in path {
        cur = cur.get_mut(seg)?.as_table_mut()?;
    }
    Some(cur)
}

/// `base` with `edits` applied.
pub fn apply(base: &toml::Table, edits: &[Edit]) -> toml::Table {
    let mut t = base.clone();
    for e in edits {
        let mut all = Vec::new();
        paths(&t, &mut Vec::new(), &mut all);
        let pick = |i: &Index| (!all.is_empty()).then(|| all[i.index(all.len())].clone());
        match e {
            Edit::Replace(i, v) | Edit::Add(i, _, v) => {
                let Some(p) = pick(i) else { continue };
                let (last, parent) = p.split_last().expect("paths are non-empty");
                if let Edit::Add(_, k, _) = e {
                    // Into the picked table, or beside the picked value.
                    let target = table_at(&mut t, &p).map(|_| p.as_slice()).unwrap_or(parent);
                    if let Some(tab) = table_at(&mut t, target) {
                        tab.insert(k.clone(), v.clone());
                    }
                } else if let Some(tab) = table_at(&mut t, parent) {
                    tab.insert(last.clone(), v.clone());
                }
            }
            Edit::Remove(i) => {
                let Some(p) = pick(i) else { continue };
                let (last, parent) = p.split_last().expect("paths are non-empty");
                if let Some(tab) = table_at(&mut t, parent) {
                    tab.remove(last);
                }
            }
        }
    }
    t
}

/// A near-valid document: `base` edited, as TOML text, sometimes garbled at the byte level.
pub fn document(base: toml::Table) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(edit(), 0..5),
        prop::option::weighted(0.25, (any::<Index>(), ".{0,3}")),
    )
        .prop_map(move |(edits, garble)| {
            let mut text = toml::to_string(&apply(&base, &edits)).unwrap_or_default();
            if let Some((at, junk)) = garble {
                let mut cut = at.index(text.len() + 1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.insert_str(cut, &junk);
            }
            text
        })
}

/// An environment: some of [`VARS`] set, and overrides `{prefix}__SEG__SEG` over `sections`
/// and random segments (empty ones included) with TOML-ish or plain values.
pub fn env(
    prefix: &'static str,
    sections: &'static [&'static str],
) -> impl Strategy<Value = BTreeMap<String, String>> {
    let segment = prop_oneof![
        3 => prop::sample::select(sections).prop_map(str::to_uppercase),
        2 => "[A-Z_]{0,10}",
        1 => Just(String::new()),
    ];
    let val = prop_oneof![
        3 => string(),
        1 => value().prop_map(|v| v.to_string()),
    ];
    (
        prop::collection::btree_map(
            prop::sample::select(VARS).prop_map(str::to_owned),
            val.clone(),
            0..5,
        ),
        prop::collection::vec((prop::collection::vec(segment, 1..4), val), 0..3),
    )
        .prop_map(move |(mut vars, overrides)| {
            for (segs, v) in overrides {
                vars.insert(format!("{prefix}__{}", segs.join("__")), v);
            }
            vars
        })
}

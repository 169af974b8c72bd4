//! Loading configuration: one TOML file, `${VAR}` interpolation, environment overrides, and a
//! deserialisation that names the dotted key that failed.
//!
//! Order of precedence: environment override > file value > struct default.
//!
//! - Interpolation: any string value may contain `${VAR}` or `${VAR:-default}`; `$${` escapes a
//!   literal `${`. An unset variable without a default is an error naming the key.
//! - Overrides: `ATHENA_CONNECT__KAFKA__BOOTSTRAP_SERVERS=host:9092` sets
//!   `kafka.bootstrap_servers`. Segments are lower-cased. The value is read as a TOML value when
//!   it parses as one (`5`, `true`, `["a","b"]`) and as a string otherwise.
//! - Structs use `#[serde(deny_unknown_fields)]`, so a typo is an error naming the key, not a
//!   silently ignored setting.
//!
//! Loading does I/O (reading the file and secret files); [`Validate`] is the pure check that
//! follows, and connectivity is tested by the `check` command, never here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::CoreError;

/// The default environment prefix for overrides.
pub const ENV_PREFIX: &str = "ATHENA_CONNECT";

/// A pure validation step run after loading; it names the dotted key it rejects.
pub trait Validate {
    /// Checks invariants that the types alone cannot express. Does no I/O.
    fn validate(&self) -> Result<(), CoreError>;
}

/// Loads `path` with interpolation and overrides taken from the process environment.
pub fn load_file<T: DeserializeOwned>(path: &Path, prefix: &str) -> Result<T, CoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| CoreError::ConfigRead {
        path: path.display().to_string(),
        source,
    })?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_str(&text, &env, prefix)
}

/// Loads a TOML document with interpolation and overrides from `env` (pure; used by tests and by
/// [`load_file`]).
pub fn load_str<T: DeserializeOwned>(
    text: &str,
    env: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<T, CoreError> {
    let mut root: toml::Table = toml::from_str(text).map_err(|e| {
        // toml's message carries line/column; the span is the best "key" we have here.
        CoreError::config(
            "<file>",
            e.message().to_string() + &location(text, e.span()),
        )
    })?;
    apply_overrides(&mut root, env, prefix)?;
    let mut value = toml::Value::Table(root);
    interpolate(&mut value, env, &mut Vec::new())?;
    let de = value;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = dotted(e.path());
        CoreError::config(key, e.into_inner().to_string())
    })
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].lines().count().max(1);
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn dotted(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." || s.is_empty() {
        "<root>".to_string()
    } else {
        s
    }
}

fn apply_overrides(
    root: &mut toml::Table,
    env: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<(), CoreError> {
    let marker = format!("{prefix}__");
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(&marker) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(CoreError::config(
                name.clone(),
                "environment override has an empty segment",
            ));
        }
        let value = parse_scalar(raw);
        let mut table = &mut *root;
        for seg in &segments[..segments.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(CoreError::config(
                        segments.join("."),
                        format!("environment override {name} descends into a non-table value"),
                    ));
                }
            };
        }
        table.insert(segments[segments.len() - 1].clone(), value);
    }
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    #[derive(serde::Deserialize)]
    struct Wrap {
        v: toml::Value,
    }
    match toml::from_str::<Wrap>(&format!("v = {raw}")) {
        Ok(w) => w.v,
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn interpolate(
    value: &mut toml::Value,
    env: &BTreeMap<String, String>,
    path: &mut Vec<String>,
) -> Result<(), CoreError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|m| CoreError::config(path.join("."), m))?;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(k.clone());
                interpolate(v, env, path)?;
                path.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate(v, env, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` / `${VAR:-default}`; `$${` is a literal `${`.
fn expand(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ in value".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (env.get(name), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                // Name the variable, never a value.
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        kafka: Kafka,
        #[serde(default)]
        feeds: BTreeMap<String, Feed>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        bootstrap_servers: String,
        #[serde(default)]
        linger_ms: u32,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Feed {
        #[serde(with = "humantime_serde")]
        poll_interval: Duration,
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn interpolation_and_overrides() {
        let text = r#"
            [kafka]
            bootstrap_servers = "${BROKER:-localhost:9092}"
            [feeds.patients]
            poll_interval = "30s"
        "#;
        let r: Root = load_str(text, &env(&[]), "X").unwrap();
        assert_eq!(r.kafka.bootstrap_servers, "localhost:9092");
        let r: Root = load_str(
            text,
            &env(&[
                ("BROKER", "b:1"),
                ("X__KAFKA__LINGER_MS", "7"),
                ("X__FEEDS__PATIENTS__POLL_INTERVAL", "5s"),
            ]),
            "X",
        )
        .unwrap();
        assert_eq!(r.kafka.bootstrap_servers, "b:1");
        assert_eq!(r.kafka.linger_ms, 7);
        assert_eq!(r.feeds["patients"].poll_interval, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_dotted_key() {
        let text =
            "[kafka]\nbootstrap_servers = \"a\"\n[feeds.patients]\npoll_interval = \"soon\"\n";
        let err = load_str::<Root>(text, &env(&[]), "X").unwrap_err();
        assert!(
            err.to_string().contains("feeds.patients.poll_interval"),
            "{err}"
        );

        let text = "[kafka]\nbootstrap_servers = \"a\"\nbootstrap_server = \"typo\"\n";
        let err = load_str::<Root>(text, &env(&[]), "X").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("kafka") && msg.contains("bootstrap_server"),
            "{msg}"
        );

        let text = "[kafka]\nbootstrap_servers = \"${NOPE}\"\n";
        let err = load_str::<Root>(text, &env(&[]), "X").unwrap_err();
        assert!(
            err.to_string().contains("kafka.bootstrap_servers") && err.to_string().contains("NOPE"),
            "{err}"
        );
    }

    #[test]
    fn expand_escapes() {
        let e = env(&[("A", "1")]);
        assert_eq!(expand("x${A}y$${A}z$", &e).unwrap(), "x1y${A}z$");
    }
}

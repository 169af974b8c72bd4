//! Every example under `schemas/examples/` is a valid instance of its schema, and every
//! top-level schema has at least one example. Generic: the JSON is converted to an Avro value
//! guided by the schema (no Rust type needed), validated, encoded and decoded back.
//!
//! Example files are named `<SchemaName>.json` or `<SchemaName>.<variant>.json` and hold the
//! plain JSON form of the record (unions unwrapped, timestamps as epoch milliseconds, dates as
//! days since the epoch).

use std::collections::BTreeSet;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;
use connector_core::avro::Catalog;
use serde_json::Value as Json;

fn to_avro(
    json: &Json,
    schema: &Schema,
    names: &std::collections::HashMap<Name, Schema>,
) -> Result<Value, String> {
    Ok(match (schema, json) {
        (Schema::Ref { name }, _) => {
            let s = names
                .get(name)
                .ok_or_else(|| format!("unknown ref {name:?}"))?;
            to_avro(json, s, names)?
        }
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Schema::Int, Json::Number(n)) => Value::Int(int(n)?),
        (Schema::Date, Json::Number(n)) => Value::Date(int(n)?),
        (Schema::Long, Json::Number(n)) => Value::Long(long(n)?),
        (Schema::TimestampMillis, Json::Number(n)) => Value::TimestampMillis(long(n)?),
        (Schema::TimestampMicros, Json::Number(n)) => Value::TimestampMicros(long(n)?),
        (Schema::Float, Json::Number(n)) => Value::Float(n.as_f64().ok_or("float")? as f32),
        (Schema::Double, Json::Number(n)) => Value::Double(n.as_f64().ok_or("double")?),
        (Schema::String, Json::String(s)) => Value::String(s.clone()),
        (Schema::Bytes, Json::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        (Schema::Enum(e), Json::String(s)) => {
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| format!("{s} is not a symbol of {}", e.name))?;
            Value::Enum(i as u32, s.clone())
        }
        (Schema::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| to_avro(i, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(m), Json::Object(o)) => Value::Map(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), to_avro(v, &m.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Schema::Union(u), _) => {
            let mut last = String::new();
            for (i, variant) in u.variants().iter().enumerate() {
                match to_avro(json, variant, names) {
                    Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                    Err(e) => last = e,
                }
            }
            return Err(format!("no union branch fits {json}: {last}"));
        }
        (Schema::Record(r), Json::Object(o)) => {
            let known: BTreeSet<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
            if let Some(extra) = o.keys().find(|k| !known.contains(k.as_str())) {
                return Err(format!("{}: unknown field {extra}", r.name));
            }
            let mut fields = Vec::new();
            for f in &r.fields {
                let v = match o.get(&f.name) {
                    Some(v) => v.clone(),
                    None => f
                        .default
                        .clone()
                        .ok_or_else(|| format!("{}: missing required field {}", r.name, f.name))?,
                };
                let av = to_avro(&v, &f.schema, names)
                    .map_err(|e| format!("{}.{}: {e}", r.name, f.name))?;
                fields.push((f.name.clone(), av));
            }
            Value::Record(fields)
        }
        (s, j) => return Err(format!("{j} does not fit {s:?}")),
    })
}

fn int(n: &serde_json::Number) -> Result<i32, String> {
    n.as_i64()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| format!("{n} is not an int"))
}
fn long(n: &serde_json::Number) -> Result<i64, String> {
    n.as_i64().ok_or_else(|| format!("{n} is not a long"))
}

#[test]
fn every_example_is_valid_and_every_schema_has_one() {
    let catalog = Catalog::global();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/examples");
    let mut covered = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(file.ends_with(".json"), "{file}: examples are .json files");
        let simple = file.split('.').next().unwrap();
        let bundled = catalog
            .iter()
            .find(|s| s.name.rsplit('.').next() == Some(simple))
            .unwrap_or_else(|| panic!("{file}: no schema named {simple}"));
        let json: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let resolved = ResolvedSchema::try_from(&bundled.schema).unwrap();
        let names: std::collections::HashMap<Name, Schema> = resolved
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        let value =
            to_avro(&json, &bundled.schema, &names).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(value.validate(&bundled.schema), "{file}: does not validate");
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&bundled.schema)
            .build()
            .unwrap();
        let bytes = writer.write_value_to_vec(value.clone()).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&bundled.schema)
            .build()
            .unwrap();
        let back = reader.read_value(&mut &bytes[..]).unwrap();
        assert_eq!(back, value, "{file}: round trip");
        covered.insert(bundled.name.clone());
    }
    for s in catalog.iter().filter(|s| s.default_topic.is_some()) {
        assert!(
            covered.contains(&s.name),
            "{} has no example under schemas/examples/",
            s.name
        );
    }
}

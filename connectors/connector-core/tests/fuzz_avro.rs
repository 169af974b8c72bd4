//! Fuzzing the Confluent framing and the Avro decoder ([`unframe`], [`AvroCodec::decode_any`])
//! with random bytes and with structure-aware bodies: valid framing (magic byte, the real
//! registry id of every bundled schema in `schemas/`, events and commands) around bodies written
//! by a schema-driven generator that is valid most of the time and, at random points, writes
//! garbage (bad union branch or enum index, invalid UTF-8, negative or huge lengths, overlong
//! varints, truncation). Properties: nothing panics; garbage is `Err` with class `Permanent`
//! (the record goes to the dead-letter topic); a valid body decodes to its record; and the
//! process never allocates more than a small multiple of [`MAX_AVRO_ALLOCATION`] (a counting
//! global allocator records the peak). Decoding goes through the real schema registry
//! (`SCHEMA_REGISTRY_URL`). Bounded by `PROPTEST_CASES` (docs/testing.md).

use std::alloc::System;
use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::schema::Name;
use cap::Cap;
use connector_core::ErrorClass;
use connector_core::avro::{
    AvroCodec, Catalog, MAX_AVRO_ALLOCATION, RegistryClient, RegistryConfig, frame, unframe,
};
use proptest::prelude::*;

mod common;

use common::cases::config;

/// Counts every allocation of this test binary, so a property can check the peak.
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// The most this binary may have allocated at once: two test threads each holding one maximal
/// claim, plus the registry client, the schemas and the test harness.
const PEAK_BUDGET: usize = 3 * MAX_AVRO_ALLOCATION;

/// The real registry, the codec over it and the id of every bundled top-level schema,
/// registered once per test binary under unique subjects.
struct Fixture {
    rt: tokio::runtime::Runtime,
    codec: AvroCodec,
    /// (registry id, full name, parsed schema) of every bundled top-level schema.
    schemas: Vec<(u32, String, &'static Schema)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let url = std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| {
            panic!(
                "fuzz_avro decodes through the real schema registry and SCHEMA_REGISTRY_URL is \
                 not set. Start the local stack with `./dev up` and `export $(./dev env)`, or \
                 run the suite with `./dev test`."
            )
        });
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let config = RegistryConfig::new(url.clone());
        let client = RegistryClient::new(config.clone()).expect("registry client");
        let run = uuid::Uuid::new_v4().simple().to_string();
        let schemas =
            rt.block_on(async {
                let mut out = Vec::new();
                for s in Catalog::global()
                    .iter()
                    .filter(|s| s.default_topic.is_some())
                {
                    let subject = format!("test.fuzz.{run}.{}", s.name);
                    let id = client.register(&subject, &s.json).await.unwrap_or_else(|e| {
                    panic!(
                        "register {} with the registry at {url}: {e}. Start the local stack \
                         with `./dev up`.",
                        s.name
                    )
                });
                    out.push((id, s.name.clone(), &s.schema));
                }
                out
            });
        assert!(schemas.len() >= 20, "every event and command schema");
        Fixture {
            rt,
            codec: AvroCodec::new(config).expect("codec"),
            schemas,
        }
    })
}

/// Reads random choices from a byte string (like `arbitrary::Unstructured`); zeros once spent.
struct Entropy<'a>(&'a [u8]);

impl Entropy<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }
    /// True with probability `n / 256`.
    fn chance(&mut self, n: u8) -> bool {
        self.byte() < n
    }
}

/// Writes a zig-zag varint (Avro `int`/`long`).
fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Writes an Avro body for a schema from entropy: valid unless `garbage` (a per-decision
/// chance out of 256) fires; `valid` says whether anything invalid was written.
struct BodyWriter<'a, 'e> {
    e: &'e mut Entropy<'a>,
    garbage: u8,
    names: HashMap<Name, &'static Schema>,
    valid: bool,
    depth: usize,
}

impl BodyWriter<'_, '_> {
    fn bad(&mut self) -> bool {
        let fire = self.garbage > 0 && self.e.chance(self.garbage);
        self.valid &= !fire;
        fire
    }

    /// A length prefix: small and true, or (garbage) negative or claiming up to exabytes.
    fn len(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        if self.bad() {
            let claim = match self.e.byte() % 4 {
                0 => -(1 + i64::from(self.e.byte())),
                1 => 400 * 1024 * 1024, // between our cap and apache-avro's 512 MiB default
                2 => (self.e.u64() >> 1) as i64,
                _ => i64::from(self.e.byte()) + 1_000, // past the end of the body
            };
            put_long(out, claim);
            return 0;
        }
        let n = usize::from(self.e.byte()) % (max + 1);
        put_long(out, n as i64);
        n
    }

    fn write(&mut self, schema: &'static Schema, out: &mut Vec<u8>) {
        self.depth += 1;
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                let b = if self.bad() {
                    2 + self.e.byte() % 250
                } else {
                    self.e.byte() & 1
                };
                out.push(b);
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let n = if self.bad() {
                    self.e.u64() as i64
                } else {
                    i64::from(self.e.u64() as i32)
                };
                put_long(out, n);
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                if self.bad() {
                    // An overlong varint (more than 10 bytes of continuation).
                    out.extend(std::iter::repeat_n(0xff, 11));
                } else {
                    put_long(out, self.e.u64() as i64);
                }
            }
            Schema::Float => out.extend_from_slice(&(self.e.u64() as u32).to_le_bytes()),
            Schema::Double => out.extend_from_slice(&self.e.u64().to_le_bytes()),
            Schema::Bytes | Schema::BigDecimal | Schema::Decimal(_) => {
                let n = self.len(out, 64);
                out.extend((0..n).map(|_| self.e.byte()));
            }
            Schema::String | Schema::Uuid(_) => {
                let n = self.len(out, 32);
                let utf8 = n == 0 || !self.bad();
                out.extend((0..n).map(|_| {
                    let b = self.e.byte();
                    if utf8 { b'a' + b % 26 } else { b | 0x80 }
                }));
            }
            Schema::Array(a) => self.blocks(out, |w, out| w.write(&a.items, out)),
            Schema::Map(m) => self.blocks(out, |w, out| {
                let n = w.len(out, 8);
                out.extend((0..n).map(|i| b'k' + (i as u8 % 10)));
                w.write(&m.types, out);
            }),
            Schema::Union(u) => {
                let variants = u.variants();
                if self.bad() {
                    put_long(out, i64::from(self.e.byte()) + variants.len() as i64);
                } else {
                    // Past a depth, take the first branch (null in our schemas) to terminate.
                    let i = if self.depth > 8 {
                        0
                    } else {
                        usize::from(self.e.byte()) % variants.len()
                    };
                    put_long(out, i as i64);
                    self.write(&variants[i], out);
                }
            }
            Schema::Record(r) => {
                for f in &r.fields {
                    self.write(&f.schema, out);
                }
            }
            Schema::Enum(en) => {
                let i = if self.bad() {
                    usize::from(self.e.byte()) + en.symbols.len()
                } else {
                    usize::from(self.e.byte()) % en.symbols.len()
                };
                put_long(out, i as i64);
            }
            Schema::Fixed(f) | Schema::Duration(f) => {
                out.extend((0..f.size).map(|_| self.e.byte()));
            }
            Schema::Ref { name } => {
                let target = *self.names.get(name).expect("bundled refs resolve");
                self.write(target, out);
            }
        }
        self.depth -= 1;
    }

    /// An array or map: a few blocks of items, then the 0 terminator.
    fn blocks(&mut self, out: &mut Vec<u8>, mut item: impl FnMut(&mut Self, &mut Vec<u8>)) {
        let blocks = if self.depth > 8 { 0 } else { self.e.byte() % 3 };
        for _ in 0..blocks {
            let n = self.len(out, 4);
            if n == 0 {
                // A zero count is the terminator: the block ends the sequence.
                return;
            }
            for _ in 0..n {
                item(self, out);
            }
        }
        put_long(out, 0);
    }
}

/// Every named type defined in `schema`, for `Schema::Ref`.
fn names_of(schema: &'static Schema, out: &mut HashMap<Name, &'static Schema>) {
    match schema {
        Schema::Record(r) => {
            out.insert(r.name.clone(), schema);
            for f in &r.fields {
                names_of(&f.schema, out);
            }
        }
        Schema::Enum(e) => {
            out.insert(e.name.clone(), schema);
        }
        Schema::Fixed(f) => {
            out.insert(f.name.clone(), schema);
        }
        Schema::Array(a) => names_of(&a.items, out),
        Schema::Map(m) => names_of(&m.types, out),
        Schema::Union(u) => u.variants().iter().for_each(|v| names_of(v, out)),
        _ => {}
    }
}

/// A body for `schema` from `entropy`; `garbage` is the per-decision chance (out of 256) of an
/// invalid choice. Returns the body and whether it is valid.
fn body(schema: &'static Schema, entropy: &[u8], garbage: u8) -> (Vec<u8>, bool) {
    let mut names = HashMap::new();
    names_of(schema, &mut names);
    let mut e = Entropy(entropy);
    let mut w = BodyWriter {
        e: &mut e,
        garbage,
        names,
        valid: true,
        depth: 0,
    };
    let mut out = Vec::new();
    w.write(schema, &mut out);
    let valid = w.valid;
    (out, valid)
}

/// Decodes `bytes` through the registry: the record name, or the error's class (checked to be
/// Permanent); fails the case when the allocation peak passed the budget.
fn decode(bytes: &[u8]) -> Result<Result<String, String>, TestCaseError> {
    let f = fixture();
    let mut got = f.rt.block_on(f.codec.decode_any(bytes));
    // A transport failure talking to the registry (seen once in 200,000 cases, under load) is
    // Retriable and retried, as a connector does; what the retries end with must be Permanent.
    for _ in 0..3 {
        match &got {
            Err(e) if e.class() == ErrorClass::Retriable => {
                std::thread::sleep(std::time::Duration::from_millis(200));
                got = f.rt.block_on(f.codec.decode_any(bytes));
            }
            _ => break,
        }
    }
    prop_assert!(
        ALLOC.max_allocated() <= PEAK_BUDGET,
        "peak allocation {} MiB",
        ALLOC.max_allocated() >> 20
    );
    Ok(match got {
        Ok(d) => Ok(d.record_name),
        Err(e) => {
            // Garbage is never retried: a registry outage would be the only Retriable answer.
            prop_assert_eq!(e.class(), ErrorClass::Permanent, "{}", e);
            Err(e.to_string())
        }
    })
}

fn schema_index() -> impl Strategy<Value = usize> {
    any::<prop::sample::Index>().prop_map(|i| i.index(fixture().schemas.len()))
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: the framing check is exact and never panics.
    #[test]
    fn unframe_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        match unframe(&bytes) {
            Ok((id, body)) => {
                prop_assert!(bytes.len() >= 5 && bytes[0] == 0);
                prop_assert_eq!(frame(id, body), bytes);
            }
            Err(e) => {
                prop_assert!(bytes.len() < 5 || bytes[0] != 0);
                prop_assert_eq!(e.class(), ErrorClass::Permanent);
            }
        }
    }

    /// Random bytes, framed with a real or a random schema id, and unframed garbage.
    #[test]
    fn random_messages_decode_or_are_permanent(
        i in schema_index(),
        random_id in any::<bool>(),
        id in any::<u32>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        raw in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let id = if random_id { id } else { fixture().schemas[i].0 };
        let _framed = decode(&frame(id, &body))?;
        let _raw = decode(&raw)?;
    }

    /// Structure-aware: every bundled schema's id around a schema-driven body. A valid body
    /// decodes to its record; one with garbage somewhere decodes or is Permanent.
    #[test]
    fn schema_driven_bodies(
        i in schema_index(),
        entropy in prop::collection::vec(any::<u8>(), 0..512),
        garbage in prop_oneof![Just(0u8), 1u8..16],
        truncate in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (id, name, schema) = &fixture().schemas[i];
        let (mut body, mut valid) = body(schema, &entropy, garbage);
        if let Some(t) = truncate {
            let keep = t.index(body.len() + 1);
            valid &= keep == body.len();
            body.truncate(keep);
        }
        match decode(&frame(*id, &body))? {
            Ok(record) => prop_assert_eq!(&record, name),
            Err(e) => prop_assert!(!valid, "a valid {} body was refused: {}", name, e),
        }
    }
}

/// The generator's valid bodies really are valid (so the "valid decodes" property has teeth):
/// every schema, with several entropy strings and no garbage, decodes to its record.
#[test]
fn generated_valid_bodies_decode_for_every_schema() {
    let f = fixture();
    let seeds: Vec<Vec<u8>> = (0u32..8)
        .map(|s| {
            (0..512u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(s * 97) >> 7) as u8)
                .collect()
        })
        .collect();
    for (id, name, schema) in &f.schemas {
        for seed in &seeds {
            let (b, valid) = body(schema, seed, 0);
            assert!(valid);
            let d =
                f.rt.block_on(f.codec.decode_any(&frame(*id, &b)))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&d.record_name, name);
        }
    }
}

/// Regression: a body whose first field claims a 400 MiB string or bytes (under apache-avro's
/// 512 MiB default cap) made the decoder allocate 400 MiB for a 10-byte message. It is now a
/// Permanent decode error and allocates nothing big.
#[test]
fn length_prefix_claiming_hundreds_of_mib_allocates_nothing_big() {
    let f = fixture();
    for (id, name, _) in &f.schemas {
        let mut body = Vec::new();
        put_long(&mut body, 400 * 1024 * 1024);
        let err =
            f.rt.block_on(f.codec.decode_any(&frame(*id, &body)))
                .expect_err(name);
        assert_eq!(err.class(), ErrorClass::Permanent, "{name}: {err}");
    }
    assert!(
        ALLOC.max_allocated() <= PEAK_BUDGET,
        "peak allocation {} MiB",
        ALLOC.max_allocated() >> 20
    );
}

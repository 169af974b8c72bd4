//! Encoding of changed-data rows: one [`FeedCodec`] per feed, built from the feed's event type in
//! `athena-contracts` (the mirrors, the one mapper of every entity and the per-feed table live
//! there, shared with push inflation, the push catch-up and the backfill). This module only adds
//! what the changed-data source needs on top: a pinned encoder, the Kafka key and [`Mapped`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use athena_client::api::changed::Feed;
use athena_contracts::events::{EventTypeVisitor, FeedEvent, visit};
use athena_contracts::mapping::{changed_data_event, record_event_id};
use chrono::{DateTime, Utc};
use connector_core::avro::{AvroCodec, Encoder};
use serde_json::Value;

pub use athena_contracts::events::{FeedSpec, spec};
pub use athena_contracts::mapping::MapContext;

use crate::error::Error;

/// One record ready for Kafka.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The deterministic event id.
    pub event_id: String,
    /// athena id of the entity (a content-derived stand-in when the record has none).
    pub entity_id: String,
    /// Kafka key: `<practice>/<entity id>`.
    pub key: String,
    /// Confluent-framed Avro value.
    pub value: Vec<u8>,
    /// When the change happened, if athena said.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Maps records of one feed to encoded events; the schema id is pinned at construction.
pub trait FeedCodec: Send + Sync + std::fmt::Debug {
    /// Full name of the event schema.
    fn schema_name(&self) -> &'static str;
    /// Lower-case entity name.
    fn entity_type(&self) -> &'static str;
    /// Maps and encodes one record.
    fn map(&self, ctx: &MapContext<'_>, rec: &Value) -> Result<Mapped, Error>;
    /// The event id `rec` will get (for dedupe checks without encoding).
    fn event_id(&self, practice_id: &str, rec: &Value) -> String;
}

/// The [`FeedCodec`] of one [`FeedEvent`] type.
pub struct Typed<T: FeedEvent> {
    encoder: Encoder<T>,
    _t: PhantomData<fn(&T)>,
}

impl<T: FeedEvent> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("schema", &T::SCHEMA_NAME)
            .finish()
    }
}

impl<T: FeedEvent> Typed<T> {
    /// A codec with a pinned encoder.
    pub fn new(encoder: Encoder<T>) -> Self {
        Typed {
            encoder,
            _t: PhantomData,
        }
    }
}

impl<T: FeedEvent> FeedCodec for Typed<T> {
    fn schema_name(&self) -> &'static str {
        T::SCHEMA_NAME
    }
    fn entity_type(&self) -> &'static str {
        T::ENTITY_TYPE
    }
    fn map(&self, ctx: &MapContext<'_>, rec: &Value) -> Result<Mapped, Error> {
        let (event, changed_at) = changed_data_event::<T>(ctx, rec);
        let value = self.encoder.encode(&event).map_err(Error::Encode)?;
        let env = event.envelope();
        Ok(Mapped {
            key: format!("{}/{}", ctx.practice_id, env.entity_id),
            event_id: env.event_id.clone(),
            entity_id: env.entity_id.clone(),
            value,
            changed_at,
        })
    }
    fn event_id(&self, practice_id: &str, rec: &Value) -> String {
        record_event_id::<T>(practice_id, rec)
    }
}

/// Builds a codec with a known schema id.
struct WithId(u32);

impl EventTypeVisitor for WithId {
    type Output = Result<Box<dyn FeedCodec>, connector_core::CoreError>;
    fn visit<T: FeedEvent>(self) -> Self::Output {
        Ok(Box::new(Typed::<T>::new(Encoder::<T>::with_id(self.0)?)))
    }
}

type CodecFuture<'a> = Pin<
    Box<dyn Future<Output = Result<Box<dyn FeedCodec>, connector_core::CoreError>> + Send + 'a>,
>;

/// Builds a codec after looking its schema id up in the registry.
struct Lookup<'a> {
    avro: &'a AvroCodec,
    topic: &'a str,
}

impl<'a> EventTypeVisitor for Lookup<'a> {
    type Output = CodecFuture<'a>;
    fn visit<T: FeedEvent>(self) -> Self::Output {
        Box::pin(async move {
            let encoder = self.avro.encoder::<T>(self.topic).await?;
            Ok(Box::new(Typed::<T>::new(encoder)) as Box<dyn FeedCodec>)
        })
    }
}

/// A codec for `feed` writing to `topic`: looks the schema id up in the registry once.
pub async fn codec(
    avro: &AvroCodec,
    feed: Feed,
    topic: &str,
) -> Result<Box<dyn FeedCodec>, connector_core::CoreError> {
    visit(feed, Lookup { avro, topic }).await
}

/// A codec for `feed` with a known schema id (benchmarks, tests).
pub fn codec_with_id(
    feed: Feed,
    schema_id: u32,
) -> Result<Box<dyn FeedCodec>, connector_core::CoreError> {
    visit(feed, WithId(schema_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use athena_contracts::TimestampMillis;
    use serde_json::json;

    #[test]
    fn codecs_map_every_feed_and_agree_with_the_contracts() {
        let rec = json!({"problemid": 3833, "patientid": 980, "name": "Fatigue"});
        let ctx = MapContext {
            practice_id: "195900",
            observed_at: TimestampMillis(1),
            replayed: false,
            keep_original: true,
        };
        let codec = codec_with_id(Feed::Problems, 7).unwrap();
        let m = codec.map(&ctx, &rec).unwrap();
        assert_eq!(m.key, "195900/3833");
        assert_eq!(m.event_id, codec.event_id("195900", &rec));
        // No id field: still produced, under a stable stand-in id.
        let anon = json!({"name": "x"});
        let a = codec.map(&ctx, &anon).unwrap();
        assert!(a.entity_id.starts_with("unknown-"), "{}", a.entity_id);
        for f in Feed::ALL {
            let c = codec_with_id(f, 1).unwrap();
            assert_eq!(c.schema_name(), spec(f).schema_name, "{f:?}");
        }
    }
}

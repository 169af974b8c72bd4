//! Typed shapes of athena records, decoded leniently, with the raw JSON kept beside them.
//!
//! Only the fields the connectors need are typed; everything else stays reachable through [`Raw::raw`]
//! so a connector can forward the whole original record. Unknown fields are always ignored.

pub mod de;
pub mod fhir_ref;
mod records;

pub use fhir_ref::{FhirRef, FhirRefError, Reference};
pub use records::*;

use serde::{Deserialize, Deserializer, de::DeserializeOwned};

/// A record decoded into `T` with its original JSON kept verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw<T> {
    /// The typed view.
    pub value: T,
    /// The record exactly as athena sent it.
    pub raw: serde_json::Value,
}

impl<T> std::ops::Deref for Raw<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: DeserializeOwned> Raw<T> {
    /// Decode from a JSON value, keeping a copy of it.
    pub fn from_value(raw: serde_json::Value) -> Result<Self, serde_json::Error> {
        let value = T::deserialize(&raw)?;
        Ok(Raw { value, raw })
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Raw<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Raw::from_value(raw).map_err(serde::de::Error::custom)
    }
}

//! Endpoint methods, one file per API area (go-athenahealth style). Each method's doc names the verb and path
//! and says whether it is safe to retry. Proprietary methods hang off [`crate::PracticeClient`]; FHIR and bulk
//! export off [`crate::AthenaClient`].

pub mod appointments;
pub mod bulk;
pub mod changed;
pub mod chart;
pub mod claims;
pub mod documents;
pub mod fhir;
pub mod insurances;
pub mod patients;
pub mod payments;
pub mod records;
pub mod subscriptions;

use std::borrow::Cow;

use crate::client::{PracticeClient, from_value};
use crate::error::Error;
use crate::transport::Call;

/// Offset paging for NON-destructive lists only (never for changed feeds: see [`changed`]).
/// Follows `limit`/`offset` until a short page, `offset >= totalcount`, or `max_items`.
pub(crate) async fn list_all<T: serde::de::DeserializeOwned>(
    pc: &PracticeClient,
    route: impl Into<Cow<'static, str>>,
    segments: &[&str],
    query: Vec<(String, String)>,
    items_key: &str,
    page_size: u32,
    max_items: usize,
) -> Result<Vec<T>, Error> {
    let route = route.into();
    let mut out = Vec::new();
    let mut offset: u64 = 0;
    loop {
        let mut q = query.clone();
        q.push(("limit".into(), page_size.to_string()));
        q.push(("offset".into(), offset.to_string()));
        let call: Call = pc.get(route.clone(), segments).query(q);
        let mut body: serde_json::Value = pc.client.json(&call).await?;
        let total = body
            .get("totalcount")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let items = match body.get_mut(items_key).map(serde_json::Value::take) {
            Some(serde_json::Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let n = items.len() as u64;
        for item in items {
            out.push(from_value(&route, item, false)?);
        }
        offset += n;
        if n < u64::from(page_size) || total.is_some_and(|t| offset >= t) || out.len() >= max_items
        {
            break;
        }
    }
    out.truncate(max_items);
    Ok(out)
}

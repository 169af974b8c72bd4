//! Subscription management from config: one Subscription per configured topic for the practice,
//! created when missing, stale ones (our endpoint, a topic no longer configured) deleted, and a
//! status report. Creating is not idempotent at athena, so an ambiguous create is reconciled by
//! listing again before anything is retried.

use athena_client::{AthenaClient, PracticeId};
use serde::Serialize;
use serde_json::Value;

use crate::adapter::{PushAdapter, SubscriptionSpec};
use crate::error::Error;

/// The state of one configured topic's Subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionStatus {
    /// Topic code.
    pub topic: String,
    /// Subscription id at the server.
    pub id: Option<String>,
    /// Server-reported status (`active`, `requested`, `error`, `off`) or `missing`.
    pub status: String,
    /// Whether this pass created it.
    pub created: bool,
}

fn status_of(v: &Value) -> (Option<String>, String) {
    (
        v.get("id").and_then(Value::as_str).map(str::to_owned),
        v.get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
    )
}

/// Brings the server in line with `specs`; returns one status per spec.
pub async fn reconcile(
    athena: &AthenaClient,
    adapter: &dyn PushAdapter,
    hub_secret: Option<&secrecy::SecretString>,
    specs: &[SubscriptionSpec],
    delete_stale: bool,
) -> Result<Vec<SubscriptionStatus>, Error> {
    let existing = athena.list_subscriptions().await?;
    let mut out = Vec::new();
    for spec in specs {
        if let Some(found) = existing.iter().find(|e| adapter.serves(e, spec)) {
            let (id, status) = status_of(found);
            out.push(SubscriptionStatus {
                topic: spec.topic.clone(),
                id,
                status,
                created: false,
            });
            continue;
        }
        let resource = adapter.subscription(spec);
        let created = match athena
            .create_subscription(PracticeId(spec.practice_id), &resource, hub_secret)
            .await
        {
            Ok(v) => v,
            Err(e) if e.class() == athena_client::ErrorClass::Ambiguous => {
                // The create may have happened: look before trying again.
                let again = athena.list_subscriptions().await?;
                match again.into_iter().find(|x| adapter.serves(x, spec)) {
                    Some(v) => v,
                    None => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let (id, status) = status_of(&created);
        tracing::info!(topic = %spec.topic, id = id.as_deref().unwrap_or("?"), "Created a push subscription.");
        out.push(SubscriptionStatus {
            topic: spec.topic.clone(),
            id,
            status,
            created: true,
        });
    }
    if delete_stale && let Some(endpoint) = specs.first().map(|s| s.endpoint.clone()) {
        for e in &existing {
            let ours = e
                .get("channel")
                .and_then(|c| c.get("endpoint"))
                .and_then(Value::as_str)
                == Some(endpoint.as_str());
            if ours
                && !specs.iter().any(|s| adapter.serves(e, s))
                && let (Some(id), _) = status_of(e)
            {
                delete(athena, &id).await?;
                tracing::info!(id = %id, "Deleted a stale push subscription.");
            }
        }
    }
    Ok(out)
}

/// Deletes one Subscription; an already deleted one counts as done.
pub async fn delete(athena: &AthenaClient, id: &str) -> Result<(), Error> {
    match athena.delete_subscription(id).await {
        Ok(()) | Err(athena_client::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The status of each configured Subscription, without changing anything (`missing` when the
/// server has none serving the spec).
pub async fn status(
    athena: &AthenaClient,
    adapter: &dyn PushAdapter,
    specs: &[SubscriptionSpec],
) -> Result<Vec<SubscriptionStatus>, Error> {
    let existing = athena.list_subscriptions().await?;
    Ok(specs
        .iter()
        .map(
            |spec| match existing.iter().find(|e| adapter.serves(e, spec)) {
                Some(found) => {
                    let (id, status) = status_of(found);
                    SubscriptionStatus {
                        topic: spec.topic.clone(),
                        id,
                        status,
                        created: false,
                    }
                }
                None => SubscriptionStatus {
                    topic: spec.topic.clone(),
                    id: None,
                    status: "missing".into(),
                    created: false,
                },
            },
        )
        .collect())
}

/// Deletes every Subscription serving one of `specs`; returns how many were deleted.
pub async fn delete_all(
    athena: &AthenaClient,
    adapter: &dyn PushAdapter,
    specs: &[SubscriptionSpec],
) -> Result<usize, Error> {
    let existing = athena.list_subscriptions().await?;
    let mut n = 0;
    for e in existing
        .iter()
        .filter(|e| specs.iter().any(|s| adapter.serves(e, s)))
    {
        if let (Some(id), _) = status_of(e) {
            delete(athena, &id).await?;
            n += 1;
        }
    }
    Ok(n)
}

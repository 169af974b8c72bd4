//! Subscription management from config: one Subscription per configured topic for the practice,
//! created when missing, stale ones (our endpoint, a topic no longer configured) deleted, and a
//! status report. Creating is not idempotent at athena, so an ambiguous create is reconciled by
//! listing again before anything is retried.
//!
//! Several replicas run this at once (every `role = "all"` process at start; the leader again
//! after a gap; decision 0026), so two of them can both find a topic missing and both create it. Every
//! pass therefore converges on one Subscription per spec by the same rule, whoever runs it: among
//! the Subscriptions serving a spec, the one with the **smallest id** is kept and the others are
//! deleted; a create is followed by a second listing that applies the rule. The smallest id ever
//! created is never deleted by that rule (nobody sees a smaller one), so the replicas converge on
//! exactly one, never zero; until they do, athena delivers a notification once per duplicate,
//! which the receivers' replay protection and the inflation dedup absorb (same event ids).

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

/// The Subscriptions in `existing` serving `spec`, smallest id first (the one every replica keeps).
fn serving<'a>(
    adapter: &dyn PushAdapter,
    existing: &'a [Value],
    spec: &SubscriptionSpec,
) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = existing
        .iter()
        .filter(|e| adapter.serves(e, spec))
        .collect();
    found.sort_by(|a, b| status_of(a).0.cmp(&status_of(b).0));
    found
}

/// Keeps the first of `found` (smallest id) and deletes the rest: duplicates a concurrent
/// replica created. Returns the kept one.
async fn keep_first(
    athena: &AthenaClient,
    spec: &SubscriptionSpec,
    found: &[&Value],
) -> Result<Option<Value>, Error> {
    for dup in found.iter().skip(1) {
        if let (Some(id), _) = status_of(dup) {
            delete(athena, &id).await?;
            tracing::info!(topic = %spec.topic, id = %id, "Deleted a duplicate push subscription (another replica created one too).");
        }
    }
    Ok(found.first().map(|v| (*v).clone()))
}

/// Brings the server in line with `specs`; returns one status per spec. Safe to run from
/// several replicas at once: they converge on one Subscription per spec (see the module doc).
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
        if let Some(kept) = keep_first(athena, spec, &serving(adapter, &existing, spec)).await? {
            let (id, status) = status_of(&kept);
            out.push(SubscriptionStatus {
                topic: spec.topic.clone(),
                id,
                status,
                created: false,
            });
            continue;
        }
        let resource = adapter.subscription(spec);
        // An ambiguous create may have happened: the listing below finds it, or the pass
        // fails with that error (and nothing is retried blindly).
        let created = match athena
            .create_subscription(PracticeId(spec.practice_id), &resource, hub_secret)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if e.class() == athena_client::ErrorClass::Ambiguous => Err(e),
            Err(e) => return Err(e.into()),
        };
        // Look again: a concurrent replica may have created one as well.
        let again = athena.list_subscriptions().await?;
        let created_id = created.as_ref().ok().and_then(|c| status_of(c).0);
        let kept = match keep_first(athena, spec, &serving(adapter, &again, spec)).await? {
            Some(v) => v,
            // Not listed (yet): what the create answered, or its ambiguous error.
            None => created?,
        };
        let (id, status) = status_of(&kept);
        let ours = created_id.is_some() && created_id == id;
        if ours {
            tracing::info!(topic = %spec.topic, id = id.as_deref().unwrap_or("?"), "Created a push subscription.");
        }
        out.push(SubscriptionStatus {
            topic: spec.topic.clone(),
            id,
            status,
            created: ours,
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

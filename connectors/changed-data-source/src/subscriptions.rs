//! Subscriptions managed for the user: at start, each configured (practice, feed) is brought to
//! the subscription the config asks for (all events or the listed ones; the whole practice or
//! the listed departments). Subscribing twice leaves the same state, so this is idempotent.
//! Feeds that stay unsubscribed are reported (log and task status), not fatal: athena applies
//! subscriptions after minutes, and the poll loop retries a not-yet-subscribed feed slowly.

use std::collections::BTreeSet;

use athena_client::AthenaClient;
use athena_client::api::changed::{Feed, Subscribe, SubscriptionStatus};
use connector_core::runtime::TaskControl;

use crate::config::{Config, FeedConfig};
use crate::task::feed_name;

/// What to do about one feed's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already as configured.
    Keep,
    /// Subscribe to these events (`None` = all events), each with the complete department list.
    Subscribe(Vec<Option<String>>),
}

/// Compares athena's current subscription with the configured one.
pub fn plan(status: &SubscriptionStatus, wanted: &FeedConfig) -> Plan {
    let have: BTreeSet<&str> = status
        .subscriptions
        .iter()
        .map(|e| e.eventname.as_str())
        .collect();
    let active = status.status.eq_ignore_ascii_case("ACTIVE");
    // athena does not echo departments reliably; with a department list configured, re-send it
    // (harmless: athena replaces the list with the complete one we send).
    let departments_set = !wanted.departments.is_empty();
    if wanted.events.is_empty() {
        if active && !departments_set {
            Plan::Keep
        } else {
            Plan::Subscribe(vec![None])
        }
    } else {
        let missing: Vec<Option<String>> = wanted
            .events
            .iter()
            .filter(|e| departments_set || !have.contains(e.as_str()))
            .map(|e| Some(e.clone()))
            .collect();
        if missing.is_empty() {
            Plan::Keep
        } else {
            Plan::Subscribe(missing)
        }
    }
}

/// Brings every configured subscription in line; returns the (practice, feed) pairs that could
/// not be subscribed.
pub async fn ensure(
    connector: &str,
    config: &Config,
    athena: &AthenaClient,
    control: &TaskControl,
) -> Vec<(String, Feed)> {
    let mut not_subscribed = Vec::new();
    for practice in &config.practices {
        let client = athena.practice(practice.parse::<u64>().unwrap_or_default());
        for (feed, wanted) in &config.feeds {
            let name = feed_name(*feed);
            let result = async {
                let status = client.changed_subscription(*feed).await?;
                match plan(&status, wanted) {
                    Plan::Keep => Ok::<bool, athena_client::Error>(false),
                    Plan::Subscribe(events) => {
                        for event_name in events {
                            client
                                .subscribe(
                                    *feed,
                                    &Subscribe {
                                        event_name,
                                        department_ids: wanted.departments.clone(),
                                    },
                                )
                                .await?;
                        }
                        Ok(true)
                    }
                }
            }
            .await;
            match result {
                Ok(true) => {
                    tracing::info!(connector, practice = %practice, feed = name, "Subscribed to the feed.")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(connector, practice = %practice, feed = name, error = %e, "Feed is not subscribed.");
                    control.report_error(format!(
                        "feed {name} practice {practice} is not subscribed: {e}"
                    ));
                    not_subscribed.push((practice.clone(), *feed));
                }
            }
        }
    }
    not_subscribed
}

#[cfg(test)]
mod tests {
    use super::*;
    use athena_client::api::changed::EventName;

    fn status(s: &str, events: &[&str]) -> SubscriptionStatus {
        SubscriptionStatus {
            status: s.into(),
            subscriptions: events
                .iter()
                .map(|e| EventName {
                    eventname: e.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn plans() {
        let all = FeedConfig::default();
        assert_eq!(plan(&status("ACTIVE", &["A", "B"]), &all), Plan::Keep);
        assert_eq!(
            plan(&status("INACTIVE", &[]), &all),
            Plan::Subscribe(vec![None])
        );
        assert_eq!(
            plan(&status("PARTIAL", &["A"]), &all),
            Plan::Subscribe(vec![None])
        );
        let some = FeedConfig {
            events: vec!["A".into(), "C".into()],
            ..Default::default()
        };
        assert_eq!(
            plan(&status("PARTIAL", &["A"]), &some),
            Plan::Subscribe(vec![Some("C".into())])
        );
        assert_eq!(plan(&status("PARTIAL", &["A", "C"]), &some), Plan::Keep);
        let depts = FeedConfig {
            departments: vec!["1".into()],
            ..Default::default()
        };
        assert_eq!(
            plan(&status("ACTIVE", &["A"]), &depts),
            Plan::Subscribe(vec![None])
        );
    }
}

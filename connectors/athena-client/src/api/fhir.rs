//! FHIR R4 reads and searches, and athena's logical-id conventions.
//!
//! * `GET /fhir/r4/{type}/{id}` — [`AthenaClient::fhir_read`] of a parsed [`FhirRef`] (routed by the
//!   id's `a-{pid}.` prefix).
//! * `GET /fhir/r4/{type}?ah-practice=Organization/a-1.Practice-{pid}&...` — [`AthenaClient::fhir_search`],
//!   following `Bundle.link[next]` with [`AthenaClient::fhir_search_all`].
//! * `GET /fhir/r4/{type}?patient=a-{pid}.E-{id}&_lastUpdated=ge…&_count=N` —
//!   [`AthenaClient::fhir_search_patient`], the patient-scoped window search that change signals
//!   drive, following `next` links up to [`PATIENT_SEARCH_MAX_PAGES`].
//!
//! All are reads and safe to retry. athena's FHIR cannot list "what changed" practice-wide; drive reads from
//! the changed feeds or events.

use std::borrow::Cow;

use crate::client::{AthenaClient, PracticeId};
use crate::error::Error;
use crate::model::FhirRef;
use crate::transport::Call;

/// The most pages [`AthenaClient::fhir_search_patient`] follows; a search with more pages is an
/// error rather than a silent truncation (one patient's window of one type is normally one page).
pub const PATIENT_SEARCH_MAX_PAGES: usize = 50;

/// `application/fhir+json`.
pub const FHIR_JSON: &str = "application/fhir+json";

/// athena's FHIR logical-id conventions.
pub mod ids {
    use crate::client::PracticeId;

    /// Patient: `a-{pid}.E-{patientid}`.
    pub fn patient(practice: PracticeId, patient_id: &str) -> String {
        format!("a-{practice}.E-{patient_id}")
    }
    /// Practice organization: `a-1.Practice-{pid}`.
    pub fn practice_org(practice: PracticeId) -> String {
        format!("a-1.Practice-{practice}")
    }
    /// Department organization: `a-{pid}.Department-{id}`.
    pub fn department(practice: PracticeId, department_id: &str) -> String {
        format!("a-{practice}.Department-{department_id}")
    }
    /// Provider practitioner: `a-{pid}.Provider-{id}`.
    pub fn provider(practice: PracticeId, provider_id: &str) -> String {
        format!("a-{practice}.Provider-{provider_id}")
    }
    /// Bulk export group of the whole practice: `a-1.C-{pid}`.
    pub fn export_group(practice: PracticeId) -> String {
        format!("a-1.C-{practice}")
    }
    /// The `ah-practice` search value: `Organization/a-1.Practice-{pid}`.
    pub fn ah_practice(practice: PracticeId) -> String {
        format!("Organization/{}", practice_org(practice))
    }
    /// Split `a-{pid}.{Kind}-{id}` into (practice, kind, id). `a-1.` ids yield practice 1.
    pub fn parse(fhir_id: &str) -> Option<(PracticeId, &str, &str)> {
        let rest = fhir_id.strip_prefix("a-")?;
        let (pid, rest) = rest.split_once('.')?;
        let (kind, id) = rest.split_once('-')?;
        Some((PracticeId(pid.parse().ok()?), kind, id))
    }
    /// The athenaOne patient id of a FHIR patient id (`a-195900.E-60178` -> `60178`).
    pub fn patient_id(fhir_id: &str) -> Option<&str> {
        match parse(fhir_id)? {
            (_, "E", id) => Some(id),
            _ => None,
        }
    }
}

/// A FHIR searchset Bundle, kept raw.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The Bundle as athena sent it.
    pub raw: serde_json::Value,
}

impl Bundle {
    /// Entry resources, excluding `search.mode = outcome` entries (OperationOutcomes).
    pub fn resources(&self) -> Vec<&serde_json::Value> {
        self.entries()
            .filter(|e| !is_outcome(e))
            .filter_map(|e| e.get("resource"))
            .collect()
    }

    /// The `next` link, if any.
    pub fn next_link(&self) -> Option<&str> {
        self.raw
            .get("link")?
            .as_array()?
            .iter()
            .find(|l| l.get("relation").and_then(|r| r.as_str()) == Some("next"))?
            .get("url")?
            .as_str()
    }

    /// `Bundle.total`, when present.
    pub fn total(&self) -> Option<u64> {
        self.raw.get("total").and_then(|t| t.as_u64())
    }

    fn entries(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.raw
            .get("entry")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
    }

    /// athena sometimes reports search errors as an outcome entry of an otherwise 200 Bundle.
    fn outcome_error(&self) -> Option<String> {
        self.entries().filter(|e| is_outcome(e)).find_map(|e| {
            let issues = e.get("resource")?.get("issue")?.as_array()?;
            issues
                .iter()
                .find(|i| {
                    matches!(
                        i.get("severity").and_then(|s| s.as_str()),
                        Some("error" | "fatal")
                    )
                })
                .map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.get("details").and_then(|d| d.get("text")))
                        .and_then(|d| d.as_str())
                        .unwrap_or("FHIR search failed")
                        .to_owned()
                })
        })
    }
}

fn is_outcome(e: &serde_json::Value) -> bool {
    e.get("search")
        .and_then(|s| s.get("mode"))
        .and_then(|m| m.as_str())
        == Some("outcome")
}

fn check_type(resource_type: &str) -> Result<(), Error> {
    if resource_type.is_empty() || !resource_type.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Internal(
            "FHIR resource type must be alphanumeric".into(),
        ));
    }
    Ok(())
}

impl AthenaClient {
    /// `GET /fhir/r4/{type}/{id}` — read the *current* version of the resource `r` names (e.g.
    /// `Patient/a-195900.E-60178`). A versioned reference (`Type/id/_history/v`) reads the
    /// current version too: callers follow id-only notifications, which ask for current state.
    /// The type and id were validated when `r` was parsed, so neither can leave its path
    /// segment. Safe to retry.
    pub async fn fhir_read(&self, r: &FhirRef) -> Result<serde_json::Value, Error> {
        let (resource_type, id) = (r.resource_type.as_str(), r.id.as_str());
        let lane = ids::parse(id)
            .map(|(p, _, _)| p.to_string())
            .unwrap_or_default();
        let route = format!("/fhir/r4/{resource_type}/{{id}}");
        let call = Call::get(route, self.url(&["fhir", "r4", resource_type, id]), lane)
            .header("Accept", FHIR_JSON);
        self.json(&call).await
    }

    /// `GET /fhir/r4/{type}?ah-practice=...&<params>` — one page of a search. Safe to retry.
    pub async fn fhir_search(
        &self,
        practice: PracticeId,
        resource_type: &str,
        params: &[(&str, &str)],
    ) -> Result<Bundle, Error> {
        check_type(resource_type)?;
        let mut q: Vec<(String, String)> = vec![("ah-practice".into(), ids::ah_practice(practice))];
        q.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let route = format!("/fhir/r4/{resource_type}");
        let call = Call::get(
            route,
            self.url(&["fhir", "r4", resource_type]),
            practice.to_string(),
        )
        .query(q)
        .header("Accept", FHIR_JSON);
        self.bundle(&call).await
    }

    /// [`AthenaClient::fhir_search`] plus `next` links (same host only), up to `max_pages` pages.
    pub async fn fhir_search_all(
        &self,
        practice: PracticeId,
        resource_type: &str,
        params: &[(&str, &str)],
        max_pages: usize,
    ) -> Result<Vec<Bundle>, Error> {
        let mut pages = vec![self.fhir_search(practice, resource_type, params).await?];
        while pages.len() < max_pages {
            let Some(next) = pages.last().and_then(Bundle::next_link) else {
                break;
            };
            let url = url::Url::parse(next)
                .or_else(|_| self.config().base_url.join(next))
                .map_err(|_| Error::Internal("bad FHIR next link".into()))?;
            if url.origin() != self.config().base_url.origin() {
                return Err(Error::Internal(
                    "FHIR next link points to another host; refusing to send the token".into(),
                ));
            }
            let route: Cow<'static, str> = format!("/fhir/r4/{resource_type}").into();
            let call = Call::get(route, url, practice.to_string()).header("Accept", FHIR_JSON);
            pages.push(self.bundle(&call).await?);
        }
        Ok(pages)
    }

    /// `GET /fhir/r4/{type}?ah-practice=…&patient=a-{pid}.E-{patient_id}[&_lastUpdated=ge{since}]&_count={count}`
    /// — every resource of one type for one patient (changed since `since`, when given),
    /// following `next` links (same host only) for at most [`PATIENT_SEARCH_MAX_PAGES`] pages;
    /// more is [`Error::Internal`] instead of a silently partial answer. `since` is sent in whole
    /// seconds, rounded down, so the window never misses a change. Safe to retry.
    pub async fn fhir_search_patient(
        &self,
        practice: PracticeId,
        resource_type: &str,
        patient_id: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        count: u32,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let patient = ids::patient(practice, patient_id);
        let since =
            since.map(|t| format!("ge{}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        let count = count.max(1).to_string();
        let mut params: Vec<(&str, &str)> = vec![("patient", &patient), ("_count", &count)];
        if let Some(s) = &since {
            params.push(("_lastUpdated", s));
        }
        let pages = self
            .fhir_search_all(practice, resource_type, &params, PATIENT_SEARCH_MAX_PAGES)
            .await?;
        if pages.len() >= PATIENT_SEARCH_MAX_PAGES
            && pages.last().and_then(Bundle::next_link).is_some()
        {
            return Err(Error::Internal(format!(
                "FHIR {resource_type} search of one patient has more than {PATIENT_SEARCH_MAX_PAGES} pages"
            )));
        }
        Ok(pages
            .iter()
            .flat_map(|b| b.resources().into_iter().cloned())
            .collect())
    }

    async fn bundle(&self, call: &Call) -> Result<Bundle, Error> {
        let raw: serde_json::Value = self.json(call).await?;
        let b = Bundle { raw };
        if b.resources().is_empty()
            && let Some(msg) = b.outcome_error()
        {
            return Err(Error::Business {
                status: 200,
                message: msg,
            });
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_conventions() {
        let p = PracticeId(195900);
        assert_eq!(ids::patient(p, "60178"), "a-195900.E-60178");
        assert_eq!(ids::ah_practice(p), "Organization/a-1.Practice-195900");
        assert_eq!(ids::export_group(p), "a-1.C-195900");
        assert_eq!(ids::department(p, "1"), "a-195900.Department-1");
        assert_eq!(ids::patient_id("a-195900.E-60178"), Some("60178"));
        assert_eq!(ids::patient_id("a-195900.Provider-3"), None);
        assert_eq!(
            ids::parse("a-1.Practice-195900").map(|(p, k, i)| (p.0, k, i)),
            Some((1, "Practice", "195900"))
        );
        assert_eq!(ids::parse("60178"), None);
    }

    #[test]
    fn bundle_helpers() {
        let b = Bundle {
            raw: serde_json::json!({"resourceType":"Bundle","total":1,
              "link":[{"relation":"self","url":"x"},{"relation":"next","url":"http://h/fhir/r4/Patient?cursor=2"}],
              "entry":[{"resource":{"resourceType":"Patient","id":"a-1.E-2"}},
                       {"search":{"mode":"outcome"},"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning"}]}}]}),
        };
        assert_eq!(b.resources().len(), 1);
        assert_eq!(b.next_link(), Some("http://h/fhir/r4/Patient?cursor=2"));
        let err = Bundle {
            raw: serde_json::json!({"entry":[{"search":{"mode":"outcome"},"resource":{"issue":[{"severity":"error","diagnostics":"Could not determine what practice"}]}}]}),
        };
        assert_eq!(
            err.outcome_error().as_deref(),
            Some("Could not determine what practice")
        );
    }
}

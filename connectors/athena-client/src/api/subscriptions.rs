//! FHIR topic-based Subscription management (athenahealth Event Subscription Platform, alpha;
//! `shared/docs/athenahealth-api.md` §7.2).
//!
//! * `GET /fhir/r4/SubscriptionTopic` — [`AthenaClient::list_subscription_topics`]. Safe to retry.
//! * `POST /fhir/r4/Subscription` — [`AthenaClient::create_subscription`]. NOT idempotent: a lost
//!   answer is `Error::Ambiguous`; reconcile by listing before creating again.
//! * `GET /fhir/r4/Subscription` — [`AthenaClient::list_subscriptions`]. Safe to retry.
//! * `DELETE /fhir/r4/Subscription/{id}` — [`AthenaClient::delete_subscription`]. Safe to retry
//!   (a second delete answers 404, which callers treat as done).
//!
//! The shared secret travels only in the `X-Hub-Secret` request header of the create call; it is
//! never logged and never part of an error.

use http::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::api::fhir::{Bundle, FHIR_JSON};
use crate::client::{AthenaClient, PracticeId};
use crate::error::Error;
use crate::transport::Call;

const ROUTE: &str = "/fhir/r4/Subscription";
const ROUTE_ID: &str = "/fhir/r4/Subscription/{id}";

impl AthenaClient {
    /// `GET /fhir/r4/SubscriptionTopic` — the topics this app may subscribe to. Safe to retry.
    pub async fn list_subscription_topics(&self) -> Result<Bundle, Error> {
        let call = Call::get(
            "/fhir/r4/SubscriptionTopic",
            self.url(&["fhir", "r4", "SubscriptionTopic"]),
            "",
        )
        .header("Accept", FHIR_JSON);
        Ok(Bundle {
            raw: self.json(&call).await?,
        })
    }

    /// `POST /fhir/r4/Subscription` with `resource` (a backport Subscription) and, when given,
    /// `X-Hub-Secret` so athena signs notifications. Returns the created resource (its `id` is a
    /// UUID). Not idempotent: on `Error::Ambiguous` list before trying again.
    pub async fn create_subscription(
        &self,
        practice: PracticeId,
        resource: &serde_json::Value,
        hub_secret: Option<&SecretString>,
    ) -> Result<serde_json::Value, Error> {
        let mut call = Call::write(
            Method::POST,
            ROUTE,
            self.url(&["fhir", "r4", "Subscription"]),
            practice.to_string(),
            Vec::new(),
            false,
        )
        .header("Accept", FHIR_JSON);
        call.form = None;
        call.json = Some(resource.clone());
        if let Some(s) = hub_secret {
            call = call.header("X-Hub-Secret", s.expose_secret().to_owned());
        }
        self.json(&call).await
    }

    /// `GET /fhir/r4/Subscription` — this app's subscriptions (every page). Safe to retry.
    pub async fn list_subscriptions(&self) -> Result<Vec<serde_json::Value>, Error> {
        let call = Call::get(ROUTE, self.url(&["fhir", "r4", "Subscription"]), "")
            .header("Accept", FHIR_JSON);
        let b = Bundle {
            raw: self.json(&call).await?,
        };
        Ok(b.resources().into_iter().cloned().collect())
    }

    /// `DELETE /fhir/r4/Subscription/{id}`. Safe to retry; `Error::NotFound` means already gone.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), Error> {
        let mut call = Call::write(
            Method::DELETE,
            ROUTE_ID,
            self.url(&["fhir", "r4", "Subscription", id]),
            "",
            Vec::new(),
            true,
        );
        call.form = None;
        self.send(&call).await.map(|_| ())
    }
}

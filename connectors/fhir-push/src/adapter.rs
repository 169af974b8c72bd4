//! The push adapter interface: receive (verify + normalise) and manage subscriptions, so the
//! receiver, the inflation stage and subscription management never depend on one vendor's
//! dialect. athena's Event Subscription Platform is alpha and will change; a change there is a
//! change to [`AthenaAdapter`] only. [`crate::r4_backport::R4BackportAdapter`] is the second
//! implementation, for plain HL7 R4 backport servers.

use http::HeaderMap;
use serde_json::{Value, json};

use crate::error::Error;
use crate::notification::{Notification, parse_bundle};
use crate::signature::{self, SignatureError};

/// What one Subscription must look like.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Topic code, e.g. `Patient.update`.
    pub topic: String,
    /// Our public webhook URL.
    pub endpoint: String,
    /// athenaOne practice id the subscription filters on.
    pub practice_id: u64,
}

/// A vendor dialect of topic-based subscriptions.
pub trait PushAdapter: Send + Sync + 'static {
    /// Short name, used in headers and logs (`athena`, `r4-backport`).
    fn name(&self) -> &'static str;

    /// Authenticates a request from the raw body and headers, before anything is parsed.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError>;

    /// Normalises a notification body.
    fn parse(&self, body: &[u8]) -> Result<Notification, Error> {
        parse_bundle(body)
    }

    /// The Subscription resource to create for `spec`.
    fn subscription(&self, spec: &SubscriptionSpec) -> Value;

    /// The `X-Hub-Secret` to send when creating a Subscription (athena signs with it).
    fn hub_secret(&self) -> Option<secrecy::SecretString> {
        None
    }

    /// Whether `existing` (as listed by the server) already serves `spec`.
    fn serves(&self, existing: &Value, spec: &SubscriptionSpec) -> bool {
        let criteria = existing.get("criteria").and_then(Value::as_str);
        let endpoint = existing
            .get("channel")
            .and_then(|c| c.get("endpoint"))
            .and_then(Value::as_str);
        let active = !matches!(
            existing.get("status").and_then(Value::as_str),
            Some("off" | "error" | "entered-in-error")
        );
        active
            && endpoint == Some(spec.endpoint.as_str())
            && criteria.is_some_and(|c| c.rsplit('/').next() == Some(spec.topic.as_str()))
            && existing
                .to_string()
                .contains(&format!("a-1.Practice-{}", spec.practice_id))
    }
}

/// Backport IG profile URLs.
pub(crate) const BACKPORT_SUBSCRIPTION: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
pub(crate) const FILTER_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
pub(crate) const PAYLOAD_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";

/// athenahealth's Event Subscription Platform: HMAC-SHA256 in `X-Hub-Signature`, id-only
/// payloads, one Subscription per topic per practice (§7).
pub struct AthenaAdapter {
    secret: connector_core::Secret,
    topic_base: String,
}

impl std::fmt::Debug for AthenaAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AthenaAdapter")
            .field("topic_base", &self.topic_base)
            .finish_non_exhaustive()
    }
}

/// athena's canonical topic base.
pub const ATHENA_TOPIC_BASE: &str =
    "https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic";

impl AthenaAdapter {
    /// An adapter verifying with `secret` (the `X-Hub-Secret` given at creation).
    pub fn new(secret: connector_core::Secret) -> Self {
        AthenaAdapter {
            secret,
            topic_base: ATHENA_TOPIC_BASE.into(),
        }
    }
}

impl PushAdapter for AthenaAdapter {
    fn name(&self) -> &'static str {
        "athena"
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let h = headers
            .get(signature::SIGNATURE_HEADER)
            .map(|v| v.to_str().map_err(|_| SignatureError::Malformed))
            .transpose()?;
        signature::verify(self.secret.expose().as_bytes(), h, body)
    }

    fn hub_secret(&self) -> Option<secrecy::SecretString> {
        Some(self.secret.clone().into())
    }

    fn subscription(&self, spec: &SubscriptionSpec) -> Value {
        json!({
            "resourceType": "Subscription",
            "meta": {"profile": [BACKPORT_SUBSCRIPTION]},
            "status": "requested",
            "reason": "athena-connect",
            "criteria": format!("{}/{}", self.topic_base, spec.topic),
            "_criteria": {"extension": [{
                "url": FILTER_EXT,
                "valueString": format!("ah-practice=Organization/a-1.Practice-{}", spec.practice_id)
            }]},
            "channel": {
                "type": "rest-hook",
                "endpoint": spec.endpoint,
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": PAYLOAD_EXT, "valueCode": "id-only"}]}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_subscription_shape_and_match() {
        let a = AthenaAdapter::new(connector_core::Secret::new("k"));
        let spec = SubscriptionSpec {
            topic: "Patient.update".into(),
            endpoint: "https://hooks.example.invalid/athena".into(),
            practice_id: 195900,
        };
        let sub = a.subscription(&spec);
        assert_eq!(
            sub["channel"]["_payload"]["extension"][0]["valueCode"],
            "id-only"
        );
        assert!(a.serves(&sub, &spec));
        let other = SubscriptionSpec {
            topic: "Patient.create".into(),
            ..spec.clone()
        };
        assert!(!a.serves(&sub, &other));
        assert!(!format!("{a:?}").contains("\"k\""));
    }

    #[test]
    fn athena_verify_uses_header() {
        let a = AthenaAdapter::new(connector_core::Secret::new("k"));
        let mut h = HeaderMap::new();
        assert_eq!(a.verify(&h, b"{}"), Err(SignatureError::Missing));
        h.insert(
            "X-Hub-Signature",
            signature::sign(b"k", b"{}").parse().unwrap(),
        );
        assert_eq!(a.verify(&h, b"{}"), Ok(()));
        assert_eq!(a.verify(&h, b"{ }"), Err(SignatureError::Mismatch));
    }
}

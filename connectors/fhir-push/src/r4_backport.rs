//! The plain HL7 R4 backport adapter (FHIR Subscriptions R5 Backport IG on R4): notifications are
//! R4 `Parameters` bundles, and authenticity comes from the `channel.header` the subscriber
//! chose (the IG's mechanism), here an `Authorization: Bearer <secret>` header compared in
//! constant time. Everything else is the default [`PushAdapter`] behaviour.

use http::HeaderMap;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::adapter::{
    BACKPORT_SUBSCRIPTION, FILTER_EXT, PAYLOAD_EXT, PushAdapter, SubscriptionSpec,
};
use crate::signature::SignatureError;

/// A generic R4 backport server.
pub struct R4BackportAdapter {
    secret: connector_core::Secret,
    topic_base: String,
}

impl std::fmt::Debug for R4BackportAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("R4BackportAdapter")
            .field("topic_base", &self.topic_base)
            .finish_non_exhaustive()
    }
}

impl R4BackportAdapter {
    /// `topic_base` is the server's SubscriptionTopic canonical base URL.
    pub fn new(secret: connector_core::Secret, topic_base: impl Into<String>) -> Self {
        R4BackportAdapter {
            secret,
            topic_base: topic_base.into(),
        }
    }
}

impl PushAdapter for R4BackportAdapter {
    fn name(&self) -> &'static str {
        "r4-backport"
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8]) -> Result<(), SignatureError> {
        let got = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(SignatureError::Missing)?
            .as_bytes();
        let want = format!("Bearer {}", self.secret.expose());
        if bool::from(got.ct_eq(want.as_bytes())) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
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
                "header": [format!("Authorization: Bearer {}", self.secret.expose())],
                "_payload": {"extension": [{"url": PAYLOAD_EXT, "valueCode": "id-only"}]}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_checked() {
        let a = R4BackportAdapter::new(
            connector_core::Secret::new("tok"),
            "http://x/SubscriptionTopic",
        );
        let mut h = HeaderMap::new();
        assert_eq!(a.verify(&h, b""), Err(SignatureError::Missing));
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(a.verify(&h, b""), Err(SignatureError::Mismatch));
        h.insert("authorization", "Bearer tok".parse().unwrap());
        assert_eq!(a.verify(&h, b""), Ok(()));
        let spec = SubscriptionSpec {
            topic: "encounter-start".into(),
            endpoint: "https://h/".into(),
            practice_id: 1,
        };
        assert!(a.serves(&a.subscription(&spec), &spec));
    }
}

//! `Subscription` management (§7.2) and the Encounter read the push callbacks need:
//! `POST/GET /fhir/r4/Subscription`, `DELETE /fhir/r4/Subscription/{id}`,
//! `GET /fhir/r4/SubscriptionTopic`, `GET /fhir/r4/Encounter/{id}`. Delivery is in `push.rs`.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::api::fhir::{fhir, outcome};
use crate::push::{SIM_TOPICS, SimSubscription};
use crate::state::SimState;

fn filter_practice(sub: &Value) -> Option<u64> {
    let exts = sub.get("_criteria")?.get("extension")?.as_array()?;
    exts.iter().find_map(|e| {
        let v = e.get("valueString")?.as_str()?;
        let v = v.strip_prefix("ah-practice=")?;
        let v = v.strip_prefix("Organization/").unwrap_or(v);
        v.strip_prefix("a-1.Practice-")?.parse().ok()
    })
}

/// `POST /fhir/r4/Subscription` → 201 with the stored Subscription (`status: active`).
pub async fn create(State(s): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(mut sub) = serde_json::from_slice::<Value>(&body) else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", "The body is not JSON.");
    };
    if sub.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Expected a Subscription.",
        );
    }
    let topic = sub
        .get("criteria")
        .and_then(Value::as_str)
        .and_then(|c| c.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    if !SIM_TOPICS.contains(&topic.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "Unknown SubscriptionTopic.",
        );
    }
    let Some(practice) = filter_practice(&sub).filter(|p| s.config().practices.contains(p)) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "The ah-practice filter criteria is missing or names an unknown practice.",
        );
    };
    let channel = sub.get("channel").cloned().unwrap_or(Value::Null);
    let endpoint = channel
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or("");
    if channel.get("type").and_then(Value::as_str) != Some("rest-hook") || endpoint.is_empty() {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Only rest-hook channels with an endpoint are supported.",
        );
    }
    let content = channel
        .pointer("/_payload/extension/0/valueCode")
        .and_then(Value::as_str);
    if content.is_some_and(|c| c != "id-only") {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "Only id-only payloads are supported.",
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    sub["id"] = json!(id);
    sub["status"] = json!("active");
    let secret = headers
        .get("x-hub-secret")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.push().subscriptions.lock().insert(
        id.clone(),
        SimSubscription {
            id,
            topic,
            practice,
            endpoint: endpoint.to_string(),
            secret,
            resource: sub.clone(),
        },
    );
    s.ensure_notifier();
    fhir(StatusCode::CREATED, sub)
}

/// `GET /fhir/r4/Subscription` → searchset of this app's subscriptions.
pub async fn list(State(s): State<SimState>) -> Response {
    let entries: Vec<Value> = s
        .push()
        .subscriptions
        .lock()
        .values()
        .map(|x| json!({"resource": x.resource, "search": {"mode": "match"}}))
        .collect();
    fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}

/// `DELETE /fhir/r4/Subscription/{id}` → 204, or 404 when unknown.
pub async fn delete(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    match s.push().subscriptions.lock().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "Unknown Subscription."),
    }
}

/// `GET /fhir/r4/SubscriptionTopic` → the topics the simulator emits.
pub async fn topics() -> Response {
    let entries: Vec<Value> = SIM_TOPICS
        .iter()
        .map(|t| {
            json!({"resource": {"resourceType": "SubscriptionTopic", "id": t, "status": "active",
            "description": format!("{t} (simulated)")}})
        })
        .collect();
    fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    )
}

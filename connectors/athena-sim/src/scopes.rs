//! Per-route scope enforcement (decision 0022). One default rule covers every route, including
//! routes added later: any `/v1/{practiceid}/...` route needs the proprietary API scope,
//! `/fhir/r4/{Type}...` needs that type's read scope, `$export` needs one per exported type,
//! and push subscription management needs the Subscription scopes (reference §2.2).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The proprietary athenaOne API scope.
pub const MDP: &str = "athena/service/Athenanet.MDP.*";

/// The scopes a request needs (all of them), by the default rule.
pub fn required(method: &str, path: &str, query: Option<&str>) -> Vec<String> {
    if path.starts_with("/v1/") {
        return vec![MDP.to_string()];
    }
    let Some(rest) = path.strip_prefix("/fhir/r4/") else {
        return Vec::new();
    };
    let mut segs = rest.split('/');
    let ty = segs.next().unwrap_or("");
    match ty {
        // The job's own URLs: a valid token is enough (the kickoff was checked).
        "bulkstatus" | "bulkfiles" | "metadata" | "" => Vec::new(),
        "Subscription" if method == "GET" => vec!["system/Subscription.read".into()],
        "Subscription" => vec!["system/Subscription.write".into()],
        "Group" if rest.ends_with("/$export") => {
            let types: Vec<String> = query
                .and_then(|q| {
                    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                        .ok()?
                        .into_iter()
                        .find(|(k, _)| k == "_type")
                        .map(|(_, v)| v)
                })
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_else(|| vec!["Patient".to_string()]);
            types.iter().map(|t| format!("system/{t}.read")).collect()
        }
        t => vec![format!("system/{t}.read")],
    }
}

/// Whether a granted set (space-separated) covers one need. `system/{T}.read` is covered by
/// `.read`, `.rs`, `.r` or `.s` of `T` or `*` (SMART v1 and v2); `.write` by `.write` or a v2
/// scope with `c`, `u` and `d`; anything else by its exact name.
pub fn granted_covers(granted: &str, needed: &str) -> bool {
    let (nty, nacc) = match needed
        .strip_prefix("system/")
        .and_then(|r| r.rsplit_once('.'))
    {
        Some(x) => x,
        None => return granted.split_whitespace().any(|g| g == needed),
    };
    granted.split_whitespace().any(|g| {
        let Some((gty, gacc)) = g.strip_prefix("system/").and_then(|r| r.rsplit_once('.')) else {
            return false;
        };
        (gty == nty || gty == "*")
            && match nacc {
                "read" => {
                    gacc == "read"
                        || (gacc != "write" && gacc.chars().any(|c| c == 'r' || c == 's'))
                }
                "write" => {
                    gacc == "write"
                        || (gacc != "read" && ['c', 'u', 'd'].iter().all(|c| gacc.contains(*c)))
                }
                other => gacc == other,
            }
    })
}

/// The first need of this request the token's scope does not cover.
pub fn first_missing(
    granted: &str,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Option<String> {
    required(method, path, query)
        .into_iter()
        .find(|n| !granted_covers(granted, n))
}

/// The gateway's answer to a token without the needed scope.
// Guess: athena's gateway refuses a missing scope before the backend, so the body is not JSON;
// the bearer-token RFC 6750 challenge (`insufficient_scope`, naming the scope) is what an
// OAuth gateway sends. Not observed from athena.
pub fn forbidden(needed: &str) -> Response {
    let mut r = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html")],
        "<h1>Not Authorized</h1>",
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "Bearer error=\"insufficient_scope\", scope=\"{needed}\""
    )) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule() {
        assert_eq!(required("GET", "/v1/195900/anything/new", None), vec![MDP]);
        assert_eq!(
            required("GET", "/fhir/r4/Observation", Some("patient=1")),
            vec!["system/Observation.read"]
        );
        assert_eq!(
            required("POST", "/fhir/r4/Subscription", None),
            vec!["system/Subscription.write"]
        );
        assert_eq!(
            required(
                "GET",
                "/fhir/r4/Group/a-1.C-1/$export",
                Some("_type=Patient,Encounter")
            ),
            vec!["system/Patient.read", "system/Encounter.read"]
        );
        assert!(required("GET", "/fhir/r4/bulkstatus/x", None).is_empty());
        assert!(granted_covers("system/Patient.rs", "system/Patient.read"));
        assert!(!granted_covers(MDP, "system/Patient.read"));
        assert!(granted_covers(&format!("x {MDP}"), MDP));
    }
}

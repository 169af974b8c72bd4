//! OAuth scope names and the one rule for "does this granted set cover that need" (decision 0022).
//!
//! Names follow the reference (§2.2): the proprietary API needs [`MDP`]; FHIR reads and searches
//! need `system/{Type}.read` (SMART v1) or `system/{Type}.rs` (SMART v2; `$export` needs `.rs` or
//! `.read` for every exported type); push subscription management needs [`SUBSCRIPTION_READ`],
//! [`SUBSCRIPTION_WRITE`] and [`SUBSCRIPTION_TOPIC_READ`]. The connectors derive what they need
//! from their config; the simulator enforces the same rule per route.

/// The proprietary athenaOne REST API (`/v1/{practiceid}/...`).
pub const MDP: &str = "athena/service/Athenanet.MDP.*";
/// Listing our FHIR push Subscriptions.
pub const SUBSCRIPTION_READ: &str = "system/Subscription.read";
/// Creating and deleting FHIR push Subscriptions.
pub const SUBSCRIPTION_WRITE: &str = "system/Subscription.write";
/// Listing the push platform's SubscriptionTopics.
pub const SUBSCRIPTION_TOPIC_READ: &str = "system/SubscriptionTopic.read";

/// `system/{resource_type}.read`, the SMART v1 read+search scope the connectors request.
pub fn fhir_read(resource_type: &str) -> String {
    format!("system/{resource_type}.read")
}

/// Whether `granted` (athena's `scope` answer, split on spaces) covers `needed`.
///
/// A `system/{Type}.read` need is covered by `.read`, `.rs`, `.r`, `.s` or `.cruds` of that type
/// or of `*` (SMART v1 and v2 spellings); a `.write` need by `.write` or `.cud`-style v2 scopes
/// containing `c`, `u` and `d`; everything else only by the same name.
pub fn covers(granted: &[String], needed: &str) -> bool {
    if granted.iter().any(|g| g == needed) {
        return true;
    }
    let Some(rest) = needed.strip_prefix("system/") else {
        return false;
    };
    let Some((ty, access)) = rest.rsplit_once('.') else {
        return false;
    };
    granted.iter().any(|g| {
        let Some(g) = g.strip_prefix("system/") else {
            return false;
        };
        let Some((gty, gaccess)) = g.rsplit_once('.') else {
            return false;
        };
        if gty != ty && gty != "*" {
            return false;
        }
        match access {
            "read" => {
                gaccess == "read"
                    || (gaccess != "write" && (gaccess.contains('r') || gaccess.contains('s')))
            }
            "write" => {
                gaccess == "write"
                    || (gaccess != "read"
                        && gaccess.contains('c')
                        && gaccess.contains('u')
                        && gaccess.contains('d'))
            }
            _ => gaccess == access,
        }
    })
}

/// `fixed` scopes plus `system/{Type}.read` for each of `fhir_types`, sorted, without duplicates.
pub fn with_fhir_reads(fixed: &[&str], fhir_types: &[&str]) -> Vec<String> {
    normalize(
        fixed
            .iter()
            .map(|s| s.to_string())
            .chain(fhir_types.iter().map(|t| fhir_read(t)))
            .collect(),
    )
}

/// The needs in `needed` that `granted` does not cover, in order.
pub fn missing(needed: &[String], granted: &[String]) -> Vec<String> {
    needed
        .iter()
        .filter(|n| !covers(granted, n))
        .cloned()
        .collect()
}

/// Sorted, without duplicates.
pub fn normalize(mut scopes: Vec<String>) -> Vec<String> {
    scopes.sort();
    scopes.dedup();
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn coverage_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&[MDP], MDP, true),
            (&[MDP], "system/Patient.read", false),
            (&["system/Patient.read"], "system/Patient.read", true),
            (&["system/Patient.rs"], "system/Patient.read", true),
            (&["system/*.read"], "system/Observation.read", true),
            (&["system/Observation.read"], "system/Patient.read", false),
            (&["system/Subscription.read"], SUBSCRIPTION_WRITE, false),
            (&["system/Subscription.cud"], SUBSCRIPTION_WRITE, true),
            (&["system/Subscription.write"], SUBSCRIPTION_READ, false),
        ];
        for (granted, needed, want) in cases {
            assert_eq!(covers(&v(granted), needed), *want, "{granted:?} {needed}");
        }
        assert_eq!(
            missing(&v(&[MDP, "system/Patient.read"]), &v(&[MDP])),
            v(&["system/Patient.read"])
        );
    }
}

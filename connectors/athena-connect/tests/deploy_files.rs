//! The deployment files stay consistent with the binary: the Kubernetes config loads and
//! validates, every manifest parses, the pod's grace period exceeds `shutdown_timeout`, and the
//! Grafana dashboard only queries metrics the process actually exports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use athena_connect::config::RootConfig;
use athena_connect::connectors;
use connector_core::config::Validate;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn k8s_config() -> RootConfig {
    let dir = tempfile::tempdir().unwrap();
    for f in ["kafka-password", "admin-token", "athena-client-secret"] {
        std::fs::write(dir.path().join(f), "k8s-test-secret-value-0123\n").unwrap();
    }
    let text = read("deploy/k8s/config.toml").replace(
        "/run/secrets/athena-connect/",
        &format!("{}/", dir.path().display()),
    );
    let env: BTreeMap<String, String> = [
        ("ATHENA_CLIENT_ID", "id"),
        ("FHIR_PUSH_SECRET", "k8s-test-push-secret-0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = RootConfig::load_str(&text, &env).expect("k8s config loads");
    c.validate().expect("k8s config validates");
    connectors::validate_all(&c).expect("k8s connectors type");
    c
}

#[test]
fn kubernetes_manifests_and_config_agree() {
    let config = k8s_config();
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/kustomization.yaml")).unwrap();
    for r in kustomization["resources"].as_sequence().unwrap() {
        let file = format!("deploy/k8s/{}", r.as_str().unwrap());
        let _: serde_yaml::Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
    }
    let _: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/secret.example.yaml")).unwrap();
    let deployment: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/deployment.yaml")).unwrap();
    let spec = &deployment["spec"]["template"]["spec"];
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > config.shutdown_timeout.as_secs() + 5,
        "terminationGracePeriodSeconds {grace} must exceed shutdown_timeout {:?}",
        config.shutdown_timeout
    );
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let container = &spec["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(args, ["run", "--config", "/etc/athena-connect/config.toml"]);
    assert_eq!(config.admin.listen.port(), 9400);
}

#[test]
fn grafana_dashboard_queries_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/athena-connect.json")).unwrap();
    // Families without samples are not rendered, so take the registered names from the one file
    // that defines every metric.
    let source = read("connectors/connector-core/src/metrics.rs");
    let exported: Vec<String> = source
        .split("registry.register(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|n| format!("athena_connect_{n}"))
        .collect();
    assert!(exported.len() >= 10, "{exported:?}");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("athena_connect_"))
            {
                let base = ["_bucket", "_total", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(
                    exported.iter().any(|e| e == base),
                    "panel {:?} queries {name}, which the process does not export",
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 13);
}

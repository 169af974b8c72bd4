//! The deployment files stay consistent with the binary: the Kubernetes config loads and
//! validates, every manifest parses, the pod's grace period exceeds `shutdown_timeout`, schema
//! registration runs as the Deployment's initContainer (no fixed-name Job), the sources run as a
//! multi-replica rolling Deployment guarded by a PodDisruptionBudget on the same pods, and the Grafana
//! dashboard and the alert rules only query metrics the process actually exports.

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

/// The strings of a YAML sequence.
fn strings(v: &serde_yaml::Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect()
}

fn k8s_config() -> RootConfig {
    k8s_config_in_pod("athena-connect-5d9c7b-x2x4q")
}

/// The Kubernetes config as the pod `pod` loads it (`POD_NAME` from the downward API).
fn k8s_config_in_pod(pod: &str) -> RootConfig {
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
        ("POD_NAME", pod),
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
    // Several replicas of one config share the work through Kafka groups (docs/scaling.md); a
    // rollout replaces one pod at a time, the new one started first.
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "replicas: {replicas}");
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        strategy["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0)
    );
    // The PodDisruptionBudget selects exactly the Deployment's pods and leaves most of them up.
    let resources = strings(&kustomization["resources"]);
    assert!(resources.contains(&"pdb.yaml"), "{resources:?}");
    let pdb: serde_yaml::Value = serde_yaml::from_str(&read("deploy/k8s/pdb.yaml")).unwrap();
    assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        "the selector is the pods' labels"
    );
    let max_unavailable = pdb["spec"]["maxUnavailable"]
        .as_u64()
        .expect("the budget is a count of pods");
    assert!(
        (1..replicas).contains(&max_unavailable),
        "maxUnavailable {max_unavailable} of {replicas}: drains proceed and some pods stay"
    );
    // Replicas never share a write-back transactional id (nor so a static group member id):
    // two pods' configs give two, from the pod name the Deployment passes in.
    let env_names: Vec<&str> = spec["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env_names.contains(&"POD_NAME"), "{env_names:?}");
    let other = k8s_config_in_pod("athena-connect-5d9c7b-q7r2m");
    for name in config.sinks.write_back.keys() {
        let ids = [&config, &other].map(|c| {
            let sink: write_back_sink::Config = athena_connect::config::typed(
                &format!("sinks.write_back.{name}"),
                &c.sinks.write_back[name],
            )
            .unwrap();
            sink.transactional_id(name)
        });
        assert_ne!(
            ids[0], ids[1],
            "sinks.write_back.{name}: one id per replica"
        );
    }
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let container = &spec["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args, ["run", "--config", "/etc/athena-connect/config.toml"]);
    assert_eq!(config.admin.listen.port(), 9400);

    // Schemas are registered before the connectors start, by an initContainer of the same image
    // (ordered, and re-applied with every new image); no Job with a fixed name.
    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], container["image"]);
    assert_eq!(
        init["args"].as_sequence().unwrap(),
        &["schemas", "register"].map(serde_yaml::Value::from)
    );
    for r in kustomization["resources"].as_sequence().unwrap() {
        let file = format!("deploy/k8s/{}", r.as_str().unwrap());
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&file)).unwrap();
        assert_ne!(
            doc["kind"].as_str(),
            Some("Job"),
            "{file}: a Job's fixed name cannot be re-applied with a new image"
        );
    }
}

/// Metric names `registry.register("...")` defines in the one file that defines every metric
/// (families without samples are not rendered, so the process cannot be asked).
fn exported_metrics() -> Vec<String> {
    let source = read("connectors/connector-core/src/metrics.rs");
    let mut exported: Vec<String> = source
        .split("registry.register(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|n| format!("athena_connect_{n}"))
        .collect();
    // The conventional unprefixed process metrics (ProcessCollector).
    exported.extend(
        source
            .split('"')
            .filter(|w| w.starts_with("process_") && !w.contains(' '))
            .map(str::to_string),
    );
    exported
}

/// Every metric `expr` queries, checked against [`exported_metrics`]; returns how many.
fn check_expr(expr: &str, exported: &[String], what: &str) -> usize {
    let mut checked = 0;
    for name in expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("athena_connect_") || w.starts_with("process_"))
    {
        let base = ["_bucket", "_total", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            exported.iter().any(|e| e == base),
            "{what} queries {name}, which the process does not export"
        );
        checked += 1;
    }
    checked
}

#[test]
fn alert_rules_and_service_monitor() {
    let exported = exported_metrics();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/athena-connect-alerts.yml")).unwrap();
    let mut alerts = Vec::new();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_string();
            let expr = r["expr"].as_str().unwrap();
            assert!(check_expr(expr, &exported, &name) >= 1, "{name}");
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
            assert!(
                r["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            alerts.push(name);
        }
    }
    // What operators asked for: a failed connector, growing lag, quota near zero, growing DLQ.
    for a in [
        "AthenaConnectConnectorFailed",
        "AthenaConnectConsumerLagGrowing",
        "AthenaConnectAthenaQuotaLow",
        "AthenaConnectDeadLettersGrowing",
    ] {
        assert!(alerts.iter().any(|x| x == a), "{a} missing: {alerts:?}");
    }

    // The Prometheus Operator's copy holds exactly the same groups.
    let rule: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/monitoring/prometheusrule.yaml")).unwrap();
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(rule["spec"]["groups"], rules["groups"]);

    // The ServiceMonitor scrapes the Service's admin port at /metrics.
    let sm: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/monitoring/servicemonitor.yaml")).unwrap();
    let service: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/service.yaml")).unwrap();
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"].as_str() == Some(port)),
        "ServiceMonitor port {port} is not a Service port"
    );
    assert_eq!(
        sm["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
    let kustomization: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/k8s/monitoring/kustomization.yaml")).unwrap();
    for r in kustomization["resources"].as_sequence().unwrap() {
        let file = format!("deploy/k8s/monitoring/{}", r.as_str().unwrap());
        let _: serde_yaml::Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
    }
}

#[test]
fn grafana_dashboard_queries_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/athena-connect.json")).unwrap();
    let exported = exported_metrics();
    assert!(exported.len() >= 10, "{exported:?}");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut checked = 0;
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            checked += check_expr(expr, &exported, &format!("panel {:?}", p["title"]));
        }
    }
    assert!(checked >= 13);
    // The lag, librdkafka, process and build panels are there.
    let all = dash["panels"].to_string();
    for m in [
        "athena_connect_consumer_lag_records",
        "athena_connect_kafka_broker_rtt_seconds",
        "process_resident_memory_bytes",
        "athena_connect_build_info",
    ] {
        assert!(all.contains(m), "no panel queries {m}");
    }
}

//! `athena-connect subscriptions status|ensure|delete`: the FHIR Subscriptions of every
//! `[sources.fhir_push.<name>]` connector, managed by hand (the running connector reconciles
//! them itself when `manage_subscriptions = true`).

use std::path::Path;

use athena_client::AthenaClient;

use crate::config::{Kind, typed};
use crate::{exit, run};

/// Runs `action` (`status`, `ensure`, `delete`) for the push connectors of the file (or those
/// in `only`); one line per subscription on stdout. Returns the exit code.
pub async fn run(path: &Path, action: &str, only: &[String]) -> i32 {
    let mut err = std::io::stderr();
    let mut config = match run::load_without_admin(path, &mut err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.retain_only(only) {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let athena = match AthenaClient::new(config.athena.clone()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: athena client: {e}");
            return exit::USAGE;
        }
    };
    let mut code = exit::OK;
    for i in config
        .instances()
        .into_iter()
        .filter(|i| i.kind == Kind::FhirPush)
    {
        let name = i.name;
        let mut table = i.table.clone();
        table.remove("restart");
        let c: fhir_push::Config = match typed(&format!("{}.{name}", i.kind.section()), &table) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let adapter = fhir_push::build_adapter(&c);
        let specs = fhir_push::subscription_specs(&c);
        let result = match action {
            "ensure" => {
                let secret = adapter.hub_secret();
                fhir_push::manage::reconcile(
                    &athena,
                    adapter.as_ref(),
                    secret.as_ref(),
                    &specs,
                    true,
                )
                .await
            }
            "delete" => fhir_push::manage::delete_all(&athena, adapter.as_ref(), &specs)
                .await
                .map(|n| {
                    println!("{name}: deleted {n} subscription(s)");
                    Vec::new()
                }),
            _ => fhir_push::manage::status(&athena, adapter.as_ref(), &specs).await,
        };
        match result {
            Ok(statuses) => {
                for s in statuses {
                    println!(
                        "{name}\t{}\t{}\t{}{}",
                        s.topic,
                        s.status,
                        s.id.as_deref().unwrap_or("-"),
                        if s.created { "\tcreated" } else { "" }
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                code = exit::FAILURE;
            }
        }
    }
    code
}

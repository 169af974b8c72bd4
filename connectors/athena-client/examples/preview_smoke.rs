//! Smoke test against athenahealth's PREVIEW sandbox with real credentials (manual; not run by CI).
//!
//! ```sh
//! ATHENA_CLIENT_ID=... ATHENA_CLIENT_SECRET=... cargo run -p athena-client --example preview_smoke
//! ```
//! Optional: `ATHENA_BASE_URL` (default preview), `ATHENA_PRACTICE_ID` (default 195900),
//! `ATHENA_SCOPES` (space-separated; default `athena/service/Athenanet.MDP.*`).
//! It fetches one token, pings the practice, shows the subscription state of the appointments feed without
//! polling it (a poll is destructive), and prints the quota headers. It prints ids and counts only.

use athena_client::api::changed::Feed;
use athena_client::{AthenaClient, ClientConfig, Environment};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let client_id = env("ATHENA_CLIENT_ID").ok_or("set ATHENA_CLIENT_ID")?;
    let secret = SecretString::from(env("ATHENA_CLIENT_SECRET").ok_or("set ATHENA_CLIENT_SECRET")?);
    let environment = match env("ATHENA_BASE_URL") {
        Some(u) => Environment::Custom(u.parse()?),
        None => Environment::Preview,
    };
    let mut config = ClientConfig::new(environment, client_id, secret);
    if let Some(s) = env("ATHENA_SCOPES") {
        config.scopes = s.split_whitespace().map(str::to_owned).collect();
    }
    // Preview allows 5 token requests per minute and ~15 requests per second; stay well below.
    config.rate_limit.qps = 2.0;
    config.rate_limit.burst = 2;
    config.rate_limit.token_requests_per_minute = 5;
    let practice_id: u64 = env("ATHENA_PRACTICE_ID")
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(195_900);

    let client = AthenaClient::new(config)?;
    client.check_credentials().await?;
    println!("token: ok");
    let practice = client.practice(practice_id);
    practice.ping().await?;
    println!("ping {practice_id}: ok");
    match practice.changed_subscription(Feed::Appointments).await {
        Ok(s) => println!(
            "appointments feed subscription: {} ({} events)",
            s.status,
            s.subscriptions.len()
        ),
        Err(e) => println!(
            "appointments feed subscription: {e} (class {:?})",
            e.class()
        ),
    }
    let q = client.quota();
    println!("quota: limit {:?}, remaining {:?}", q.limit, q.remaining);
    println!("stats: {:?}", client.stats());
    Ok(())
}

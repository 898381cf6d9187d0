//! A minimal wasmCloud 1.x host for Arbiter's interoperability tests: the `wasmcloud-host` library
//! from crates.io, started with a NATS URL, a lattice, the policy service settings and file loads
//! allowed, so that a test can drive it over the control interface.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nkeys::KeyPair;
use wasmcloud_host::url::Url;
use wasmcloud_host::wasmbus::host_config::PolicyService;
use wasmcloud_host::wasmbus::{Host, HostConfig};

/// The wasmCloud release this host stands for, reported in its ping answers and events.
const WASMCLOUD_VERSION: &str = "1.9.2";

/// The crates.io `wasmcloud-host` release this binary is built on (pinned in Cargo.toml).
const WASMCLOUD_HOST_CRATE: &str = "0.27.1";

const USAGE: &str = "usage: arbiter-wasmcloud-host [--nats-url URL] [--lattice NAME] [--policy-topic T]
  [--policy-changes-topic T] [--policy-timeout-ms N] [--host-seed SN...] [--label K=V]... [--no-file-load]
  [--version]
Unset flags fall back to NATS_URL, WASMCLOUD_LATTICE, WASMCLOUD_POLICY_TOPIC,
WASMCLOUD_POLICY_CHANGES_TOPIC, WASMCLOUD_POLICY_TIMEOUT (ms) and WASMCLOUD_HOST_SEED.
Loading components from files is allowed unless --no-file-load is given.
Prints one JSON line {\"event\":\"started\",...} on stdout once the host is up; logs go to stderr
(RUST_LOG filters them). SIGINT or SIGTERM stops the host gracefully.";

struct Settings {
    nats_url: String,
    lattice: String,
    policy_topic: Option<String>,
    policy_changes_topic: Option<String>,
    policy_timeout: Option<Duration>,
    host_seed: Option<String>,
    labels: HashMap<String, String>,
    allow_file_load: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn parse_settings(mut args: impl Iterator<Item = String>) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        nats_url: env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_string()),
        lattice: env("WASMCLOUD_LATTICE").unwrap_or_else(|| "default".to_string()),
        policy_topic: env("WASMCLOUD_POLICY_TOPIC"),
        policy_changes_topic: env("WASMCLOUD_POLICY_CHANGES_TOPIC"),
        policy_timeout: None,
        host_seed: env("WASMCLOUD_HOST_SEED"),
        labels: HashMap::new(),
        allow_file_load: true,
    };
    let mut timeout_ms = env("WASMCLOUD_POLICY_TIMEOUT");
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-url" => settings.nats_url = value()?,
            "--lattice" => settings.lattice = value()?,
            "--policy-topic" => settings.policy_topic = Some(value()?),
            "--policy-changes-topic" => settings.policy_changes_topic = Some(value()?),
            "--policy-timeout-ms" => timeout_ms = Some(value()?),
            "--host-seed" => settings.host_seed = Some(value()?),
            "--label" => {
                let pair = value()?;
                let (key, val) = pair
                    .split_once('=')
                    .with_context(|| format!("--label {pair}: expected K=V"))?;
                settings.labels.insert(key.to_string(), val.to_string());
            }
            "--no-file-load" => settings.allow_file_load = false,
            "--version" => {
                println!("arbiter-wasmcloud-host wasmcloud-host={WASMCLOUD_HOST_CRATE} wasmcloud={WASMCLOUD_VERSION}");
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if let Some(ms) = timeout_ms {
        let ms: u64 = ms
            .parse()
            .with_context(|| format!("policy timeout {ms:?} is not a whole number of ms"))?;
        settings.policy_timeout = Some(Duration::from_millis(ms));
    }
    Ok(settings)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let settings = parse_settings(std::env::args().skip(1))?;
    let nats_url = Url::parse(&settings.nats_url)
        .with_context(|| format!("bad NATS URL {}", settings.nats_url))?;
    let host_key = match &settings.host_seed {
        Some(seed) => {
            KeyPair::from_seed(seed).context("WASMCLOUD_HOST_SEED / --host-seed is not a seed")?
        }
        None => KeyPair::new_server(),
    };
    let host_id = host_key.public_key();

    let config = HostConfig {
        ctl_nats_url: nats_url.clone(),
        rpc_nats_url: nats_url,
        lattice: Arc::from(settings.lattice.as_str()),
        host_key: Some(Arc::new(host_key)),
        labels: settings.labels,
        allow_file_load: settings.allow_file_load,
        policy_service_config: PolicyService {
            policy_topic: settings.policy_topic.clone(),
            policy_changes_topic: settings.policy_changes_topic.clone(),
            policy_timeout_ms: settings.policy_timeout,
        },
        version: WASMCLOUD_VERSION.to_string(),
        ..HostConfig::default()
    };
    let (host, shutdown) = Host::new(config).await.context("the host did not start")?;

    println!(
        "{{\"event\":\"started\",\"hostId\":\"{host_id}\",\"lattice\":\"{}\",\"version\":\"{WASMCLOUD_VERSION}\",\"policyTopic\":{},\"policyChangesTopic\":{}}}",
        settings.lattice,
        json_string(settings.policy_topic.as_deref()),
        json_string(settings.policy_changes_topic.as_deref()),
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        stopped = host.stopped() => { stopped.context("the host stopped unexpectedly")?; }
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    shutdown
        .await
        .context("the host did not shut down cleanly")?;
    Ok(())
}

/// A JSON string literal for a topic name (NATS subjects hold no quotes or backslashes), or null.
fn json_string(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("\"{value}\""),
        None => "null".to_string(),
    }
}

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
  [--nats-jwt JWT --nats-seed SU...] [--ctl-jwt JWT --ctl-seed SU...] [--rpc-jwt JWT --rpc-seed SU...]
  [--nats-creds FILE] [--version]
Unset flags fall back to NATS_URL, WASMCLOUD_LATTICE, WASMCLOUD_POLICY_TOPIC,
WASMCLOUD_POLICY_CHANGES_TOPIC, WASMCLOUD_POLICY_TIMEOUT (ms) and WASMCLOUD_HOST_SEED.
NATS credentials (a user JWT and its nkey seed, as wasmCloud 1.x takes them) fall back to
WASMCLOUD_NATS_JWT/_SEED (both connections), WASMCLOUD_CTL_JWT/_SEED and WASMCLOUD_RPC_JWT/_SEED;
--nats-creds reads both from a NATS .creds file. A JWT needs its seed and a seed its JWT.
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
    ctl_credentials: Credentials,
    rpc_credentials: Credentials,
}

/// A NATS user JWT and its nkey seed for one of the host's two connections; both or neither.
#[derive(Default, Clone)]
struct Credentials {
    jwt: Option<String>,
    seed: Option<String>,
}

impl Credentials {
    fn from_env(prefix: &str) -> Self {
        Credentials {
            jwt: env(&format!("{prefix}_JWT")).or_else(|| env("WASMCLOUD_NATS_JWT")),
            seed: env(&format!("{prefix}_SEED")).or_else(|| env("WASMCLOUD_NATS_SEED")),
        }
    }

    /// The JWT and the key pair of its seed, or None when no credentials were given.
    fn resolve(&self, connection: &str) -> anyhow::Result<(Option<String>, Option<Arc<KeyPair>>)> {
        match (&self.jwt, &self.seed) {
            (None, None) => Ok((None, None)),
            (Some(jwt), Some(seed)) => {
                let key = KeyPair::from_seed(seed)
                    .with_context(|| format!("the {connection} NATS seed is not an nkey seed"))?;
                Ok((Some(jwt.clone()), Some(Arc::new(key))))
            }
            (Some(_), None) => bail!("the {connection} NATS JWT was given without its seed"),
            (None, Some(_)) => bail!("the {connection} NATS seed was given without its JWT"),
        }
    }
}

/// The user JWT and seed of a NATS `.creds` file (the two armored blocks `nsc` writes).
fn read_creds_file(path: &str) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let block = |what: &str| -> anyhow::Result<String> {
        let begin = format!("-----BEGIN {what}-----");
        let start = text
            .find(&begin)
            .with_context(|| format!("{path} has no {what} block"))?
            + begin.len();
        let rest = &text[start..];
        let end = rest
            .find("------END")
            .with_context(|| format!("{path}: the {what} block is not closed"))?;
        Ok(rest[..end].trim().to_string())
    };
    Ok(Credentials {
        jwt: Some(block("NATS USER JWT")?),
        seed: Some(block("USER NKEY SEED")?),
    })
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
        ctl_credentials: Credentials::from_env("WASMCLOUD_CTL"),
        rpc_credentials: Credentials::from_env("WASMCLOUD_RPC"),
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
            "--nats-jwt" => {
                let jwt = value()?;
                settings.ctl_credentials.jwt = Some(jwt.clone());
                settings.rpc_credentials.jwt = Some(jwt);
            }
            "--nats-seed" => {
                let seed = value()?;
                settings.ctl_credentials.seed = Some(seed.clone());
                settings.rpc_credentials.seed = Some(seed);
            }
            "--ctl-jwt" => settings.ctl_credentials.jwt = Some(value()?),
            "--ctl-seed" => settings.ctl_credentials.seed = Some(value()?),
            "--rpc-jwt" => settings.rpc_credentials.jwt = Some(value()?),
            "--rpc-seed" => settings.rpc_credentials.seed = Some(value()?),
            "--nats-creds" => {
                let creds = read_creds_file(&value()?)?;
                settings.ctl_credentials = creds.clone();
                settings.rpc_credentials = creds;
            }
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
    let (ctl_jwt, ctl_key) = settings.ctl_credentials.resolve("control")?;
    let (rpc_jwt, rpc_key) = settings.rpc_credentials.resolve("RPC")?;

    let config = HostConfig {
        ctl_nats_url: nats_url.clone(),
        ctl_jwt,
        ctl_key,
        rpc_nats_url: nats_url,
        rpc_jwt,
        rpc_key,
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

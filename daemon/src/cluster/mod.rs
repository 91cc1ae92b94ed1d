//! Beyond one machine, on NATS with JetStream (`[cluster]` in the daemon config): the
//! connection (async-nats reconnects by itself; losing it never stops local runs) and what
//! the daemon does with it. Without `[cluster]` none of this runs.
//!
//! Today that is queue-driven async completion (`completions`): a step with
//! `wait = { queue = "STREAM" }` ends when a completion message for its invocation arrives on
//! that JetStream stream.

pub mod agent;
mod completions;
mod dispatch;
mod fleet;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

pub use completions::{CompletionMessage, CompletionStatus, MAX_COMPLETION_BYTES};
pub use dispatch::{DispatchHook, Dispatcher, KnownAgent, RemoteAnswer, RemoteCall, RemotePlugin};
pub use wire::is_agent_name;

/// The stream completion messages arrive on unless `completions_stream` says otherwise (the
/// name the seed documents give the queue).
pub const DEFAULT_COMPLETIONS_STREAM: &str = "INVOCATION_COMPLETED_TASKS";
/// How long a completion for an invocation no step waits for (yet) is kept for the step that
/// may still come, unless `hold_unknown` says otherwise.
pub const DEFAULT_HOLD_UNKNOWN: Duration = Duration::from_secs(10 * 60);
/// The longest stream name the config or a runbook may give.
const MAX_STREAM_NAME: usize = 64;

/// `[cluster]`, checked.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub servers: Vec<async_nats::ServerAddr>,
    /// A NATS credentials file (JWT and nkey seed).
    pub credentials: Option<PathBuf>,
    /// A file holding a user nkey seed.
    pub nkey_file: Option<PathBuf>,
    /// Certificate authorities of the servers (PEM); set, TLS is required.
    pub tls_ca: Option<PathBuf>,
    /// The daemon's client certificate and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub completions_stream: String,
    pub hold_unknown: Duration,
}

/// The servers of `cluster.nats` (or `--nats`): one or several addresses separated by
/// commas.
pub fn parse_servers(text: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let servers = text
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(|server| {
            server.parse::<async_nats::ServerAddr>().map_err(|err| {
                anyhow::anyhow!("cluster.nats: `{server}` is not a NATS address: {err}")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if servers.is_empty() {
        anyhow::bail!("cluster.nats: give at least one server, e.g. \"nats://127.0.0.1:4222\"");
    }
    Ok(servers)
}

impl ClusterConfig {
    /// An agent's connection: `[cluster]` of its config (credentials, TLS) with `nats`, the
    /// `--nats` flag, in place of its servers when given.
    pub fn for_agent(nats: Option<&str>, configured: Option<Self>) -> anyhow::Result<Self> {
        let servers = nats.map(parse_servers).transpose()?;
        match (servers, configured) {
            (Some(servers), Some(configured)) => Ok(Self {
                servers,
                ..configured
            }),
            (None, Some(configured)) => Ok(configured),
            (Some(servers), None) => Ok(Self {
                servers,
                credentials: None,
                nkey_file: None,
                tls_ca: None,
                client_cert: None,
                completions_stream: DEFAULT_COMPLETIONS_STREAM.to_owned(),
                hold_unknown: DEFAULT_HOLD_UNKNOWN,
            }),
            (None, None) => anyhow::bail!(
                "an agent needs NATS: give --nats URL, or `[cluster] nats` in the config"
            ),
        }
    }
}

/// Whether `name` may name a JetStream stream here: 1 to 64 ASCII letters, digits, `-` and
/// `_` (JetStream refuses spaces, `.`, `*`, `>` and path separators; the rest is kept plain).
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// The running cluster side: what `runbook status` shows of it.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    dispatcher: Dispatcher,
    config: Arc<ClusterConfig>,
    counts: Arc<Counts>,
}

/// What the completion consumer did since the daemon started.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) completed: AtomicU64,
    /// Completions dropped: unreadable, or for an invocation no step waited for in time.
    pub(crate) dropped: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Cluster {
    /// Connects in the background (retrying until NATS answers) and starts the completion
    /// consumer; both stop with `stopping`.
    pub async fn start(
        config: ClusterConfig,
        engine: Engine,
        stopping: CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = connect(&config, concat!("runbookd/", env!("CARGO_PKG_VERSION"))).await?;
        let dispatcher = Dispatcher::start(client.clone(), stopping.clone());
        dispatcher.withdraw(engine.take_withdrawals());
        engine.set_dispatcher(dispatcher.clone());
        let cluster = Self {
            client,
            dispatcher,
            config: Arc::new(config),
            counts: Arc::default(),
        };
        let consumer = completions::Consumer {
            jetstream: async_nats::jetstream::new(cluster.client.clone()),
            config: cluster.config.clone(),
            counts: cluster.counts.clone(),
            engine,
        };
        tokio::spawn(consumer.run(stopping));
        Ok(cluster)
    }

    /// Every agent the daemon has heard of.
    pub fn agents(&self) -> Vec<KnownAgent> {
        self.dispatcher.agents()
    }

    /// One line for `runbook status`: the servers, the connection's state, the stream.
    pub fn describe(&self) -> String {
        let state = match self.client.connection_state() {
            async_nats::connection::State::Connected => "connected",
            async_nats::connection::State::Pending => "connecting",
            async_nats::connection::State::Disconnected => "disconnected (reconnecting)",
        };
        let servers = self
            .config
            .servers
            .iter()
            // Never the user and password a URL may carry.
            .map(|server| format!("{}://{}:{}", server.scheme(), server.host(), server.port()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{servers}: {state}; completions on {} ({} completed, {} dropped)",
            self.config.completions_stream,
            self.counts.completed.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed)
        )
    }
}

/// A NATS client for `config`, connecting in the background (retrying until NATS answers)
/// and reconnecting by itself; `name` is what the servers see.
pub(crate) async fn connect(
    config: &ClusterConfig,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    use anyhow::Context as _;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection");
        });
    if let Some(ca) = &config.tls_ca {
        options = options.require_tls(true).add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(file) = &config.nkey_file {
        options = options.nkey(read_nkey_seed(file)?);
    }
    if let Some(file) = &config.credentials {
        options = options
            .credentials_file(file)
            .await
            .with_context(|| format!("cluster.credentials: cannot read {}", file.display()))?;
    }
    options
        .connect(config.servers.clone())
        .await
        .context("cannot connect to NATS")
}

/// The user nkey seed in `file`: one `SU…` line, in a file no one else may read (it
/// authenticates the daemon as the credentials file does).
pub(crate) fn read_nkey_seed(file: &std::path::Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = file.display();
    let meta = std::fs::metadata(file)
        .map_err(|err| anyhow::anyhow!("cluster.nkey_file: cannot read {shown}: {err}"))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "cluster.nkey_file: {shown} may be read by others (mode {mode:o}); `chmod 600` it"
        );
    }
    let text = std::fs::read_to_string(file)
        .map_err(|err| anyhow::anyhow!("cluster.nkey_file: cannot read {shown}: {err}"))?;
    let seed = text.trim();
    // Never the seed itself in the message.
    if !seed.starts_with("SU") || seed.lines().count() != 1 {
        anyhow::bail!(
            "cluster.nkey_file: {shown} does not hold one user nkey seed (a line starting `SU`)"
        );
    }
    Ok(seed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_plain() {
        for good in [
            "INVOCATION_COMPLETED_TASKS",
            "jobs-done",
            "a",
            &"x".repeat(64),
        ] {
            assert!(is_stream_name(good), "{good}");
        }
        for bad in ["", "a.b", "a b", "a*", "a>", "../x", &"x".repeat(65), "é"] {
            assert!(!is_stream_name(bad), "{bad}");
        }
    }
}

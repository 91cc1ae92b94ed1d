//! The daemon's configuration: command-line flags and environment (`RUNBOOK_*`) over an
//! optional TOML file, validated into a [`Config`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::engine::{ApprovalPolicy, Policy};
use crate::plugins::{ConnectionUrl, DEFAULT_MAX_RESPONSE_BYTES, HttpSettings, Limits};

/// Everything `runbookd` needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub runbooks_dir: PathBuf,
    pub plugins_dir: PathBuf,
    /// Compiled plugins, keyed by content and engine.
    pub cache_dir: PathBuf,
    pub socket: PathBuf,
    pub policy: Policy,
    pub limits: Limits,
    pub http: HttpSettings,
    /// What each third-party step kind's plugin is granted (`[plugins.KIND]`).
    pub plugin_grants: std::collections::BTreeMap<String, crate::plugins::PluginGrant>,
    /// Fuel of one template render (`[limits] template_fuel`).
    pub template_fuel: u64,
    /// How long running steps get to end after SIGTERM or `daemon stop`.
    pub shutdown_grace: std::time::Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`[metrics] listen`); none by
    /// default.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Which ended runs go (`[retention]`); empty keeps them all.
    pub retention: crate::engine::RetentionPolicy,
    /// How long audit entries are kept (`[retention] audit`).
    pub audit_retention: std::time::Duration,
    /// NATS with JetStream (`[cluster]`); none: one machine, nothing changes.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// How long running steps get to end after SIGTERM when the config sets no `shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The config file as written (`runbookd --config FILE`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    runbooks_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    /// Per step kind: "required" or "auto".
    #[serde(default)]
    approvals: HashMap<String, ApprovalPolicy>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    http: RawHttp,
    /// Per third-party step kind: what its plugin is granted.
    #[serde(default)]
    plugins: HashMap<String, RawPluginGrant>,
    /// Named database connections.
    #[serde(default)]
    connections: std::collections::BTreeMap<String, RawConnection>,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    retention: RawRetention,
    cluster: Option<RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    /// `nats://HOST:PORT` (or `tls://`), or several separated by commas.
    nats: String,
    /// A NATS credentials file (JWT and nkey seed), as `nsc` writes it.
    credentials: Option<PathBuf>,
    /// A file holding the daemon's NATS user nkey seed (`SU…`), private to its owner.
    nkey_file: Option<PathBuf>,
    /// PEM file of the certificate authorities the servers' certificates must chain to; set,
    /// the connection must be TLS.
    tls_ca: Option<PathBuf>,
    /// PEM files of the daemon's client certificate and key, for servers that verify clients.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// The JetStream stream of completion messages.
    completions_stream: Option<String>,
    /// How long a completion for an invocation no step waits for is kept, e.g. "10m".
    hold_unknown: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    /// Ended runs older than this go, e.g. "30d".
    runs: Option<String>,
    /// At most this many ended runs are kept.
    max_runs: Option<usize>,
    /// Audit entries older than this go, e.g. "730d".
    audit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// `HOST:PORT`, or a port alone for loopback.
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Option<String>,
    /// The name of a secret in the vault holding the URL.
    url_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Hosts the built-in http and graphql plugins may reach; absent: any.
    allowed_hosts: Option<Vec<String>>,
    max_response_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginGrant {
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allowed_connections: Vec<String>,
    #[serde(default)]
    allow_process: bool,
    #[serde(default)]
    allow_jwt: bool,
}

/// A size in the config: a number of bytes, or text such as `"8MiB"` (B, KiB, MiB, GiB).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    fn bytes(&self) -> Option<u64> {
        let text = match self {
            Self::Bytes(bytes) => return Some(*bytes),
            Self::Text(text) => text.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            _ => return None,
        };
        number.parse::<u64>().ok()?.checked_mul(1 << shift)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => write!(f, "{bytes}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    step_timeout: Option<String>,
    plugin_cpu: Option<String>,
    plugin_memory_mib: Option<usize>,
    step_output_bytes: Option<ByteSize>,
    plugin_call_timeout: Option<String>,
    template_fuel: Option<u64>,
    shutdown_grace: Option<String>,
    resume_watch: Option<String>,
    loop_items: Option<usize>,
    loop_executions: Option<usize>,
    loop_depth: Option<usize>,
    loop_parallel: Option<usize>,
}

/// `[limits] loop_*`, each at least 1.
fn loop_limits(raw: &RawLimits) -> anyhow::Result<crate::engine::LoopLimits> {
    let defaults = crate::engine::LoopLimits::default();
    let limit = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(anyhow::anyhow!("limits.{key}: must be at least 1")),
        Some(value) => Ok(value),
        None => Ok(default),
    };
    Ok(crate::engine::LoopLimits {
        items: limit("loop_items", raw.loop_items, defaults.items)?,
        executions: limit("loop_executions", raw.loop_executions, defaults.executions)?,
        depth: limit("loop_depth", raw.loop_depth, defaults.depth)?,
        parallel: limit("loop_parallel", raw.loop_parallel, defaults.parallel)?,
    })
}

/// What the command line (and environment) said.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub runbooks_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration: flags win over the file, the file over defaults.
    pub fn load(overrides: Overrides) -> anyhow::Result<Self> {
        let raw = match &overrides.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<RawConfig>(&text).map_err(|err| {
                    let location = err
                        .span()
                        .map(|span| {
                            let line = text[..span.start].matches('\n').count() + 1;
                            let column = span.start
                                - text[..span.start].rfind('\n').map_or(0, |i| i + 1)
                                + 1;
                            format!(":{line}:{column}")
                        })
                        .unwrap_or_default();
                    anyhow::anyhow!("{}{location}: {}", path.display(), err.message())
                })?
            }
            None => RawConfig::default(),
        };
        let data_dir = match overrides.data_dir {
            Some(dir) => dir,
            None => runbook_protocol::default_data_dir()?,
        };
        let runbooks_dir = overrides
            .runbooks_dir
            .or(raw.runbooks_dir)
            .unwrap_or_else(|| data_dir.join("runbooks"));
        let plugins_dir = raw.plugins_dir.unwrap_or_else(|| data_dir.join("plugins"));
        let cache_dir = overrides
            .cache_dir
            .unwrap_or_else(|| data_dir.join("cache").join("plugins"));
        let socket = match overrides.socket {
            Some(socket) => socket,
            None => runbook_protocol::default_socket_path(Some(&data_dir))?,
        };
        let defaults = Limits::default();
        let limits = Limits {
            memory_bytes: raw
                .limits
                .plugin_memory_mib
                .map_or(defaults.memory_bytes, |mib| mib << 20),
            cpu: duration("limits.plugin_cpu", raw.limits.plugin_cpu.as_deref())?
                .unwrap_or(defaults.cpu),
            call_timeout: duration(
                "limits.plugin_call_timeout",
                raw.limits.plugin_call_timeout.as_deref(),
            )?
            .unwrap_or(defaults.call_timeout),
        };
        let mut connections = std::collections::BTreeMap::new();
        for (name, connection) in raw.connections {
            let url = match (connection.url, connection.url_secret) {
                (Some(url), None) => ConnectionUrl::Text(url),
                (None, Some(secret)) => ConnectionUrl::Secret(secret),
                _ => anyhow::bail!("connections.{name}: set exactly one of `url` and `url_secret`"),
            };
            connections.insert(name, url);
        }
        if raw.approvals.get(crate::runbook::INSTRUCTION_KIND) == Some(&ApprovalPolicy::Auto) {
            anyhow::bail!(
                "approvals.instruction: an instruction step always waits for an operator to confirm it; remove this entry"
            );
        }
        let resume_watch = duration("limits.resume_watch", raw.limits.resume_watch.as_deref())?
            .unwrap_or(crate::engine::DEFAULT_RESUME_WATCH);
        let loops = loop_limits(&raw.limits)?;
        let policy = Policy {
            loops,
            resume_watch: Some(crate::engine::ResumeWatch::new(
                &absolute(data_dir.clone())?,
                resume_watch,
            )),
            connections,
            approvals: raw.approvals,
            step_timeout: duration("limits.step_timeout", raw.limits.step_timeout.as_deref())?
                .unwrap_or(Policy::default().step_timeout),
            output_budget: match raw.limits.step_output_bytes {
                Some(size) => size
                    .bytes()
                    .filter(|&bytes| bytes > 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "limits.step_output_bytes: `{size}` is not a size; write a number of bytes or a size such as \"8MiB\" or \"512KiB\""
                        )
                    })?,
                None => Policy::default().output_budget,
            },
        };
        let http = HttpSettings {
            builtin_hosts: raw.http.allowed_hosts,
            max_response_bytes: raw
                .http
                .max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        };
        let plugin_grants = raw
            .plugins
            .into_iter()
            .map(|(kind, grant)| {
                let grant = crate::plugins::PluginGrant {
                    hosts: grant.allowed_hosts.into_iter().collect(),
                    connections: grant.allowed_connections.into_iter().collect(),
                    process: grant.allow_process,
                    jwt: grant.allow_jwt,
                    // `[approvals] KIND` says it for the config.
                    approval: None,
                };
                (kind, grant)
            })
            .collect();
        let template_fuel = match raw.limits.template_fuel {
            Some(0) => anyhow::bail!("limits.template_fuel: must be at least 1"),
            Some(fuel) => fuel,
            None => crate::template::DEFAULT_FUEL,
        };
        let shutdown_grace = duration(
            "limits.shutdown_grace",
            raw.limits.shutdown_grace.as_deref(),
        )?
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let metrics_listen = raw
            .metrics
            .listen
            .as_deref()
            .map(crate::metrics::http::parse_listen)
            .transpose()
            .map_err(|err| anyhow::anyhow!("metrics.listen: {err}"))?;
        let retention = crate::engine::RetentionPolicy {
            max_age: duration("retention.runs", raw.retention.runs.as_deref())?,
            max_runs: raw.retention.max_runs,
        };
        let audit_retention = duration("retention.audit", raw.retention.audit.as_deref())?
            .unwrap_or(crate::engine::DEFAULT_AUDIT_RETENTION);
        if audit_retention.is_zero() {
            anyhow::bail!("retention.audit: must be longer than 0s");
        }
        let cluster = raw.cluster.map(cluster_config).transpose()?;
        if retention.max_runs == Some(0) {
            anyhow::bail!(
                "retention.max_runs: must be at least 1 (leave it out to keep every run)"
            );
        }
        Ok(Self {
            http,
            plugin_grants,
            retention,
            audit_retention,
            metrics_listen,
            cluster,
            template_fuel,
            shutdown_grace,
            data_dir: absolute(data_dir)?,
            runbooks_dir: absolute(runbooks_dir)?,
            plugins_dir: absolute(plugins_dir)?,
            cache_dir: absolute(cache_dir)?,
            socket: absolute(socket)?,
            policy,
            limits,
        })
    }
}

/// `[cluster]`, checked.
fn cluster_config(raw: RawCluster) -> anyhow::Result<crate::cluster::ClusterConfig> {
    let servers = crate::cluster::parse_servers(&raw.nats)?;
    let completions_stream = raw
        .completions_stream
        .unwrap_or_else(|| crate::cluster::DEFAULT_COMPLETIONS_STREAM.to_owned());
    if !crate::cluster::is_stream_name(&completions_stream) {
        anyhow::bail!(
            "cluster.completions_stream: `{completions_stream}` is not a JetStream stream name (letters, digits, `-` and `_`)"
        );
    }
    let hold_unknown = duration("cluster.hold_unknown", raw.hold_unknown.as_deref())?
        .unwrap_or(crate::cluster::DEFAULT_HOLD_UNKNOWN);
    let client_cert = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some((absolute(cert)?, absolute(key)?)),
        (None, None) => None,
        _ => anyhow::bail!("cluster.tls_cert and cluster.tls_key: give both or neither"),
    };
    for path in raw
        .tls_ca
        .iter()
        .chain(client_cert.iter().flat_map(|(cert, key)| [cert, key]))
    {
        if !path.is_file() {
            anyhow::bail!("cluster: TLS file {} does not exist", path.display());
        }
    }
    Ok(crate::cluster::ClusterConfig {
        servers,
        credentials: raw.credentials.map(absolute).transpose()?,
        nkey_file: match raw.nkey_file.map(absolute).transpose()? {
            // Checked now, so that a bad file stops the start before anything listens; read
            // again when connecting.
            Some(file) => crate::cluster::read_nkey_seed(&file).map(|_| Some(file))?,
            None => None,
        },
        tls_ca: raw.tls_ca.map(absolute).transpose()?,
        client_cert,
        completions_stream,
        hold_unknown,
    })
}

impl Config {
    /// Creates the data directory, private to this user (0700): it holds the store, the logs
    /// and, by default, the socket. Existing directories keep their mode.
    pub fn create_data_dir(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    self.data_dir.display()
                )
            })
    }
}

fn duration(field: &str, text: Option<&str>) -> anyhow::Result<Option<Duration>> {
    text.map(|text| {
        humantime::parse_duration(text).with_context(|| {
            format!("{field}: invalid duration `{text}` (write it like \"30s\" or \"5m\")")
        })
    })
    .transpose()
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(Path::new(&path)))
}

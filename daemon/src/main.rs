//! `runbookd`: flags, logging, signals and the service manager's readiness protocol; the
//! daemon itself is [`runbookd::run`].

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The runbook daemon: stores, validates and runs runbooks; `runbook` talks to it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where runs, versions, logs and the plugin cache live [default: $XDG_DATA_HOME/runbook]
    #[arg(long, env = "RUNBOOK_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Directory of runbook files [default: <data dir>/runbooks]
    #[arg(long, env = "RUNBOOK_RUNBOOKS")]
    runbooks: Option<PathBuf>,
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/runbook/runbookd.sock, else <data dir>/runbookd.sock]
    #[arg(long, env = "RUNBOOK_SOCKET")]
    socket: Option<PathBuf>,
    /// TOML configuration file (approvals, limits, directories)
    #[arg(long, env = "RUNBOOK_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where compiled plugins are cached; several daemons of one user may share it
    /// [default: <data dir>/cache/plugins]
    #[arg(long, env = "RUNBOOK_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Run steps for daemons on other machines: registers with NATS under a name and labels,
    /// and runs the steps whose `runs_on` its labels match. Keeps no runs; its data dir holds
    /// its identity (an age key) and plugin cache.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// NATS server(s), comma-separated [default: `[cluster] nats` of the config]
    #[arg(long)]
    nats: Option<String>,
    /// The agent's name, unique among the daemon's agents (letters, digits, `-`, `_`)
    #[arg(long)]
    name: String,
    /// Labels that steps' `runs_on` select it by, comma-separated
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// How often it tells NATS it is alive; three missed heartbeats and it counts as gone
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    heartbeat: std::time::Duration,
    /// Steps it runs at once; more wait in the queue
    #[arg(long, default_value_t = runbookd::cluster::agent::DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

/// Every step allocates its records, events and plugin buffers from several threads at once;
/// mimalloc serves that with a fraction of glibc malloc's time. It is built without
/// transparent huge pages (`no_thp`, see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Wasmtime builds an error value each time a plugin call's store is dropped; with
    // RUST_BACKTRACE set, std would walk the stack for every one of them (a stack walk per
    // step). Panics still print backtraces; errors capture one only when RUST_LIB_BACKTRACE
    // asks for it.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet, so nothing reads the environment meanwhile.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let notifier = Notifier::from_env();
    let args = Args::parse();
    if let Some(Mode::Agent(agent)) = args.mode {
        return run_agent(args.data_dir, args.config, args.cache_dir, agent, &notifier);
    }
    let config = runbookd::Config::load(runbookd::config::Overrides {
        data_dir: args.data_dir,
        runbooks_dir: args.runbooks,
        socket: args.socket,
        config_file: args.config,
        cache_dir: args.cache_dir,
    })?;
    // Before the log directory inside it, which would otherwise create it with the umask's mode.
    config.create_data_dir()?;
    let log_guard = runbookd::telemetry::init(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let exit = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        // A signal and a `Shutdown` request both stop the daemon through this token: say so
        // the moment it is cancelled, while the daemon stops.
        let stopping = {
            let shutdown = shutdown.clone();
            let notifier = notifier.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                notifier.notify("STOPPING=1");
            })
        };
        let result = runbookd::run(config, shutdown.clone(), || notifier.notify("READY=1")).await;
        // The runtime drops unfinished tasks when it ends: a stop that was quick must still
        // have been told before the process exits.
        if shutdown.is_cancelled() {
            let _ = stopping.await;
        } else {
            stopping.abort();
        }
        result
    })?;
    if exit == runbookd::Exit::Reopen {
        // Every task ends and every file is closed before the new image starts, and the log
        // says so before its writer goes.
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        drop(log_guard);
        return Err(restart_in_place(&notifier));
    }
    Ok(())
}

/// `runbookd agent`: connects, registers, and runs dispatched steps until a signal.
fn run_agent(
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    agent: AgentArgs,
    notifier: &Notifier,
) -> anyhow::Result<()> {
    let config = runbookd::Config::load(runbookd::config::Overrides {
        data_dir,
        runbooks_dir: None,
        socket: None,
        config_file,
        cache_dir,
    })?;
    let options = runbookd::cluster::agent::AgentOptions {
        name: agent.name,
        labels: agent.labels,
        heartbeat: agent.heartbeat,
        concurrency: agent.concurrency,
    };
    options.check()?;
    let cluster =
        runbookd::cluster::ClusterConfig::for_agent(agent.nats.as_deref(), config.cluster.clone())?;
    config.create_data_dir()?;
    let _log_guard = runbookd::telemetry::init(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let plugins = runbookd::plugins::PluginHost::new(
            config.limits,
            &config.cache_dir,
            config.http.clone(),
            runbookd::plugins::Grants::new(config.plugin_grants.clone()),
            runbookd::plugins::BUILTIN_PLUGINS,
            std::sync::Arc::new(|_: &str, _: &str, _: std::time::Duration| {}),
        )
        .await?;
        for (path, err) in plugins.load_dir(&config.plugins_dir).await {
            tracing::error!(path = %path.display(), "plugin not loaded: {err:#}");
        }
        notifier.notify("READY=1");
        runbookd::cluster::agent::run(cluster, options, &config.data_dir, plugins, shutdown).await
    })
}

/// Executes this binary again in this process, with the same arguments and environment
/// (and the service manager's socket, taken out of the environment at the start): the pid,
/// and with it a service manager's or a parent's view of the daemon, stays the same. Returns
/// only when that fails.
fn restart_in_place(notifier: &Notifier) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "runbookd".into());
    // The running binary even if its file was replaced or removed since.
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0(name).args(args);
    if let Some(socket) = &notifier.socket {
        command.env("NOTIFY_SOCKET", socket);
    }
    let err = command.exec();
    anyhow::anyhow!("cannot restart runbookd in place to reopen its database: {err}")
}

/// The service manager's notification socket (`sd_notify(3)`): under a `Type=notify` systemd
/// unit the daemon counts as started only once it says `READY=1`, and the tests' harness
/// waits for the same datagram instead of polling the socket.
#[derive(Clone)]
struct Notifier {
    /// `$NOTIFY_SOCKET`: a path, or `@name` in Linux's abstract namespace. `None`: nobody asked.
    socket: Option<OsString>,
}

impl Notifier {
    /// Takes `$NOTIFY_SOCKET` out of the environment, so that no process the daemon starts
    /// inherits it and could speak for the daemon. Call before any other thread exists.
    fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|socket| !socket.is_empty());
        if socket.is_some() {
            // SAFETY: no other thread exists yet, so nothing reads the environment meanwhile.
            unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        }
        Self { socket }
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`). A manager that cannot be told is logged and
    /// otherwise ignored: the daemon serves the same either way.
    fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        match send_notification(socket, state) {
            Ok(()) => tracing::debug!(state, "told the service manager"),
            Err(err) => tracing::warn!(
                socket = %socket.to_string_lossy(),
                state,
                "cannot notify the service manager: {err}"
            ),
        }
    }
}

/// One datagram holding `state` to `socket`, as `sd_notify(3)` sends it.
fn send_notification(socket: &OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let address = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let datagram = UnixDatagram::unbound()?;
    // A manager whose queue is full must not stall the daemon: that send fails and is logged.
    datagram.set_nonblocking(true)?;
    datagram.send_to_addr(format!("{state}\n").as_bytes(), &address)?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0; 256];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    }

    #[test]
    fn a_notification_reaches_a_socket_by_path_or_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let by_path = UnixDatagram::bind(&path).unwrap();
        send_notification(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&by_path), "READY=1\n");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("runbookd-test-{}", std::process::id());
        let abstract_address =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let by_name = UnixDatagram::bind_addr(&abstract_address).unwrap();
        send_notification(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(received(&by_name), "STOPPING=1\n");
    }

    #[test]
    fn a_manager_that_cannot_be_told_is_an_error_to_log_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody.sock");
        assert!(send_notification(nobody.as_os_str(), "READY=1").is_err());
        // What the daemon calls: it logs the error and returns.
        Notifier {
            socket: Some(nobody.into_os_string()),
        }
        .notify("READY=1");
        Notifier { socket: None }.notify("READY=1");
    }
}

//! `runbookd`: flags, logging and signals; the daemon itself is [`runbookd::run`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The runbook daemon: stores, validates and runs runbooks; `runbook` talks to it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where runs, versions, logs and the plugin cache live [default: $XDG_DATA_HOME/runbook]
    #[arg(long, env = "RUNBOOK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of runbook files [default: <data dir>/runbooks]
    #[arg(long, env = "RUNBOOK_RUNBOOKS")]
    runbooks: Option<PathBuf>,
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/runbook/runbookd.sock, else <data dir>/runbookd.sock]
    #[arg(long, env = "RUNBOOK_SOCKET")]
    socket: Option<PathBuf>,
    /// TOML configuration file (approvals, limits, directories)
    #[arg(long, env = "RUNBOOK_CONFIG")]
    config: Option<PathBuf>,
    /// Where compiled plugins are cached; several daemons of one user may share it
    /// [default: <data dir>/cache/plugins]
    #[arg(long, env = "RUNBOOK_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

/// Every step allocates its records, events and plugin buffers from several threads at once;
/// mimalloc serves that with a fraction of glibc malloc's time.
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
    let args = Args::parse();
    let config = runbookd::Config::load(runbookd::config::Overrides {
        data_dir: args.data_dir,
        runbooks_dir: args.runbooks,
        socket: args.socket,
        config_file: args.config,
        cache_dir: args.cache_dir,
    })?;
    // Before the log directory inside it, which would otherwise create it with the umask's mode.
    config.create_data_dir()?;
    let _log_guard = runbookd::telemetry::init(&config.data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        runbookd::run(config, shutdown).await
    })
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

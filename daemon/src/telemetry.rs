//! Logging: daily files in `<data dir>/logs` (tracing-appender) and stderr, filtered by
//! `RUNBOOK_LOG` (default `info`), as text or, with `RUNBOOK_LOG_FORMAT=json`, as one JSON
//! object per line.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the file.
pub fn init(data_dir: &Path) -> anyhow::Result<WorkerGuard> {
    let logs = data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // The file is on the data directory's disk, which may fill up. The non-blocking writer
    // never makes a logging thread wait: its worker thread writes the file, drops a line it
    // cannot write (ENOSPC included; tracing-appender 0.2 ignores write errors), and its
    // queue is bounded (128,000 lines) and drops new lines when full. So a full disk loses
    // log lines but never stalls or panics the daemon.
    let (file_writer, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::daily(&logs, "runbookd.log"));
    let filter = EnvFilter::try_from_env("RUNBOOK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("RUNBOOK_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => false,
        Ok("json") => true,
        Ok(other) => anyhow::bail!(
            "RUNBOOK_LOG_FORMAT: `{other}` is not a log format; use `text` (the default) or `json`"
        ),
    };
    // One of each pair is set: a layer that is `None` does nothing.
    let text_layers = (!json).then(|| {
        (
            tracing_subscriber::fmt::layer()
                .with_writer(file_writer.clone())
                .with_ansi(false),
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr),
        )
    });
    let json_layers = json.then(|| {
        (
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(file_writer)
                .with_ansi(false),
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        )
    });
    let (text_file, text_stderr) = text_layers.unzip();
    let (json_file, json_stderr) = json_layers.unzip();
    tracing_subscriber::registry()
        .with(filter)
        .with(text_file)
        .with(text_stderr)
        .with(json_file)
        .with(json_stderr)
        .try_init()?;
    Ok(guard)
}

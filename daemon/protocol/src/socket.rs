//! Where the daemon's Unix socket lives by default, and a tonic channel over it.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// The default socket path could not be determined.
#[derive(Debug)]
pub struct SocketPathError;

impl std::fmt::Display for SocketPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "cannot choose the default data dir or socket: neither XDG_DATA_HOME, \
             XDG_RUNTIME_DIR nor HOME is set; pass --data-dir and --socket",
        )
    }
}

impl std::error::Error for SocketPathError {}

/// `$XDG_RUNTIME_DIR/runbook/runbookd.sock`, else `<data dir>/runbookd.sock`, where the data
/// dir is `data_dir` when given and [`default_data_dir`] otherwise.
pub fn default_socket_path(data_dir: Option<&Path>) -> Result<PathBuf, SocketPathError> {
    if let Some(runtime) = non_empty_env("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(runtime).join("runbook").join("runbookd.sock"));
    }
    match data_dir {
        Some(dir) => Ok(dir.join("runbookd.sock")),
        None => Ok(default_data_dir()?.join("runbookd.sock")),
    }
}

/// `$XDG_DATA_HOME/runbook`, else `~/.local/share/runbook`.
pub fn default_data_dir() -> Result<PathBuf, SocketPathError> {
    if let Some(data) = non_empty_env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(data).join("runbook"));
    }
    let home = non_empty_env("HOME").ok_or(SocketPathError)?;
    Ok(PathBuf::from(home).join(".local/share/runbook"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Opens a gRPC channel to the daemon listening on `socket`.
///
/// The connection is made now, so an absent daemon is reported here rather than on the first
/// call.
pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is required by tonic but never resolved: the connector below ignores it.
    Endpoint::from_static("http://runbookd.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}

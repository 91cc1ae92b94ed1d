//! The Unix socket: a private directory (0700, ours), the socket itself (0600), peers of our
//! own uid only, a stale socket replaced, a live one never stolen; serving until shutdown,
//! then removing the socket.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use futures::Stream;

use tokio::net::{UnixListener, UnixStream};

/// Why the daemon cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "refusing socket directory {dir}: it is {problem}; use a private directory (chmod 700) owned by you, or pass another --socket"
    )]
    UnsafeDirectory { dir: PathBuf, problem: String },
    #[error(
        "another runbookd is already listening on {0}; stop it with `runbook daemon stop` or choose another --socket"
    )]
    AlreadyRunning(PathBuf),
    #[error("cannot prepare socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Binds the socket after checking its directory and any socket already there.
pub async fn bind(socket: &Path) -> Result<UnixListener, SocketError> {
    let dir = socket
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    check_private(dir)?;
    if socket.exists() {
        match UnixStream::connect(socket).await {
            Ok(_) => return Err(SocketError::AlreadyRunning(socket.to_owned())),
            Err(_) => {
                tracing::info!(socket = %socket.display(), "replacing a stale socket");
                std::fs::remove_file(socket).map_err(io_error(socket))?;
            }
        }
    }
    let listener = UnixListener::bind(socket).map_err(io_error(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error(socket))?;
    Ok(listener)
}

/// The socket file a daemon bound, known by its inode and creation time (an inode number
/// alone may be reused by the next socket): at shutdown the daemon removes it only
/// if it is still that file, never a socket that a newer daemon bound at the same path after
/// this one stopped answering.
pub struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64, i64, i64)>,
}

impl SocketFile {
    /// The socket now at `path`.
    pub fn of(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            identity: identity(path),
        }
    }

    /// Removes the socket unless another took its place.
    pub fn remove(self) {
        if self.identity.is_none() || identity(&self.path) != self.identity {
            return;
        }
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %err, "cannot remove the socket");
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()))
}

/// The directory must be ours and closed to group and others: anyone who can write there
/// could put their own socket in our place.
fn check_private(dir: &Path) -> Result<(), SocketError> {
    let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
    let me = rustix::process::getuid().as_raw();
    let problem = if meta.uid() != me {
        Some(format!(
            "owned by uid {}, not by you (uid {me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "open to group or others (mode {:o})",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SocketError::UnsafeDirectory {
            dir: dir.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Accepted connections from peers with our uid; others are closed at once.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<UnixStream>> {
    let me = rustix::process::getuid().as_raw();
    futures::stream::unfold(listener, move |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(cred) if cred.uid() == me => return Some((Ok(stream), listener)),
                    Ok(cred) => {
                        tracing::warn!(uid = cred.uid(), "refused a connection from another user")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "refused a connection without peer credentials")
                    }
                },
                Err(err) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_removes_its_own_socket_but_not_one_bound_after_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("runbookd.sock");

        let first = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let ours = SocketFile::of(&path);
        ours.remove();
        assert!(!path.exists(), "its own socket is removed");
        drop(first);

        let _old = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let stale = SocketFile::of(&path);
        // A newer daemon found the socket unanswered, replaced it and listens there now.
        std::fs::remove_file(&path).expect("remove");
        let _newer = std::os::unix::net::UnixListener::bind(&path).expect("bind again");
        stale.remove();
        assert!(path.exists(), "the newer daemon's socket is left alone");
    }
}

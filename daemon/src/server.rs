//! The Unix socket: a private directory (0700, ours), the socket itself (0600), peers of our
//! own uid only, a stale socket replaced, a live one never stolen; serving until shutdown,
//! then removing the socket.
//!
//! One daemon per socket is decided by a lock, not by a check-then-act: the daemon holds an
//! exclusive `flock` on `<socket>.lock` for as long as it lives (the kernel drops it when the
//! process dies, even by kill -9). Only the holder touches the socket file. A daemon that
//! finds the lock taken waits a moment for its holder to answer `Status` (a connect alone
//! proves nothing: a child forked by a dead daemon can keep its listening socket open), then
//! refuses to start.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use futures::Stream;

use tokio::net::{UnixListener, UnixStream};

/// How long a daemon that finds the lock taken waits for its holder to answer (a daemon that
/// is still opening its store, or a dead daemon's child between fork and exec).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The daemon's claim on its socket path: the lock beside the socket, held until dropped.
pub struct SocketLock {
    _file: std::fs::File,
}

/// Takes the socket's lock (see the module's notes), waiting up to [`LOCK_PATIENCE`] while
/// the holder is not a daemon that answers.
async fn claim(socket: &Path) -> Result<SocketLock, SocketError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = lock_path(socket);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(&path))?;
    let deadline = tokio::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if answers(socket).await || tokio::time::Instant::now() >= deadline {
                    return Err(SocketError::AlreadyRunning(socket.to_owned()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => return Err(io_error(&path)(err.into())),
        }
    }
    // For whoever wonders who holds it.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(SocketLock { _file: file })
}

/// `<socket>.lock`, in the socket's own private directory.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    socket.with_file_name(name)
}

/// Whether a daemon answers `Status` on `socket` within a second.
async fn answers(socket: &Path) -> bool {
    let status = async {
        let channel = runbook_protocol::connect(socket).await.ok()?;
        runbook_protocol::v1::runbook_client::RunbookClient::new(channel)
            .status(runbook_protocol::v1::StatusRequest {})
            .await
            .ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), status)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Takes the socket's lock, then binds the socket after checking its directory; a socket file
/// already there is stale (its daemon no longer holds the lock) and is replaced. The lock must
/// be kept for as long as the daemon serves.
pub async fn bind(socket: &Path) -> Result<(UnixListener, SocketLock), SocketError> {
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
    let lock = claim(socket).await?;
    // A daemon older than the lock may still serve here without holding it.
    if socket.exists() && answers(socket).await {
        return Err(SocketError::AlreadyRunning(socket.to_owned()));
    }
    if socket.exists() {
        tracing::info!(socket = %socket.display(), "replacing a stale socket");
        std::fs::remove_file(socket).map_err(io_error(socket))?;
    }
    let listener = UnixListener::bind(socket).map_err(io_error(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error(socket))?;
    Ok((listener, lock))
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

/// How often a refused peer is written to the audit log: a user who keeps connecting gets
/// one entry per uid per this window, not one per attempt (the log stays bounded).
const REFUSED_AUDIT_WINDOW_MS: i64 = 10_000;

/// Accepted connections from peers with our uid; others are closed at once, logged, and
/// recorded in the audit log (`connect`, `DENIED`).
pub fn incoming(
    listener: UnixListener,
    store: crate::store::Store,
) -> impl Stream<Item = io::Result<UnixStream>> {
    let me = rustix::process::getuid().as_raw();
    let recorded = std::collections::HashMap::<u32, i64>::new();
    futures::stream::unfold(
        (listener, store, recorded),
        move |(listener, store, mut recorded)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match stream.peer_cred() {
                        Ok(cred) if cred.uid() == me => {
                            return Some((Ok(stream), (listener, store, recorded)));
                        }
                        Ok(cred) => {
                            tracing::warn!(
                                uid = cred.uid(),
                                "refused a connection from another user"
                            );
                            drop(stream);
                            audit_refusal(&store, &mut recorded, cred.uid(), me).await;
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
        },
    )
}

/// Writes a refused peer to the audit log, at most once per uid per window.
async fn audit_refusal(
    store: &crate::store::Store,
    recorded: &mut std::collections::HashMap<u32, i64>,
    uid: u32,
    me: u32,
) {
    let now = crate::store::now_ms();
    if recorded
        .get(&uid)
        .is_some_and(|at| now - at < REFUSED_AUDIT_WINDOW_MS)
    {
        return;
    }
    // The map stays small: one entry per uid seen within the window.
    recorded.retain(|_, at| now - *at < REFUSED_AUDIT_WINDOW_MS);
    recorded.insert(uid, now);
    let user = crate::service::audit::user_name(uid);
    let entry = crate::store::AuditRecord {
        at: now,
        uid: Some(uid),
        user,
        action: "connect".into(),
        runbook: String::new(),
        run: String::new(),
        step: String::new(),
        secret: String::new(),
        result: crate::store::AuditResult::Denied,
        detail: format!("only uid {me} may use this socket"),
    };
    let durable = match store.audit(&entry) {
        Ok(()) => store.flush().await,
        Err(err) => Err(err),
    };
    if let Err(err) = durable {
        tracing::error!(error = %err, "cannot record a refused connection");
    }
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

//! After the database stops writing (a full disk, an I/O error), waits until the data
//! directory takes writes again, then stops the daemon so that it restarts in place.
//!
//! Sled 0.34 keeps the first failed write as its "global error" and refuses every later write
//! until it is opened again, and only a new process opens it cleanly: every part of the daemon
//! holds the database, and sled's file lock is held until the last handle is gone. So once a
//! probe file can be written and synced where the database lives, the daemon stops serving
//! (steps still running are left to crash recovery, since their ends could not be recorded
//! anyway) and `main` executes the same binary again in the same process, with the same
//! arguments: the pid, the socket path and the service manager stay the same, and the new
//! image recovers the runs by the usual rules.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often a failed database's directory is tried again.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How much the probe writes and syncs: room for sled's next log segments (512 KiB each), so
/// that a directory with a few bytes free does not make the daemon restart again and again.
pub const PROBE_BYTES: u64 = 1024 * 1024;

/// The probe's file, in the data directory beside the database; removed after each try.
const PROBE_FILE: &str = ".write-probe";

/// Waits until `store` has failed and `data_dir` takes [`PROBE_BYTES`] again, then cancels
/// `stop` and returns true. Returns false when `stop` is cancelled by someone else first.
pub async fn when_writable(store: Store, data_dir: PathBuf, stop: CancellationToken) -> bool {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return false,
        }
        let Some(failure) = store.health() else {
            continue;
        };
        let dir = data_dir.clone();
        match tokio::task::spawn_blocking(move || probe(&dir)).await {
            Ok(Ok(())) => {
                tracing::warn!(
                    failed = %failure.error,
                    "the data directory takes writes again: runbookd restarts in place to reopen the database"
                );
                stop.cancel();
                return true;
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "the data directory still refuses writes");
            }
            Err(err) => {
                tracing::error!(error = %err, "the write probe failed");
                return false;
            }
        }
    }
}

/// Writes and syncs [`PROBE_BYTES`] in `dir`, then removes them.
fn probe(dir: &Path) -> std::io::Result<()> {
    // No write is tried while the filesystem says there is no room: a full disk stays as
    // full as it was.
    let stat = rustix::fs::statvfs(dir)?;
    if stat.f_bavail.saturating_mul(stat.f_frsize) < PROBE_BYTES {
        return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
    }
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..PROBE_BYTES / chunk.len() as u64 {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_writable_directory_passes_and_keeps_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(&dir.path().join("gone")).is_err());
    }
}

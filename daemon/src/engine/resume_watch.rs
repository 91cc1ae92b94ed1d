//! The crash-loop guard: before a start resumes the runs it found unfinished, it writes their
//! ids to a file in the data directory, and it removes the file once the daemon has stayed up
//! for the watch window (or stops cleanly). A file still there at the next start names the
//! runs that were being resumed when the daemon died: those are failed with the reason, not
//! resumed again, so that a run whose steps bring the daemon down cannot do it at every start.
//!
//! The daemon cannot tell a crash a run caused from a kill -9 that came from outside, so a
//! run being resumed when the daemon is killed within the window is failed as well; that is
//! the price of never resuming the culprit blindly, and `resume_watch = "0s"` turns the guard
//! off. The file lives outside the store on purpose: it must be readable even when what
//! crashed was the store.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the daemon must stay up after resuming runs before they are trusted, when the
/// config sets no `[limits] resume_watch`.
pub const DEFAULT_RESUME_WATCH: Duration = Duration::from_secs(10);

/// The file's name in the data directory.
const FILE_NAME: &str = "resuming.json";

/// The largest file read: a larger one is not one the daemon wrote, and is ignored (with a
/// warning) rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The guard of one data directory.
#[derive(Debug, Clone)]
pub struct ResumeWatch {
    path: PathBuf,
    window: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Resuming {
    /// When the start that wrote it began resuming, in ms since the epoch.
    at: i64,
    runs: Vec<String>,
}

impl ResumeWatch {
    /// The guard of `data_dir`, trusting resumed runs after `window`.
    pub fn new(data_dir: &Path, window: Duration) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
            window,
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The runs the previous start was resuming when the daemon died within the window. A
    /// file that cannot be read names none (and says why in the log): the guard must never
    /// keep the daemon from starting.
    pub fn suspects(&self) -> BTreeSet<String> {
        // With the guard off, a record an earlier start left names nobody.
        if self.window.is_zero() {
            return BTreeSet::new();
        }
        let read = std::fs::File::open(&self.path).and_then(|file| {
            if file.metadata()?.len() > MAX_FILE_BYTES {
                return Err(std::io::Error::other("larger than the daemon ever writes"));
            }
            let mut text = String::new();
            std::io::Read::take(file, MAX_FILE_BYTES).read_to_string(&mut text)?;
            Ok(text)
        });
        let text = match read {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return BTreeSet::new(),
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot read the crash-loop guard's file; ignoring it");
                return BTreeSet::new();
            }
        };
        match serde_json::from_str::<Resuming>(&text) {
            Ok(resuming) => resuming.runs.into_iter().collect(),
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "the crash-loop guard's file is not valid; ignoring it");
                BTreeSet::new()
            }
        }
    }

    /// Records, durably, that `runs` are about to be resumed; with none, forgets any earlier
    /// record. A window of zero records nothing.
    pub fn arm(&self, runs: &[String], now_ms: i64) -> std::io::Result<()> {
        if self.window.is_zero() || runs.is_empty() {
            return self.disarm();
        }
        let text = serde_json::to_vec(&Resuming {
            at: now_ms,
            runs: runs.to_vec(),
        })?;
        // Written aside and renamed, so that a crash leaves the old file or the new one.
        let partial = self.path.with_extension("json.partial");
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&partial, &self.path)?;
        sync_dir(&self.path)
    }

    /// The resumed runs have proven themselves (or the daemon stops cleanly): forgets them.
    pub fn disarm(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// Makes a rename or removal in the file's directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn armed_runs_are_suspects_until_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let watch = ResumeWatch::new(dir.path(), Duration::from_secs(10));
        assert!(watch.suspects().is_empty(), "no file: nobody is suspect");
        watch.arm(&["r1".into(), "r2".into()], 1).unwrap();
        assert_eq!(
            watch.suspects(),
            BTreeSet::from(["r1".to_owned(), "r2".to_owned()])
        );
        watch.disarm().unwrap();
        assert!(watch.suspects().is_empty());
        watch.disarm().unwrap();
    }

    #[test]
    fn a_zero_window_or_no_run_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        ResumeWatch::new(dir.path(), Duration::from_secs(10))
            .arm(&["r1".into()], 1)
            .unwrap();
        let off = ResumeWatch::new(dir.path(), Duration::ZERO);
        assert!(
            off.suspects().is_empty(),
            "with the guard off, a record names nobody"
        );
        off.arm(&["r2".into()], 2).unwrap();
        assert!(
            off.suspects().is_empty(),
            "arming with the guard off clears it"
        );
        let on = ResumeWatch::new(dir.path(), Duration::from_secs(10));
        on.arm(&["r3".into()], 3).unwrap();
        on.arm(&[], 4).unwrap();
        assert!(on.suspects().is_empty());
    }

    #[test]
    fn a_file_the_daemon_did_not_write_names_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let watch = ResumeWatch::new(dir.path(), Duration::from_secs(10));
        std::fs::write(dir.path().join(FILE_NAME), b"\xff garbage {").unwrap();
        assert!(watch.suspects().is_empty());
    }
}

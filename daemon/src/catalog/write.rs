//! Writes to runbook files made through the daemon: saves from an editor client and
//! rollbacks to an earlier version. Both replace the file atomically and record the result
//! at once, so that the watcher's later look at the file finds nothing new.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Applied, Catalog, CatalogError, content_hash, resolve, version_record};
use crate::events::DaemonEvent;
use crate::runbook::{self, Diagnostic};
use crate::store::HistoryEntry;

/// What a save did.
#[derive(Debug)]
pub struct Saved {
    /// Why the saved content is invalid; empty when it is valid.
    pub diagnostics: Vec<Diagnostic>,
    /// The version the save added, when the content was valid and new.
    pub version: Option<HistoryEntry>,
    /// The content hash of the file as written.
    pub file_hash: String,
}

impl Catalog {
    /// Writes `source` to the file of runbook `name`. A valid content becomes the newest
    /// version (with `actor` in its cause); an invalid one is kept on disk and shown with its
    /// diagnostics, as an invalid save from an editor would be. With a `base_hash`, the save
    /// is refused when the file no longer has that content (someone else saved meanwhile).
    pub async fn save(
        &self,
        name: &str,
        source: &str,
        base_hash: &str,
        actor: &str,
    ) -> Result<Saved, CatalogError> {
        let _writer = self.inner.writer.lock().await;
        let path = self
            .get(name)
            .map(|entry| entry.path)
            .ok_or_else(|| CatalogError::UnknownRunbook(name.to_owned()))?;
        let file = path.display().to_string();
        if !base_hash.is_empty() {
            let on_disk = std::fs::read(&path)
                .map(|bytes| content_hash(&bytes))
                .unwrap_or_default();
            if on_disk != base_hash {
                return Err(CatalogError::Conflict { path: file });
            }
        }
        write_atomically(&path, source.as_bytes())
            .map_err(|source| CatalogError::Write { path: file, source })?;
        let file_hash = content_hash(source.as_bytes());
        tracing::info!(runbook = %name, by = %actor, "runbook saved through the daemon");
        let applied = self
            .apply(
                &path,
                source.as_bytes().to_vec(),
                file_hash.clone(),
                &format!("saved by {actor}"),
            )
            .await?;
        Ok(match applied {
            Applied::Valid(version) => Saved {
                diagnostics: Vec::new(),
                version,
                file_hash,
            },
            Applied::Invalid(diagnostics) => Saved {
                diagnostics,
                version: None,
                file_hash,
            },
        })
    }

    /// Writes version `reference` of `name` back to its file, atomically, and records it as
    /// the newest version, with `actor` in its cause.
    pub async fn rollback(
        &self,
        name: &str,
        reference: &str,
        actor: &str,
    ) -> Result<HistoryEntry, CatalogError> {
        let _writer = self.inner.writer.lock().await;
        let history = self.history(name)?;
        let target = resolve(name, &history, reference)?.clone();
        let newest = history.last().map_or(0, |entry| entry.number);
        if history
            .last()
            .is_some_and(|last| last.version == target.version)
        {
            return Err(CatalogError::AlreadyCurrent(newest));
        }
        let (_, source) = self.version(name, &target.version)?;
        // Back where the runbook lives now, or where it last lived if its file is gone.
        let path = self.get(name).map_or_else(
            || PathBuf::from(&history[history.len() - 1].path),
            |entry| entry.path,
        );
        if let Some(other) = self
            .state()
            .files
            .get(&path)
            .map(|file| file.name.clone())
            .filter(|other| other != name)
        {
            return Err(CatalogError::PathTaken {
                path: path.display().to_string(),
                other,
            });
        }
        let file = path.display().to_string();
        let parsed = runbook::load(&file, &source, &self.inner.plugins)
            .await
            .map_err(|diagnostics| CatalogError::NoLongerValid {
                number: target.number,
                message: diagnostics
                    .first()
                    .map(|d| d.message.clone())
                    .unwrap_or_default(),
            })?;
        write_atomically(&path, source.as_bytes()).map_err(|source| CatalogError::Write {
            path: file.clone(),
            source,
        })?;
        let entry = self
            .inner
            .store
            .record_version(
                &version_record(&parsed, file),
                &format!("rollback to #{} by {actor}", target.number),
            )?
            .ok_or(CatalogError::AlreadyCurrent(newest))?;
        self.set(&path, content_hash(source.as_bytes()), Arc::new(parsed));
        self.inner.store.flush().await?;
        tracing::info!(runbook = %name, to = target.number, by = %actor, "rolled back");
        self.inner
            .events
            .publish(DaemonEvent::VersionAdded(entry.clone()));
        Ok(entry)
    }
}

/// Replaces `path` with `bytes` in one rename, so that no reader (the watcher, an editor)
/// ever sees a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Hidden, so the watcher never takes the temporary file for a runbook.
    let mut temp = tempfile::Builder::new()
        .prefix(".runbookd-write-")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

//! The runbooks the daemon knows: every `*.toml` file below the runbooks directory, parsed and
//! checked, each distinct valid content recorded as a version. An invalid save never takes a
//! runbook away: its last good version stays current and the file's diagnostics are shown
//! beside it until the file is fixed. Saves and rollbacks through the daemon live in `write`.

mod write;

pub use write::Saved;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};

use crate::events::{DaemonEvent, DaemonEvents};
use crate::plugins::PluginHost;
use crate::runbook::{self, Diagnostic, Runbook};
use crate::service::audit;
use crate::store::{AuditResult, HistoryEntry, Store, StoreError, VersionRecord, now_ms};

/// One runbook as currently known.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// The version new runs start with: the last valid content; `None` while the file has
    /// never been valid.
    pub current: Option<Arc<Runbook>>,
    /// Why the file on disk is invalid; empty when it is valid.
    pub diagnostics: Vec<Diagnostic>,
    pub updated_at: i64,
}

/// What loading one file's content did.
enum Applied {
    /// The content is valid; the version it added, if it was new.
    Valid(Option<HistoryEntry>),
    /// The content is invalid, for these reasons; the last good version stays current.
    Invalid(Vec<Diagnostic>),
}

/// What can go wrong with a catalog request.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no runbook named `{0}` has any version")]
    NoHistory(String),
    #[error("runbook `{runbook}` has no version `{reference}`; see `runbook versions {runbook}`")]
    UnknownVersion { runbook: String, reference: String },
    #[error("`{reference}` matches several versions of `{runbook}`; give more of the hash")]
    AmbiguousVersion { runbook: String, reference: String },
    #[error("version #{0} is already the current one; nothing to roll back")]
    AlreadyCurrent(u32),
    #[error("version #{number} no longer passes validation: {message}")]
    NoLongerValid { number: u32, message: String },
    #[error("{path} now holds runbook `{other}`; move it back or restore by hand")]
    PathTaken { path: String, other: String },
    #[error("no runbook named `{0}`")]
    UnknownRunbook(String),
    #[error("{path} changed on disk since it was opened; reload it, or save again to overwrite")]
    Conflict { path: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cloneable handle to the catalog.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    plugins: PluginHost,
    store: Store,
    events: DaemonEvents,
    state: RwLock<State>,
    /// One reconcile or rollback at a time, so that a rollback's own write is never taken
    /// for an outside edit.
    writer: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<String, Entry>,
    /// What was last read from each file: its content hash and the runbook it names.
    files: HashMap<PathBuf, FileState>,
}

#[derive(Debug, Clone)]
struct FileState {
    hash: String,
    name: String,
}

impl Catalog {
    /// A catalog of `dir`, empty until [`Catalog::reconcile`] reads it.
    pub fn new(dir: &Path, plugins: PluginHost, store: Store, events: DaemonEvents) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                plugins,
                store,
                events,
                state: RwLock::default(),
                writer: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Brings the catalog in line with the directory: files whose content changed since they
    /// were last read (every file when `recheck`, after the plugins changed) are loaded again,
    /// and runbooks whose file is gone are removed.
    pub async fn reconcile(&self, recheck: bool) -> Result<(), StoreError> {
        let _writer = self.inner.writer.lock().await;
        // A directory that cannot be read (deleted, unmounted, no permission) is not a
        // directory without runbooks: keep what is loaded rather than remove everything.
        if let Err(err) = std::fs::read_dir(&self.inner.dir) {
            tracing::error!(dir = %self.inner.dir.display(), error = %err, "cannot read the runbooks directory; keeping the runbooks loaded");
            return Ok(());
        }
        let mut on_disk = HashSet::new();
        for path in runbook_files(&self.inner.dir) {
            // A file that vanished since the scan is handled as removed below. One too large
            // to be a runbook is read only as far as needed to say so, and its hash covers
            // that much: enough to notice it changed.
            let Ok(bytes) = runbook::limits::read_file(&path) else {
                continue;
            };
            on_disk.insert(path.clone());
            let hash = content_hash(&bytes);
            let unchanged = self
                .state()
                .files
                .get(&path)
                .is_some_and(|file| file.hash == hash);
            if unchanged && !recheck {
                continue;
            }
            self.apply(&path, bytes, hash, "file").await?;
        }
        let gone: Vec<PathBuf> = self
            .state()
            .files
            .keys()
            .filter(|path| !on_disk.contains(*path))
            .cloned()
            .collect();
        let removed_any = !gone.is_empty();
        for path in gone {
            self.remove(&path);
        }
        if removed_any {
            // A name may have been freed: files refused for using it get another chance.
            let refused: Vec<PathBuf> = self
                .list()
                .into_iter()
                .filter(|entry| entry.current.is_none() && entry.path.exists())
                .map(|entry| entry.path)
                .collect();
            for path in refused {
                if let Ok(bytes) = runbook::limits::read_file(&path) {
                    let hash = content_hash(&bytes);
                    self.apply(&path, bytes, hash, "file").await?;
                }
            }
        }
        Ok(())
    }

    /// Loads one file's content: a valid one becomes the runbook's newest version (unless it
    /// already is), an invalid one is shown beside the last good version.
    async fn apply(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        hash: String,
        cause: &str,
    ) -> Result<Applied, StoreError> {
        let file = path.display().to_string();
        // A file read again only because the step kinds changed is not a change to audit.
        let content_changed = self
            .state()
            .files
            .get(path)
            .is_none_or(|known| known.hash != hash);
        let loaded = runbook::load_bytes(&file, bytes, &self.inner.plugins).await;
        let loaded = loaded.and_then(|parsed| match self.owner_of(&parsed.name, path) {
            Some(other) => Err(vec![Diagnostic::whole_file(
                &file,
                format!(
                    "runbook name `{}` is already used by {}",
                    parsed.name,
                    other.display()
                ),
            )]),
            None => Ok(parsed),
        });
        match loaded {
            Ok(parsed) => {
                let added = self
                    .inner
                    .store
                    .record_version(&version_record(&parsed, file.clone()), cause)?;
                let was_invalid = self
                    .get(&parsed.name)
                    .is_some_and(|entry| !entry.diagnostics.is_empty());
                let name = parsed.name.clone();
                self.set(path, hash, Arc::new(parsed));
                // Announced only once on disk: a client must never see a version a crash
                // could take back.
                self.inner.store.flush().await?;
                if let Some(entry) = &added {
                    tracing::info!(runbook = %entry.name, number = entry.number, "new runbook version");
                    if cause == "file" {
                        self.audit_reload(
                            path,
                            &entry.name,
                            AuditResult::Success,
                            format!("version {} from {file}", entry.number),
                        )
                        .await;
                    }
                    self.inner
                        .events
                        .publish(DaemonEvent::VersionAdded(entry.clone()));
                } else if was_invalid
                    && let Some(current) = self.inner.store.latest_version(&name)?
                {
                    // Fixed back to the current content: no new version, but clients must
                    // drop the diagnostics they show.
                    self.inner
                        .events
                        .publish(DaemonEvent::VersionAdded(current));
                }
                Ok(Applied::Valid(added))
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    tracing::warn!(file = %file, "{}", diagnostic.message);
                }
                let name = self.name_for_invalid(path);
                if cause == "file" && content_changed {
                    let first = diagnostics.first().map_or_else(String::new, |diagnostic| {
                        format!(
                            ": line {}, column {}: {}",
                            diagnostic.line, diagnostic.column, diagnostic.message
                        )
                    });
                    self.audit_reload(
                        path,
                        &name,
                        AuditResult::Failure,
                        format!("{file} is invalid, the last good version stays{first}"),
                    )
                    .await;
                }
                let current = self.last_good(&name, path);
                self.set_invalid(path, hash, &name, current, diagnostics.clone());
                self.inner.events.publish(DaemonEvent::RunbookInvalid {
                    name,
                    path: file,
                    diagnostics: diagnostics.clone(),
                });
                Ok(Applied::Invalid(diagnostics))
            }
        }
    }

    /// Records a change of a runbook file that the daemon read from disk (a save through the
    /// API is audited as `save` where it is asked for). Who: the file's owner.
    async fn audit_reload(&self, path: &Path, name: &str, result: AuditResult, detail: String) {
        audit::write(
            &self.inner.store,
            audit::owner_of(&[path]),
            "reload",
            audit::Target {
                runbook: name.to_owned(),
                ..audit::Target::default()
            },
            result,
            detail,
        )
        .await;
    }

    /// Records a valid runbook read from `path`.
    fn set(&self, path: &Path, hash: String, runbook: Arc<Runbook>) {
        let name = runbook.name.clone();
        let mut state = self.state_mut();
        // The file may have been renamed inside (`name = ...` changed): drop the old name.
        let mut renamed_from = None;
        if let Some(old) = state.files.get(path).map(|file| file.name.clone())
            && old != name
            && state
                .entries
                .get(&old)
                .is_some_and(|entry| entry.path == path)
        {
            state.entries.remove(&old);
            renamed_from = Some(old);
        }
        state.files.insert(
            path.to_owned(),
            FileState {
                hash,
                name: name.clone(),
            },
        );
        state.entries.insert(
            name.clone(),
            Entry {
                name,
                path: path.to_owned(),
                current: Some(runbook),
                diagnostics: Vec::new(),
                updated_at: now_ms(),
            },
        );
        drop(state);
        if let Some(old) = renamed_from {
            self.inner.events.publish(DaemonEvent::RunbookRemoved {
                name: old,
                path: path.display().to_string(),
            });
        }
    }

    fn set_invalid(
        &self,
        path: &Path,
        hash: String,
        name: &str,
        current: Option<Arc<Runbook>>,
        diagnostics: Vec<Diagnostic>,
    ) {
        let mut state = self.state_mut();
        state.files.insert(
            path.to_owned(),
            FileState {
                hash,
                name: name.to_owned(),
            },
        );
        state.entries.insert(
            name.to_owned(),
            Entry {
                name: name.to_owned(),
                path: path.to_owned(),
                current,
                diagnostics,
                updated_at: now_ms(),
            },
        );
    }

    /// The runbook name an invalid file stands for: the one it last named, else its stem
    /// (else its path, when the stem belongs to another file's runbook).
    fn name_for_invalid(&self, path: &Path) -> String {
        if let Some(file) = self.state().files.get(path) {
            return file.name.clone();
        }
        if let Ok(Some(latest)) = self
            .inner
            .store
            .latest_version_from(&path.display().to_string())
        {
            return latest.name;
        }
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.owner_of(&stem, path) {
            Some(_) => path.display().to_string(),
            None => stem,
        }
    }

    /// The last good version of `name` read from `path`: in memory, else from the store
    /// (after a restart with the file broken on disk).
    fn last_good(&self, name: &str, path: &Path) -> Option<Arc<Runbook>> {
        if let Some(entry) = self.get(name).filter(|entry| entry.path == path) {
            return entry.current;
        }
        // After a restart: the newest version read from this very file, whatever its name.
        let latest = self
            .inner
            .store
            .latest_version_from(&path.display().to_string())
            .ok()??;
        let record = self
            .inner
            .store
            .version(&latest.name, &latest.version)
            .ok()??;
        runbook::parse_stored(&record.path, &record.source)
            .ok()
            .map(Arc::new)
    }

    /// Another file that holds runbook `name`, if any.
    /// Only a file with a valid version owns its name: a broken file never blocks a good one.
    fn owner_of(&self, name: &str, path: &Path) -> Option<PathBuf> {
        self.get(name)
            .filter(|entry| entry.current.is_some())
            .map(|entry| entry.path)
            .filter(|other| other != path && other.exists())
    }

    fn remove(&self, path: &Path) {
        let mut state = self.state_mut();
        let Some(file) = state.files.remove(path) else {
            return;
        };
        if state
            .entries
            .get(&file.name)
            .is_some_and(|entry| entry.path == path)
        {
            state.entries.remove(&file.name);
            drop(state);
            tracing::info!(runbook = %file.name, path = %path.display(), "runbook removed");
            self.inner.events.publish(DaemonEvent::RunbookRemoved {
                name: file.name,
                path: path.display().to_string(),
            });
        }
    }

    /// A runbook's versions, oldest first (also after its file is gone).
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, CatalogError> {
        let history = self.inner.store.history(name)?;
        if history.is_empty() {
            return Err(CatalogError::NoHistory(name.to_owned()));
        }
        Ok(history)
    }

    /// One version and its source. `reference` is a number, a hash or a unique prefix of
    /// one, or empty for the newest.
    pub fn version(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<(HistoryEntry, String), CatalogError> {
        let history = self.history(name)?;
        let entry = resolve(name, &history, reference)?.clone();
        let source = self
            .inner
            .store
            .version(name, &entry.version)?
            .map(|record| record.source)
            .ok_or_else(|| CatalogError::UnknownVersion {
                runbook: name.to_owned(),
                reference: reference.to_owned(),
            })?;
        Ok((entry, source))
    }

    /// One runbook by name.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.state().entries.get(name).cloned()
    }

    /// Every runbook, sorted by name.
    pub fn list(&self) -> Vec<Entry> {
        self.state().entries.values().cloned().collect()
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The shortest hash prefix that names a version.
const MIN_HASH_PREFIX: usize = 4;

/// The history entry `reference` names: a number, a hash or a unique prefix, or empty for
/// the newest.
fn resolve<'a>(
    name: &str,
    history: &'a [HistoryEntry],
    reference: &str,
) -> Result<&'a HistoryEntry, CatalogError> {
    let unknown = || CatalogError::UnknownVersion {
        runbook: name.to_owned(),
        reference: reference.to_owned(),
    };
    let reference = reference.trim().trim_start_matches('#');
    if reference.is_empty() {
        return history.last().ok_or_else(unknown);
    }
    if let Ok(number) = reference.parse::<u32>()
        && let Some(entry) = history.iter().find(|entry| entry.number == number)
    {
        return Ok(entry);
    }
    // Shorter prefixes would read as version numbers (`9` is no hash prefix).
    if reference.len() < MIN_HASH_PREFIX {
        return Err(unknown());
    }
    let matches: Vec<&HistoryEntry> = history
        .iter()
        .filter(|entry| entry.version.starts_with(reference))
        .collect();
    // The same content may recur (rolled back to): its newest entry stands for it.
    let distinct: HashSet<&str> = matches.iter().map(|e| e.version.as_str()).collect();
    match distinct.len() {
        0 => Err(unknown()),
        1 => Ok(matches[matches.len() - 1]),
        _ => Err(CatalogError::AmbiguousVersion {
            runbook: name.to_owned(),
            reference: reference.to_owned(),
        }),
    }
}

/// Every runbook file below `dir`: `*.toml`, skipping hidden files and directories (editor
/// lock files such as `.#name.toml`, `.git`).
pub fn runbook_files(root: &Path) -> Vec<PathBuf> {
    let ignored = ignored_paths(root);
    let mut files = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if is_hidden(&path) || ignored.contains(&path) {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() && is_runbook_file(&path) => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// Name of the file in the runbooks directory that lists paths (relative to it, one per line,
/// `#` for comments) that hold no runbooks: fixtures, drafts, examples of invalid files.
pub const IGNORE_FILE: &str = ".runbookignore";

fn ignored_paths(root: &Path) -> HashSet<PathBuf> {
    std::fs::read_to_string(root.join(IGNORE_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| root.join(line.trim_end_matches('/')))
        .collect()
}

/// Whether `path` names a runbook file (not an editor's swap or backup file).
pub fn is_runbook_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "toml") && !is_hidden(path)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
}

/// What the store keeps of a valid runbook read from `file`, as of now.
fn version_record(parsed: &Runbook, file: String) -> VersionRecord {
    VersionRecord {
        name: parsed.name.clone(),
        version: parsed.version.clone(),
        path: file,
        source: parsed.source.clone(),
        created_at: now_ms(),
    }
}

fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: u32, version: &str) -> HistoryEntry {
        HistoryEntry {
            name: "deploy".into(),
            number,
            version: version.into(),
            path: "deploy.toml".into(),
            created_at: 0,
            cause: "file".into(),
        }
    }

    #[test]
    fn versions_resolve_by_number_hash_prefix_or_newest() {
        let history = [
            entry(1, "aaa111"),
            entry(2, "abb222"),
            entry(3, "aaa111"),
            entry(4, "abb233"),
        ];
        assert_eq!(resolve("deploy", &history, "").expect("resolves").number, 4);
        assert_eq!(
            resolve("deploy", &history, "2").expect("resolves").number,
            2
        );
        assert_eq!(
            resolve("deploy", &history, "#1").expect("resolves").number,
            1
        );
        assert_eq!(
            resolve("deploy", &history, "abb22")
                .expect("resolves")
                .number,
            2
        );
        // The same content twice: its newest entry.
        assert_eq!(
            resolve("deploy", &history, "aaa1")
                .expect("resolves")
                .number,
            3
        );
        assert!(matches!(
            resolve("deploy", &history, "abb2"),
            Err(CatalogError::AmbiguousVersion { .. })
        ));
        assert!(matches!(
            resolve("deploy", &history, "9"),
            Err(CatalogError::UnknownVersion { .. })
        ));
        assert!(matches!(
            resolve("deploy", &history, "aa"),
            Err(CatalogError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn paths_in_the_ignore_file_are_skipped() {
        let root = tempfile::tempdir().expect("temp dir");
        let write = |relative: &str| {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, "").expect("writes");
        };
        for file in ["a.toml", "team/b.toml", "fixtures/c.toml", "draft.toml"] {
            write(file);
        }
        std::fs::write(
            root.path().join(IGNORE_FILE),
            "# not runbooks\nfixtures/\ndraft.toml\n",
        )
        .expect("writes");
        let found: Vec<PathBuf> = runbook_files(root.path())
            .into_iter()
            .map(|path| path.strip_prefix(root.path()).expect("inside").to_owned())
            .collect();
        assert_eq!(
            found,
            [PathBuf::from("a.toml"), PathBuf::from("team/b.toml")]
        );
    }

    #[test]
    fn editor_files_are_not_runbooks() {
        for (name, expected) in [
            ("deploy.toml", true),
            (".#deploy.toml", false),
            (".deploy.toml.swp", false),
            ("deploy.toml~", false),
            ("#deploy.toml#", false),
            ("4913", false),
            ("notes.md", false),
        ] {
            assert_eq!(is_runbook_file(Path::new(name)), expected, "{name}");
        }
    }
}

//! The runbooks the daemon knows: every `*.toml` file of the runbooks directory, parsed and
//! checked, each valid content stored as a version. Invalid files are listed with their
//! diagnostics and never run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::plugins::PluginHost;
use crate::runbook::{self, Diagnostic, Runbook};
use crate::store::{Store, StoreError, VersionRecord, now_ms};

/// One runbook as currently known.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// The version new runs start with; `None` while the file has never been valid.
    pub current: Option<Arc<Runbook>>,
    /// Why the file on disk is invalid; empty when it is valid.
    pub diagnostics: Vec<Diagnostic>,
    pub updated_at: i64,
}

/// A cloneable handle to the catalog.
#[derive(Clone, Default)]
pub struct Catalog {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
}

impl Catalog {
    /// Loads every runbook file directly in `dir` (a missing dir gives an empty catalog).
    pub async fn load_dir(
        dir: &Path,
        plugins: &PluginHost,
        store: &Store,
    ) -> Result<Self, StoreError> {
        let catalog = Self::default();
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "toml"))
                .collect(),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read the runbooks directory");
                Vec::new()
            }
        };
        paths.sort();
        for path in paths {
            catalog.load_file(&path, plugins, store).await?;
        }
        Ok(catalog)
    }

    /// Parses one file and records the result; a valid content is stored as a version.
    pub async fn load_file(
        &self,
        path: &Path,
        plugins: &PluginHost,
        store: &Store,
    ) -> Result<(), StoreError> {
        let file = path.display().to_string();
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = match std::fs::read_to_string(path) {
            Ok(source) => runbook::load(&file, &source, plugins).await,
            Err(err) => Err(vec![Diagnostic::whole_file(
                &file,
                format!("cannot read the file: {err}"),
            )]),
        };
        let entry = match loaded {
            Ok(parsed) => {
                if let Some(other) = self.path_of(&parsed.name).filter(|other| other != path) {
                    let message = format!(
                        "runbook name `{}` is already used by {}",
                        parsed.name,
                        other.display()
                    );
                    self.insert(Entry {
                        name: stem,
                        path: path.to_owned(),
                        current: None,
                        diagnostics: vec![Diagnostic::whole_file(&file, message)],
                        updated_at: now_ms(),
                    });
                    return Ok(());
                }
                store.put_version(&VersionRecord {
                    name: parsed.name.clone(),
                    version: parsed.version.clone(),
                    path: file.clone(),
                    source: parsed.source.clone(),
                    created_at: now_ms(),
                })?;
                Entry {
                    name: parsed.name.clone(),
                    path: path.to_owned(),
                    current: Some(Arc::new(parsed)),
                    diagnostics: Vec::new(),
                    updated_at: now_ms(),
                }
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    tracing::warn!(file = %file, "{}", diagnostic.message);
                }
                Entry {
                    name: stem,
                    path: path.to_owned(),
                    current: None,
                    diagnostics,
                    updated_at: now_ms(),
                }
            }
        };
        self.insert(entry);
        Ok(())
    }

    fn insert(&self, entry: Entry) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(entry.name.clone(), entry);
    }

    fn path_of(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(|entry| entry.path)
    }

    /// One runbook by name.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every runbook, sorted by name.
    pub fn list(&self) -> Vec<Entry> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

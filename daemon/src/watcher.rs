//! Hot reload: watches the runbooks directory (recursively) and the plugins directory, and
//! brings the catalog and the plugin host in line after every burst of changes.
//!
//! Editors save in many ways (write a temp file and rename it over, truncate then write,
//! delete then recreate, several writes in a row). Rather than interpret each event, a burst
//! of events only marks what is dirty; the catalog then compares the directory with what it
//! last read, so whatever the pattern, the final content is what gets loaded, once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, IGNORE_FILE, is_runbook_file};
use crate::events::{DaemonEvent, DaemonEvents};
use crate::plugins::PluginHost;
use crate::service::audit;
use crate::store::{AuditResult, Store};

/// How long a file must stay quiet before its changes are read: long enough to merge an
/// editor's save into one change, short enough to feel instant.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// What the watcher needs to do its work.
pub struct Watched {
    pub runbooks_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub catalog: Catalog,
    pub plugins: PluginHost,
    pub events: DaemonEvents,
    /// Where plugin changes are audited.
    pub store: Store,
}

/// Starts watching; the watcher stops with `shutdown`. Both directories are created when
/// missing, so that files added later are seen.
pub fn spawn(watched: Watched, shutdown: CancellationToken) -> anyhow::Result<()> {
    for dir in [&watched.runbooks_dir, &watched.plugins_dir] {
        std::fs::create_dir_all(dir).map_err(|err| {
            anyhow::anyhow!("cannot create the directory {}: {err}", dir.display())
        })?;
    }
    let (tx, rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        match result {
            Ok(events) => {
                // After an overflow the OS could not say what changed: look at everything.
                if events.iter().any(|event| event.event.need_rescan()) {
                    let _ = tx.send(Vec::new());
                    return;
                }
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|event| may_change_content(&event.event.kind))
                    .flat_map(|event| event.event.paths)
                    .collect();
                if !paths.is_empty() {
                    let _ = tx.send(paths);
                }
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!(error = %error, "file watcher error");
                }
                // Something may have been missed: look at everything again.
                let _ = tx.send(Vec::new());
            }
        }
    })?;
    debouncer.watch(&watched.runbooks_dir, RecursiveMode::Recursive)?;
    debouncer.watch(&watched.plugins_dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        apply_changes(watched, rx, shutdown).await;
        // Dropping the debouncer stops its threads.
        drop(debouncer);
    });
    Ok(())
}

async fn apply_changes(
    watched: Watched,
    mut rx: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            paths = rx.recv() => match paths {
                Some(paths) => paths,
                None => return,
            },
        };
        // Take everything that queued up while the last batch was applied.
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let everything = batches.iter().any(Vec::is_empty);
        let paths: BTreeSet<PathBuf> = batches.into_iter().flatten().collect();

        let plugin_files: Vec<&PathBuf> = paths
            .iter()
            .filter(|path| is_plugin_file(path, &watched.plugins_dir))
            .collect();
        let plugins_changed = reload_plugins(&watched, &plugin_files).await;
        let runbooks_touched = everything
            || paths
                .iter()
                .any(|path| path.starts_with(&watched.runbooks_dir) && touches_runbooks(path));
        if plugins_changed || runbooks_touched {
            // New or removed step kinds can make files valid or invalid: check them all.
            if let Err(err) = watched.catalog.reconcile(plugins_changed).await {
                tracing::error!(error = %err, "cannot reload the runbooks");
            }
        }
    }
}

/// Loads every component of the plugins directory again (after its grants changed), then
/// checks the runbooks against the step kinds if any changed.
pub async fn rescan_plugins(watched: &Watched) {
    let files: Vec<PathBuf> = std::fs::read_dir(&watched.plugins_dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| is_plugin_file(path, &watched.plugins_dir))
                .collect()
        })
        .unwrap_or_default();
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    // A plugin refused now may have provided a kind before: check the runbooks either way.
    reload_plugins(watched, &sorted).await;
    if let Err(err) = watched.catalog.reconcile(true).await {
        tracing::error!(error = %err, "cannot reload the runbooks");
    }
}

/// Loads, reloads or unloads each changed component; true when any step kind changed.
/// Removals go first, so that a renamed file (`mv old.wasm new.wasm`) is not refused for a
/// kind its old name still held.
async fn reload_plugins(watched: &Watched, files: &[&PathBuf]) -> bool {
    let mut changed = false;
    let (present, gone): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|path| path.is_file());
    for path in gone {
        for kind in watched.plugins.unload_file(path) {
            changed = true;
            audit_plugin(
                watched,
                "plugin_unload",
                path,
                AuditResult::Success,
                format!("step kind `{kind}` unloaded: its file is gone"),
            )
            .await;
            watched.events.publish(DaemonEvent::PluginRemoved {
                kind,
                path: path.display().to_string(),
            });
        }
    }
    for path in present {
        let shown = path.display().to_string();
        match watched.plugins.load_file(path).await {
            Ok(kind) => {
                changed = true;
                audit_plugin(
                    watched,
                    "plugin_load",
                    path,
                    AuditResult::Success,
                    format!("step kind `{kind}` loaded"),
                )
                .await;
                watched
                    .events
                    .publish(DaemonEvent::PluginLoaded { kind, path: shown });
            }
            Err(err) => {
                let error = format!("{err:#}");
                audit_plugin(
                    watched,
                    "plugin_load",
                    path,
                    AuditResult::Failure,
                    error.clone(),
                )
                .await;
                watched
                    .events
                    .publish(DaemonEvent::PluginRejected { path: shown, error });
            }
        }
    }
    changed
}

/// Records a plugin change that the watcher saw, durably, as soon as it is applied (before
/// the runbooks are checked against the changed step kinds). Who: the owner of the file (of
/// the plugins directory, for a file that is gone).
async fn audit_plugin(
    watched: &Watched,
    action: &str,
    path: &Path,
    result: AuditResult,
    detail: String,
) {
    audit::write(
        &watched.store,
        audit::owner_of(&[path, &watched.plugins_dir]),
        action,
        audit::Target::default(),
        result,
        format!("{}: {detail}", path.display()),
    )
    .await;
}

fn is_plugin_file(path: &Path, plugins_dir: &Path) -> bool {
    path.parent() == Some(plugins_dir) && path.extension().is_some_and(|ext| ext == "wasm")
}

/// Whether an event can mean that a file's content or a directory's entries changed. Opening
/// or reading a file cannot: the watcher reads every file it reloads, so counting those events
/// as changes would have it reload the directory, again and again, for as long as it runs.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// A runbook file, or anything that is not a file now: a directory created, removed or
/// renamed with runbooks in it (whatever its name, `team.d` included).
fn touches_runbooks(path: &Path) -> bool {
    is_runbook_file(path)
        || !path.is_file()
        || path.file_name().is_some_and(|name| name == IGNORE_FILE)
}

//! The only module that touches sled: typed trees for runbook versions, runs, events and
//! metadata; key encoding; the schema version; and when data is flushed to disk.
//!
//! Every state change is committed here before it is published or acted on. A run and the
//! events describing its change are written in one transaction, so a crash never leaves a
//! status without its event or an event without its status.

mod records;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sled::Transactional;

pub use records::{
    ApprovalRecord, AsyncWait, AttemptRecord, Decision, EventKind, EventRecord, HistoryEntry,
    OutputStream, RunRecord, RunStatus, StepRecord, StepStatus, VersionRecord, now_ms,
};

/// The layout of the trees below; bumped when it changes incompatibly.
const SCHEMA_VERSION: u32 = 1;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in the database: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(
        "the data directory was written by a runbookd with schema {found}; this one reads schema {SCHEMA_VERSION}"
    )]
    Schema { found: u32 },
    #[error("no run matches `{0}`")]
    RunNotFound(String),
    #[error("`{prefix}` matches several runs ({examples}); give more of the id")]
    AmbiguousRunId { prefix: String, examples: String },
}

/// Which runs to list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub runbook: Option<String>,
    pub status: Option<RunStatus>,
}

/// A cloneable handle to the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    versions: sled::Tree,
    /// Per runbook, the order in which its versions became current.
    history: sled::Tree,
    /// Held while a history entry is appended, so numbers are gap-free.
    history_lock: Mutex<()>,
    runs: sled::Tree,
    events: sled::Tree,
    /// The last sequence number given to each run's events, loaded lazily. Held while an
    /// event is written so that numbers are gap-free and in order.
    last_seq: Mutex<HashMap<String, u64>>,
    /// The last sequence number of each run known to be on disk. Readers see events only up
    /// to it, so nobody ever sees an event that a crash could take back.
    durable_seq: Mutex<HashMap<String, u64>>,
    /// Bumped whenever `durable_seq` grows, to wake readers waiting for an event to settle.
    durable_changed: tokio::sync::watch::Sender<u64>,
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(raw) => {
                let found = serde_json::from_slice(&raw)?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert("schema_version", serde_json::to_vec(&SCHEMA_VERSION)?)?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                versions: db.open_tree("runbook_versions")?,
                history: db.open_tree("runbook_history")?,
                history_lock: Mutex::new(()),
                runs: db.open_tree("runs")?,
                events: db.open_tree("events")?,
                db,
                last_seq: Mutex::new(HashMap::new()),
                durable_seq: Mutex::new(HashMap::new()),
                durable_changed: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// Opens (or creates) a tree of this database for a subsystem that owns its own records
    /// (the secret vault), so that its writes share the database's log and flushes.
    pub fn tree(&self, name: &str) -> sled::Result<sled::Tree> {
        self.inner.db.open_tree(name)
    }

    /// Makes everything written so far durable. Called before a side effect starts and before
    /// a change is acknowledged; concurrent callers share one disk flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Stores a runbook version; returns false when that exact content was already stored.
    pub fn put_version(&self, record: &VersionRecord) -> Result<bool, StoreError> {
        let key = version_key(&record.name, &record.version);
        let value = serde_json::to_vec(record)?;
        let previous =
            self.inner
                .versions
                .compare_and_swap(key, None as Option<&[u8]>, Some(value))?;
        Ok(previous.is_ok())
    }

    /// Makes `record` the runbook's newest version unless it already is (same content):
    /// saving identical content adds nothing. Returns the new history entry.
    pub fn record_version(
        &self,
        record: &VersionRecord,
        cause: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        let _guard = guard(&self.inner.history_lock);
        let latest = self.latest_version(&record.name)?;
        if latest
            .as_ref()
            .is_some_and(|latest| latest.version == record.version)
        {
            return Ok(None);
        }
        self.put_version(record)?;
        let entry = HistoryEntry {
            name: record.name.clone(),
            number: latest.map_or(1, |latest| latest.number + 1),
            version: record.version.clone(),
            path: record.path.clone(),
            created_at: record.created_at,
            cause: cause.to_owned(),
        };
        self.inner.history.insert(
            history_key(&entry.name, entry.number),
            serde_json::to_vec(&entry)?,
        )?;
        Ok(Some(entry))
    }

    /// A runbook's history, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner
            .history
            .scan_prefix(history_prefix(name))
            .values()
            .map(|raw| Ok(serde_json::from_slice(&raw?)?))
            .collect()
    }

    /// The newest entry of a runbook's history.
    pub fn latest_version(&self, name: &str) -> Result<Option<HistoryEntry>, StoreError> {
        self.inner
            .history
            .scan_prefix(history_prefix(name))
            .values()
            .next_back()
            .transpose()?
            .map(|raw| serde_json::from_slice(&raw))
            .transpose()
            .map_err(Into::into)
    }

    /// The newest history entry read from the file `path`, whatever runbook it was: how a
    /// file that is broken at start-up finds its last good version.
    pub fn latest_version_from(&self, path: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let mut newest: Option<HistoryEntry> = None;
        for raw in self.inner.history.iter().values() {
            let entry: HistoryEntry = serde_json::from_slice(&raw?)?;
            if entry.path == path
                && newest
                    .as_ref()
                    .is_none_or(|newest| entry.created_at >= newest.created_at)
            {
                newest = Some(entry);
            }
        }
        Ok(newest)
    }

    /// One stored version of a runbook.
    pub fn version(&self, name: &str, version: &str) -> Result<Option<VersionRecord>, StoreError> {
        self.inner
            .versions
            .get(version_key(name, version))?
            .map(|raw| serde_json::from_slice(&raw))
            .transpose()
            .map_err(Into::into)
    }

    /// Writes a run and appends `events` to its log, atomically. Returns the stored events
    /// with their sequence numbers, ready to publish.
    pub fn commit(
        &self,
        run: &RunRecord,
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.write(&run.id, Some(run), events)
    }

    /// Appends events to a run's log without changing the run (output lines, say).
    pub fn append(
        &self,
        run_id: &str,
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.write(run_id, None, events)
    }

    fn write(
        &self,
        run_id: &str,
        run: Option<&RunRecord>,
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let run_bytes = run.map(serde_json::to_vec).transpose()?;
        let mut counters = guard(&self.inner.last_seq);
        let last = match counters.get(run_id) {
            Some(last) => *last,
            None => {
                // First write of this run by this process: what is on disk was written by an
                // earlier process and survived it, so it is durable.
                let stored = self.stored_last_seq(run_id)?;
                guard(&self.inner.durable_seq).insert(run_id.to_owned(), stored);
                stored
            }
        };
        let at = now_ms();
        let records: Vec<EventRecord> = events
            .into_iter()
            .zip(last + 1..)
            .map(|(kind, seq)| EventRecord {
                run_id: run_id.to_owned(),
                seq,
                at,
                kind,
            })
            .collect();
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|event| Ok((event_key(run_id, event.seq), serde_json::to_vec(event)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        // No I/O in here: sled may run the closure more than once.
        (&self.inner.runs, &self.inner.events)
            .transaction(|(runs, events)| {
                if let Some(bytes) = &run_bytes {
                    runs.insert(run_id.as_bytes(), bytes.as_slice())?;
                }
                for (key, value) in &encoded {
                    events.insert(key.as_slice(), value.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|err| match err {
                sled::transaction::TransactionError::Storage(err) => StoreError::Sled(err),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::Sled(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        counters.insert(run_id.to_owned(), last + records.len() as u64);
        Ok(records)
    }

    fn stored_last_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        let prefix = event_prefix(run_id);
        match self.inner.events.scan_prefix(&prefix).next_back() {
            Some(entry) => {
                let (key, _) = entry?;
                Ok(decode_seq(&key[prefix.len()..]))
            }
            None => Ok(0),
        }
    }

    /// Records that `events` are on disk (called after a flush that followed their write).
    pub fn mark_durable(&self, events: &[EventRecord]) {
        let mut durable = guard(&self.inner.durable_seq);
        for event in events {
            let seq = durable.entry(event.run_id.clone()).or_default();
            *seq = (*seq).max(event.seq);
        }
        drop(durable);
        self.inner
            .durable_changed
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A run with the sequence number of its newest event, once every event already written
    /// for it is durable: what the record shows can then be read back as events. Waits at most
    /// `patience` (the group commit takes milliseconds), then answers with what is durable.
    pub async fn settled_run(
        &self,
        id: &str,
        patience: std::time::Duration,
    ) -> Result<Option<(RunRecord, u64)>, StoreError> {
        let mut changed = self.inner.durable_changed.subscribe();
        let Some(run) = self.run(id)? else {
            return Ok(None);
        };
        let written = match guard(&self.inner.last_seq).get(id) {
            Some(last) => *last,
            None => self.stored_last_seq(id)?,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let durable = self.last_seq(id)?;
            if durable >= written {
                return Ok(Some((run, durable)));
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Ok(Some((run, durable)));
            }
        }
    }

    /// The sequence number of a run's newest durable event (0 when it has none).
    pub fn last_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        match guard(&self.inner.durable_seq).get(run_id) {
            Some(last) => Ok(*last),
            None => self.stored_last_seq(run_id),
        }
    }

    /// A run by its full id.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.inner
            .runs
            .get(id.as_bytes())?
            .map(|raw| serde_json::from_slice(&raw))
            .transpose()
            .map_err(Into::into)
    }

    /// The full id of the one run whose id starts with `prefix`.
    pub fn resolve_run_id(&self, prefix: &str) -> Result<String, StoreError> {
        let not_found = || StoreError::RunNotFound(prefix.to_owned());
        if prefix.is_empty() {
            return Err(not_found());
        }
        let mut matches = self.inner.runs.scan_prefix(prefix.as_bytes()).keys();
        let first = matches.next().ok_or_else(not_found)??;
        let others: Vec<String> = matches
            .take(3)
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect::<Result<_, sled::Error>>()?;
        if others.is_empty() {
            return Ok(String::from_utf8_lossy(&first).into_owned());
        }
        let mut examples = vec![String::from_utf8_lossy(&first).into_owned()];
        examples.extend(others);
        Err(StoreError::AmbiguousRunId {
            prefix: prefix.to_owned(),
            examples: examples.join(", "),
        })
    }

    /// Runs newest first (ids sort by creation time), starting after `after` when given.
    pub fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let range = match after {
            Some(after) => self.inner.runs.range(..after.as_bytes()),
            None => self.inner.runs.iter(),
        };
        let mut runs = Vec::new();
        for entry in range.rev() {
            let (_, raw) = entry?;
            let run: RunRecord = serde_json::from_slice(&raw)?;
            let wanted = filter
                .runbook
                .as_ref()
                .is_none_or(|name| *name == run.runbook)
                && filter.status.is_none_or(|status| status == run.status);
            if wanted {
                runs.push(run);
                if runs.len() == limit {
                    break;
                }
            }
        }
        Ok(runs)
    }

    /// Runs that had not ended when the daemon last stopped.
    pub fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut runs = Vec::new();
        for entry in self.inner.runs.iter() {
            let (_, raw) = entry?;
            let run: RunRecord = serde_json::from_slice(&raw)?;
            if !run.status.is_terminal() {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// A run's durable events with a sequence number above `after`, in order.
    pub fn events_after(&self, run_id: &str, after: u64) -> Result<Vec<EventRecord>, StoreError> {
        let durable = self.last_seq(run_id)?;
        if durable <= after {
            return Ok(Vec::new());
        }
        let start = event_key(run_id, after.saturating_add(1));
        let end = event_key(run_id, durable);
        self.inner
            .events
            .range(start..=end)
            .map(|entry| Ok(serde_json::from_slice(&entry?.1)?))
            .collect()
    }
}

/// Locks a map; a poisoned lock only means another writer panicked, and every critical
/// section leaves the map valid.
fn guard<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn version_key(name: &str, version: &str) -> Vec<u8> {
    [name.as_bytes(), b"\0", version.as_bytes()].concat()
}

/// Runbook names never contain NUL, so `<name>\0` prefixes exactly one runbook's history.
fn history_prefix(name: &str) -> Vec<u8> {
    [name.as_bytes(), b"\0"].concat()
}

/// Big-endian so that sled's byte order is the history's order.
fn history_key(name: &str, number: u32) -> Vec<u8> {
    [history_prefix(name).as_slice(), &number.to_be_bytes()].concat()
}

/// Run ids never contain `/`, so `<run id>/` prefixes exactly one run's events.
fn event_prefix(run_id: &str) -> Vec<u8> {
    [run_id.as_bytes(), b"/"].concat()
}

/// Big-endian so that sled's byte order is numeric order.
fn event_key(run_id: &str, seq: u64) -> Vec<u8> {
    [event_prefix(run_id).as_slice(), &seq.to_be_bytes()].concat()
}

fn decode_seq(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            runbook: "rb".into(),
            version: "v".into(),
            status: RunStatus::Running,
            params: serde_json::Map::new(),
            steps: vec![StepRecord::pending("a", "shell")],
            created_at: 1,
            started_at: 1,
            finished_at: 0,
            error: None,
            dry_run: false,
        }
    }

    fn log(line: &str) -> EventKind {
        EventKind::StepOutput {
            step_id: "a".into(),
            stream: OutputStream::Stdout,
            line: line.into(),
        }
    }

    #[test]
    fn sequence_numbers_survive_a_reopen_without_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .commit(&run("r1"), vec![log("a"), log("b")])
                .expect("commit");
            let last = store.append("r1", vec![log("c")]).expect("append");
            store.mark_durable(&last);
        }
        let store = Store::open(dir.path()).expect("reopen");
        let more = store.append("r1", vec![log("d")]).expect("append");
        assert_eq!(more[0].seq, 4);
        assert_eq!(
            store.last_seq("r1").expect("seq"),
            3,
            "not yet marked durable"
        );
        store.mark_durable(&more);
        let seqs: Vec<u64> = store
            .events_after("r1", 1)
            .expect("events")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    #[test]
    fn history_numbers_versions_and_skips_repeated_saves() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let version = |hash: &str| VersionRecord {
            name: "deploy".into(),
            version: hash.into(),
            path: "deploy.toml".into(),
            source: format!("# {hash}"),
            created_at: 0,
        };
        let added = |hash: &str| {
            store
                .record_version(&version(hash), "file")
                .expect("records")
                .map(|entry| entry.number)
        };
        assert_eq!(added("a"), Some(1));
        assert_eq!(added("a"), None, "identical content adds nothing");
        assert_eq!(added("b"), Some(2));
        assert_eq!(
            added("a"),
            Some(3),
            "coming back to a content is a new version"
        );
        drop(store);
        let store = Store::open(dir.path()).expect("reopens");
        let numbers: Vec<(u32, String)> = store
            .history("deploy")
            .expect("reads")
            .into_iter()
            .map(|entry| (entry.number, entry.version))
            .collect();
        assert_eq!(numbers, [(1, "a".into()), (2, "b".into()), (3, "a".into())]);
        assert!(store.history("other").expect("reads").is_empty());
    }

    #[test]
    fn run_ids_resolve_by_unique_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.commit(&run("01AB"), vec![]).expect("commit");
        store.commit(&run("01AC"), vec![]).expect("commit");
        assert_eq!(store.resolve_run_id("01AB").expect("unique"), "01AB");
        assert!(matches!(
            store.resolve_run_id("01A"),
            Err(StoreError::AmbiguousRunId { .. })
        ));
        assert!(matches!(
            store.resolve_run_id("zz"),
            Err(StoreError::RunNotFound(_))
        ));
    }
}

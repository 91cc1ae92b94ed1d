//! The only module that touches sled: typed trees for runbook versions, runs, their steps
//! and outputs, events and metadata; key encoding; the schema version and its migrations; and
//! when data is flushed to disk (the writes of runs and the flushes through one writer thread).
//!
//! Every state change is committed here before it is published or acted on. A transition
//! writes only the records it changes (a run's header, one record per step, one output per
//! step attempt) together with the events describing it, in one transaction, so a crash never
//! leaves a status without its event or an event without its status, and the cost of a
//! transition does not grow with the run.

mod audit;
mod migrate;
mod plugin_grants;
mod prune;
mod records;
mod runs;
mod secrets;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use audit::{AuditFilter, AuditRecord, AuditResult};
pub use prune::{Prunable, Retention};
pub use records::{
    ApprovalRecord, AsyncWait, AttemptRecord, Decision, DispatchRecord, EventKind, EventRecord,
    HistoryEntry, INLINE_OUTPUT_BYTES, InstanceRecord, MAX_RUN_RETRIES, OutputStream, PermitWait,
    ProcessGroup, Quarantined, RunRecord, RunRetry, RunStatus, StepRecord, StepStatus,
    VersionRecord, json_len, now_ms,
};
pub use runs::Changes;
pub use secrets::{AuditAction, AuditEntry, SecretRecord, SecretRecords};

/// The layout of the trees below; bumped when it changes incompatibly, with a migration from
/// every earlier layout in `migrate.rs`.
///
/// 1: one `runs` record per run holding every step and output. 2: `runs` holds headers,
/// `steps` one record per step, `outputs` one record per step attempt.
const SCHEMA_VERSION: u32 = 2;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in the database: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(
        "the data directory was written by a newer runbookd (schema {found}); this one reads schema {SCHEMA_VERSION} and older"
    )]
    Schema { found: u32 },
    #[error("cannot migrate the data directory from schema {from}: {reason}")]
    Migration { from: u32, reason: String },
    #[error("cannot flush the database: {0}")]
    Flush(String),
    /// A write or flush failed earlier (a full disk, say) and sled refuses every write since:
    /// see [`StoreHealth`].
    #[error(
        "the database refuses writes since a write failed at {}: {error}; free space in the data directory: runbookd restarts by itself once it can write there again",
        rfc3339(*at)
    )]
    Unwritable { error: String, at: i64 },
    #[error("no run matches `{0}`")]
    RunNotFound(String),
    #[error("`{prefix}` matches several runs ({examples}); give more of the id")]
    AmbiguousRunId { prefix: String, examples: String },
}

/// Whether the database still writes, for `status` and for refusing writes early.
///
/// Sled 0.34 keeps the first error of a background log write (ENOSPC from `pwrite`, say) as
/// its "global error" and fails every later write and flush with it until the database is
/// opened again: it cannot tell which buffered writes reached the disk, so it stops rather
/// than write past a hole. The store mirrors that state here, so that `status` can say why
/// and when, and callers get one clear error instead of sled's bare I/O error.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failed: std::sync::atomic::AtomicBool,
    last_failure: Mutex<Option<WriteFailure>>,
}

/// The first write the database refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// Sled's error, e.g. "IO error: No space left on device (os error 28)".
    pub error: String,
    /// Unix ms.
    pub at: i64,
}

impl StoreHealth {
    /// The error a failed write or flush becomes: an I/O error (a full disk) is recorded,
    /// logged the first time only (not every half second by the idle flush), and reworded
    /// as [`StoreError::Unwritable`]; any other error is passed on.
    fn refuse(&self, err: sled::Error) -> StoreError {
        match err {
            sled::Error::Io(_) | sled::Error::ReportableBug(_) => {
                if self.record(&err) {
                    tracing::error!(
                        error = %err,
                        "the database cannot write; it refuses writes until the data directory takes writes again and runbookd restarts in place"
                    );
                }
                self.refusal().unwrap_or(StoreError::Sled(err))
            }
            other => StoreError::Sled(other),
        }
    }

    /// Records a failed write or flush; true when it is the first.
    fn record(&self, error: &sled::Error) -> bool {
        let mut last = guard(&self.last_failure);
        self.failed
            .store(true, std::sync::atomic::Ordering::Release);
        if last.is_some() {
            return false;
        }
        *last = Some(WriteFailure {
            error: describe(error),
            at: now_ms(),
        });
        true
    }

    /// The failure that stopped writes, if one did.
    pub fn failure(&self) -> Option<WriteFailure> {
        if !self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        guard(&self.last_failure).clone()
    }

    /// The error every write gets once the database has failed.
    fn refusal(&self) -> Option<StoreError> {
        self.failure().map(|failure| StoreError::Unwritable {
            error: failure.error,
            at: failure.at,
        })
    }
}

/// Sled's error as a person reads it. Sled wraps the OS error of a failed log write in a new
/// `io::Error` whose text is the original's `Debug` form (`Custom { kind: StorageFull, error:
/// "Os { code: 28, .. }" }`); its kind survives, so a full disk or quota reads as the OS says it.
fn describe(error: &sled::Error) -> String {
    let sled::Error::Io(io) = error else {
        return error.to_string();
    };
    let errno = match io.kind() {
        std::io::ErrorKind::StorageFull => Some(rustix::io::Errno::NOSPC),
        std::io::ErrorKind::QuotaExceeded => Some(rustix::io::Errno::DQUOT),
        _ => None,
    };
    match errno.or_else(|| io.raw_os_error().map(rustix::io::Errno::from_raw_os_error)) {
        Some(errno) => std::io::Error::from(errno).to_string(),
        None => io.to_string(),
    }
}

/// A Unix-ms time as RFC 3339, for messages.
fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or_default());
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Which runs to list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub runbook: Option<String>,
    pub status: Option<RunStatus>,
}

/// How long opening waits for the database's file lock: a process that just died may leave a
/// child between fork and exec holding it for a moment, and so may a tool that just closed it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled in `dir`, waiting up to [`LOCK_PATIENCE`] while another holds its lock. Sled's own
/// periodic flusher is off: the store's writer thread is the only flusher.
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            // sled says so only in its message.
            Err(sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return Ok(result?),
        }
    }
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
    /// Run headers by run id.
    runs: sled::Tree,
    /// Step records by run id and step index.
    steps: sled::Tree,
    /// Step outputs by run id, step index and attempt.
    outputs: sled::Tree,
    events: sled::Tree,
    /// Runs moved aside because their records could not be read, by run id.
    quarantine: sled::Tree,
    /// The last sequence number given to each run's events, loaded lazily. Held while an
    /// event is written so that numbers are gap-free and in order.
    last_seq: Mutex<HashMap<String, u64>>,
    /// The last sequence number of each run known to be on disk. Readers see events only up
    /// to it, so nobody ever sees an event that a crash could take back.
    durable_seq: Mutex<HashMap<String, u64>>,
    /// Bumped whenever `durable_seq` grows, to wake readers waiting for an event to settle.
    durable_changed: tokio::sync::watch::Sender<u64>,
    /// Whether sled still writes; shared with the writer, which sees most failures first.
    health: Arc<StoreHealth>,
    /// Declared last so that it is dropped last: it applies what is queued and flushes once
    /// more when it goes.
    writer: writer::Writer,
}

impl Store {
    /// Opens (or creates) the database in `dir`, migrating a data directory written by an
    /// older runbookd first.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_sled(dir)?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(raw) => {
                let found: u32 = serde_json::from_slice(&raw)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
                if found < SCHEMA_VERSION {
                    migrate::migrate(&db, &meta, found)?;
                }
            }
            None => {
                meta.insert("schema_version", serde_json::to_vec(&SCHEMA_VERSION)?)?;
            }
        }
        let health = Arc::new(StoreHealth::default());
        let trees = writer::RunTrees {
            runs: db.open_tree("runs")?,
            steps: db.open_tree("steps")?,
            outputs: db.open_tree("outputs")?,
            events: db.open_tree("events")?,
        };
        let writer = writer::Writer::start(db.clone(), trees.clone(), Arc::clone(&health))
            .map_err(|err| StoreError::Flush(err.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                versions: db.open_tree("runbook_versions")?,
                history: db.open_tree("runbook_history")?,
                history_lock: Mutex::new(()),
                runs: trees.runs,
                steps: trees.steps,
                outputs: trees.outputs,
                events: trees.events,
                quarantine: db.open_tree("quarantine")?,
                db,
                last_seq: Mutex::new(HashMap::new()),
                durable_seq: Mutex::new(HashMap::new()),
                durable_changed: tokio::sync::watch::Sender::new(0),
                health,
                writer,
            }),
        })
    }

    /// Makes everything written so far durable. Called before a side effect starts and before
    /// a change is acknowledged; concurrent callers share one disk flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Some(refusal) = self.inner.health.refusal() {
            return Err(refusal);
        }
        self.inner.writer.flush().await?;
        Ok(())
    }

    /// Waits until the writes of runs handed to the writer thread are applied, so that what
    /// is read next includes them. Every reader of run, step and output records calls it.
    fn settle(&self) {
        self.inner.writer.settle();
    }

    /// The size of the database's files on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// Whether the database still writes, and the failure that stopped it if not.
    pub fn health(&self) -> Option<WriteFailure> {
        self.inner.health.failure()
    }

    /// The error a failed write becomes (see [`StoreHealth::refuse`]).
    fn write_failed(&self, err: sled::Error) -> StoreError {
        self.inner.health.refuse(err)
    }

    /// The error of a failed transaction whose closure never aborts.
    fn transaction_failed(&self, err: sled::transaction::TransactionError<()>) -> StoreError {
        match err {
            sled::transaction::TransactionError::Storage(err) => self.write_failed(err),
            sled::transaction::TransactionError::Abort(()) => {
                StoreError::Sled(sled::Error::Unsupported("transaction aborted".into()))
            }
        }
    }

    /// Stores a runbook version; returns false when that exact content was already stored.
    pub fn put_version(&self, record: &VersionRecord) -> Result<bool, StoreError> {
        if let Some(refusal) = self.inner.health.refusal() {
            return Err(refusal);
        }
        let key = version_key(&record.name, &record.version);
        let value = serde_json::to_vec(record)?;
        let previous = self
            .inner
            .versions
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(|err| self.write_failed(err))?;
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
        self.inner
            .history
            .insert(
                history_key(&entry.name, entry.number),
                serde_json::to_vec(&entry)?,
            )
            .map_err(|err| self.write_failed(err))?;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A running run `id` with one pending shell step `a`: the smallest run to store.
    pub(crate) fn run(id: &str) -> RunRecord {
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
            retries: Vec::new(),
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
            let first = run("r1");
            store
                .commit(&first, &Changes::all(&first), vec![log("a"), log("b")])
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
        // Events are marked durable after a flush, which follows their write (see `writer`).
        store.settle();
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
    fn a_read_sees_every_write_made_before_it_and_a_close_keeps_them_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut record = run("r");
        record.steps = (0..300)
            .map(|index| StepRecord::pending(&format!("s{index}"), "http"))
            .collect();
        store
            .commit(&record, &Changes::all(&record), Vec::new())
            .expect("commit");
        for index in 0..record.steps.len() {
            record.steps[index].status = StepStatus::Completed;
            record.steps[index].output = Some(serde_json::json!({ "n": index }));
            let changes = Changes {
                steps: vec![index],
                outputs: vec![index],
                ..Changes::default()
            };
            store
                .commit(&record, &changes, vec![log("done")])
                .expect("commit");
            // Read at once, with no flush in between: the write is seen all the same.
            let read = store.run("r").expect("reads").expect("stored");
            assert_eq!(
                read.steps[index].status,
                StepStatus::Completed,
                "step {index}"
            );
            assert_eq!(read.steps[index].output, record.steps[index].output);
            let (_, raw) = store
                .step_output("r", &format!("s{index}"), None, None)
                .expect("reads")
                .expect("stored");
            assert_eq!(raw, format!("{{\"n\":{index}}}").into_bytes());
        }
        // Closing applies and flushes what is still queued.
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let read = store.run("r").expect("reads").expect("stored");
        assert!(
            read.steps
                .iter()
                .all(|step| step.status == StepStatus::Completed),
            "every step's last write survived the close"
        );
        assert_eq!(store.last_seq("r").expect("seq"), 300);
    }

    #[test]
    fn a_step_output_is_found_with_a_right_a_wrong_or_no_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut stored = run("r");
        stored.steps = (0..300)
            .map(|index| StepRecord {
                status: StepStatus::Completed,
                attempts: 1,
                output: Some(serde_json::json!({ "n": index })),
                ..StepRecord::pending(&format!("s{index}"), "shell")
            })
            .collect();
        store
            .commit(&stored, &Changes::all(&stored), Vec::new())
            .expect("commit");
        let expected = Some((1, br#"{"n":150}"#.to_vec()));
        for hint in [Some(150), Some(7), Some(9_999), None] {
            assert_eq!(
                store.step_output("r", "s150", hint, None).expect("reads"),
                expected,
                "hint {hint:?}"
            );
        }
        assert_eq!(
            store
                .step_output("r", "s150", Some(150), Some(2))
                .expect("reads"),
            None
        );
        assert_eq!(
            store
                .step_output("r", "nope", Some(0), None)
                .expect("reads"),
            None
        );
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
    fn a_full_disk_is_recorded_once_and_reads_as_the_os_says_it() {
        let health = StoreHealth::default();
        assert!(health.failure().is_none());
        // What sled 0.34 makes of ENOSPC in its log writer.
        let enospc = || {
            sled::Error::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "Os { code: 28, kind: StorageFull, message: \"No space left on device\" }",
            ))
        };
        let refused = health.refuse(enospc()).to_string();
        assert!(
            refused.contains(": No space left on device (os error 28); free space"),
            "{refused}"
        );
        let first = health.failure().expect("recorded");
        assert_eq!(first.error, "No space left on device (os error 28)");
        assert!(!health.record(&enospc()), "only the first failure is news");
        assert_eq!(health.failure(), Some(first), "the first failure is kept");
        assert!(matches!(
            StoreHealth::default().refuse(sled::Error::Unsupported("x".into())),
            StoreError::Sled(_)
        ));
    }

    #[test]
    fn run_ids_resolve_by_unique_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for id in ["01AB", "01AC"] {
            let run = run(id);
            store
                .commit(&run, &Changes::all(&run), vec![])
                .expect("commit");
        }
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

//! The daemon's audit log: one entry per request that changes something (or tried to), in
//! the order they were answered, keyed by a number sled hands out in increasing order. Only
//! appended to; entries name what was acted on (runbook, run, step, secret name), never a
//! secret's value.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Tree of `big-endian u64 id -> AuditRecord`.
const AUDIT_LOG_TREE: &str = "audit_log";

/// Audit entries [`Store::prune_audit`] removes in one atomic batch.
pub const AUDIT_PRUNE_BATCH: usize = 10_000;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuditResult {
    Success,
    /// Refused for who asked (permission).
    Denied,
    /// Refused or failed for what was asked (invalid, unknown, wrong state, an error).
    Failure,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Denied => "DENIED",
            Self::Failure => "FAILURE",
        }
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix ms.
    pub at: i64,
    /// The peer's uid from the socket's credentials, when the transport has them.
    pub uid: Option<u32>,
    /// The peer's user name, looked up from its uid.
    pub user: String,
    /// `start`, `approve`, `deny`, `resolve`, `cancel`, `pause`, `resume`, `complete`,
    /// `save`, `rollback`, `secret_set`, `secret_rm`, `prune`, `prune_dry_run`, `shutdown`,
    /// `connect` (a refused socket connection), `plugin_load`, `plugin_unload`, `reload` (a
    /// runbook file changed on disk).
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runbook: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
    /// A secret's name, never its value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    pub result: AuditResult,
    /// A short detail: the error of a refused request, what a successful one did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Unix ms: only entries at or after it.
    pub since: Option<i64>,
    pub action: Option<String>,
    pub run: Option<String>,
}

impl Store {
    /// Appends an entry (not flushed: the caller flushes before it answers).
    pub fn audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let tree = self.inner.db.open_tree(AUDIT_LOG_TREE)?;
        let id = self.inner.db.generate_id()?;
        tree.insert(id.to_be_bytes(), serde_json::to_vec(record)?)
            .map_err(|err| self.write_failed(err))?;
        Ok(())
    }

    /// Removes the entries written before `before` (Unix ms), oldest first, in batches of
    /// [`AUDIT_PRUNE_BATCH`] (each batch atomic, so a crash leaves a shorter log, never a
    /// torn one). Returns how many went.
    pub fn prune_audit(&self, before: i64) -> Result<usize, StoreError> {
        let tree = self.inner.db.open_tree(AUDIT_LOG_TREE)?;
        let mut removed = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for entry in tree.iter().take(AUDIT_PRUNE_BATCH) {
                let (key, raw) = entry?;
                let record: AuditRecord = serde_json::from_slice(&raw)?;
                // Entries are in the order they were written, so the first one young enough
                // ends the old ones.
                if record.at >= before {
                    break;
                }
                batch.remove(key);
                in_batch += 1;
            }
            if in_batch == 0 {
                return Ok(removed);
            }
            tree.apply_batch(batch)
                .map_err(|err| self.write_failed(err))?;
            removed += in_batch;
            if in_batch < AUDIT_PRUNE_BATCH {
                return Ok(removed);
            }
        }
    }

    /// The newest `limit` entries that match `filter`, oldest first.
    pub fn audit_log(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let tree = self.inner.db.open_tree(AUDIT_LOG_TREE)?;
        let mut found = Vec::new();
        for entry in tree.iter().rev() {
            let (_, raw) = entry?;
            let record: AuditRecord = serde_json::from_slice(&raw)?;
            if filter.since.is_some_and(|since| record.at < since) {
                break;
            }
            let wanted = filter
                .action
                .as_ref()
                .is_none_or(|action| *action == record.action)
                && filter.run.as_ref().is_none_or(|run| *run == record.run);
            if wanted {
                found.push(record);
                if found.len() == limit {
                    break;
                }
            }
        }
        found.reverse();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(at: i64, action: &str) -> AuditRecord {
        AuditRecord {
            at,
            uid: Some(1000),
            user: "ops".into(),
            action: action.into(),
            runbook: String::new(),
            run: String::new(),
            step: String::new(),
            secret: String::new(),
            result: AuditResult::Success,
            detail: String::new(),
        }
    }

    fn actions(store: &Store) -> Vec<String> {
        store
            .audit_log(&AuditFilter::default(), usize::MAX)
            .unwrap()
            .into_iter()
            .map(|record| record.action)
            .collect()
    }

    #[test]
    fn pruning_removes_only_entries_older_than_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (at, action) in [(100, "a"), (200, "b"), (300, "c"), (400, "d")] {
            store.audit(&entry(at, action)).unwrap();
        }
        assert_eq!(store.prune_audit(300).unwrap(), 2);
        assert_eq!(actions(&store), ["c", "d"]);
        // Nothing older is left: a second pass removes nothing.
        assert_eq!(store.prune_audit(300).unwrap(), 0);
        assert_eq!(actions(&store), ["c", "d"]);
    }

    #[test]
    fn pruning_a_backlog_larger_than_one_batch_removes_all_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = AUDIT_PRUNE_BATCH + 5;
        for at in 0..old {
            store
                .audit(&entry(i64::try_from(at).unwrap(), "old"))
                .unwrap();
        }
        store.audit(&entry(1 << 40, "new")).unwrap();
        assert_eq!(store.prune_audit(1 << 40).unwrap(), old);
        assert_eq!(actions(&store), ["new"]);
    }
}

//! The daemon's audit log: one entry per request that changes something (or tried to), in
//! the order they were answered, keyed by a number sled hands out in increasing order. Only
//! appended to; entries name what was acted on (runbook, run, step, secret name), never a
//! secret's value.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Tree of `big-endian u64 id -> AuditRecord`.
const AUDIT_LOG_TREE: &str = "audit_log";

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
    /// `save`, `rollback`, `secret_set`, `secret_rm`, `prune`, `shutdown`.
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

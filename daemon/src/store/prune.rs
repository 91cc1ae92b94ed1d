//! Retention: which ended runs a rule selects, and removing a run with every record it owns
//! (header, step records, outputs, events) in one transaction, so that a run is either whole
//! or gone. A run that has not ended is never selected.

use sled::Transactional as _;

use super::records::RunRecord;
use super::runs::run_prefix;
use super::{Store, StoreError};

/// What a retention rule keeps: ended runs newer than `finished_before` and, of those, the
/// newest `keep_newest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Unix ms: runs that ended before it go.
    pub finished_before: Option<i64>,
    /// How many ended runs to keep at most, newest first.
    pub keep_newest: Option<usize>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        self.finished_before.is_none() && self.keep_newest.is_none()
    }
}

/// A run a rule selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prunable {
    pub run_id: String,
    pub runbook: String,
    pub status: super::RunStatus,
    pub finished_at: i64,
}

impl Store {
    /// The ended runs `rule` selects, newest first.
    pub fn prunable(&self, rule: Retention) -> Result<Vec<Prunable>, StoreError> {
        self.settle();
        let mut selected = Vec::new();
        if rule.is_empty() {
            return Ok(selected);
        }
        let mut ended = 0usize;
        // Run ids sort by creation time: newest first.
        for entry in self.inner.runs.iter().rev() {
            let (_, raw) = entry?;
            let run: RunRecord = serde_json::from_slice(&raw)?;
            if !run.status.is_terminal() {
                continue;
            }
            ended += 1;
            let too_old = rule
                .finished_before
                .is_some_and(|before| run.finished_at < before);
            let too_many = rule.keep_newest.is_some_and(|keep| ended > keep);
            if too_old || too_many {
                selected.push(Prunable {
                    run_id: run.id,
                    runbook: run.runbook,
                    status: run.status,
                    finished_at: run.finished_at,
                });
            }
        }
        Ok(selected)
    }

    /// Removes an ended run and everything stored of it, atomically. Returns false when there
    /// was no such run, or when it has not ended (it is then left alone).
    pub fn remove_run(&self, run_id: &str) -> Result<bool, StoreError> {
        self.settle();
        let inner = &self.inner;
        let Some(raw) = inner.runs.get(run_id.as_bytes())? else {
            return Ok(false);
        };
        let run: RunRecord = serde_json::from_slice(&raw)?;
        if !run.status.is_terminal() {
            return Ok(false);
        }
        // An ended run gains no records any more, so its keys can be listed first.
        let prefix = run_prefix(run_id);
        let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
            tree.scan_prefix(&prefix)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)
        };
        let (steps, outputs, events) = (
            keys(&inner.steps)?,
            keys(&inner.outputs)?,
            keys(&inner.events)?,
        );
        (&inner.runs, &inner.steps, &inner.outputs, &inner.events)
            .transaction(|(runs, step_tree, output_tree, event_tree)| {
                runs.remove(run_id.as_bytes())?;
                for key in &steps {
                    step_tree.remove(key)?;
                }
                for key in &outputs {
                    output_tree.remove(key)?;
                }
                for key in &events {
                    event_tree.remove(key)?;
                }
                Ok(())
            })
            .map_err(|err| self.transaction_failed(err))?;
        super::guard(&inner.last_seq).remove(run_id);
        super::guard(&inner.durable_seq).remove(run_id);
        Ok(true)
    }
}

//! Retention: ended runs go once they are older than the daemon's `[retention] runs` or
//! beyond its `max_runs`, checked at start-up and every [`PRUNE_EVERY`] after, and whenever
//! an operator asks (`runbook prune`). A run that has not ended is never removed.

use std::time::Duration;

use super::{Engine, EngineError};
use crate::store::{Prunable, Retention, StoreError, now_ms};

/// How often the daemon applies its retention policy on its own.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How long audit entries are kept unless `[retention] audit` says otherwise: longer than any
/// run is likely to be, as the log is what answers "who did that" months later.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Which ended runs go; empty (the daemon's default) keeps every run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Ended runs older than this go (measured from their end).
    pub max_age: Option<Duration>,
    /// At most this many ended runs are kept, newest first.
    pub max_runs: Option<usize>,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        self.max_age.is_none() && self.max_runs.is_none()
    }

    /// The rule this policy makes at `now` (Unix ms).
    pub fn rule_at(&self, now: i64) -> Retention {
        Retention {
            finished_before: self
                .max_age
                .map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))),
            keep_newest: self.max_runs,
        }
    }
}

impl Engine {
    /// Removes the ended runs `policy` selects now, each with all its records, and returns
    /// them; with `dry_run`, only returns them.
    pub async fn prune(
        &self,
        policy: RetentionPolicy,
        dry_run: bool,
    ) -> Result<Vec<Prunable>, EngineError> {
        let store = self.inner.store.clone();
        let rule = policy.rule_at(now_ms());
        // A scan of every run header: off the async workers.
        let removed = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut selected = store.prunable(rule)?;
            if !dry_run {
                let mut removed = Vec::with_capacity(selected.len());
                for run in selected.drain(..) {
                    if store.remove_run(&run.run_id)? {
                        removed.push(run);
                    }
                }
                selected = removed;
            }
            Ok(selected)
        })
        .await
        .map_err(|err| EngineError::Internal(format!("pruning stopped: {err}")))??;
        if !dry_run && !removed.is_empty() {
            self.inner.store.flush().await?;
            tracing::info!(runs = removed.len(), "pruned ended runs");
        }
        Ok(removed)
    }

    /// Removes the audit entries older than `keep`, returning how many went.
    pub async fn prune_audit(&self, keep: Duration) -> Result<usize, EngineError> {
        let store = self.inner.store.clone();
        let before = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let removed = tokio::task::spawn_blocking(move || store.prune_audit(before))
            .await
            .map_err(|err| EngineError::Internal(format!("pruning stopped: {err}")))??;
        if removed > 0 {
            self.inner.store.flush().await?;
            tracing::info!(entries = removed, "pruned old audit entries");
        }
        Ok(removed)
    }

    /// Applies `policy` to ended runs, and `audit` to the audit log, now and every
    /// [`PRUNE_EVERY`] until `stop`.
    pub async fn keep_pruning(
        self,
        policy: RetentionPolicy,
        audit: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            if !policy.is_empty()
                && let Err(err) = self.prune(policy, false).await
            {
                tracing::warn!(error = %err, "cannot prune ended runs");
            }
            if let Err(err) = self.prune_audit(audit).await {
                tracing::warn!(error = %err, "cannot prune the audit log");
            }
            tokio::select! {
                () = tokio::time::sleep(PRUNE_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

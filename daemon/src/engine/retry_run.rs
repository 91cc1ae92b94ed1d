//! Retrying an ended run in place: under the same run id, its completed steps keep their
//! outputs and do not run again; the steps that failed, were cancelled or timed out (and the
//! ones they held back) become pending with a new attempt. The one way an ended run becomes
//! active again.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Engine, EngineError, lock};
use crate::runbook::Runbook;
use crate::store::{
    Changes, EventKind, MAX_RUN_RETRIES, RunRecord, RunRetry, RunStatus, StepRecord, StepStatus,
    StoreError, now_ms,
};

/// What an operator asks of a retry.
#[derive(Debug, Clone, Default)]
pub struct RetryRequest {
    /// Also run this step and every step downstream of it again, completed or not.
    pub from: Option<String>,
    /// Move the run to its runbook's current version first (refused when a step that stays
    /// completed changed).
    pub latest: bool,
}

impl Engine {
    /// Takes an ended run back to running (see the module's doc). A completed run is retried
    /// only `from` a step. Durable before it returns; the retry is recorded in the run's
    /// history and as a `run_retried` event.
    pub async fn retry_run(
        &self,
        run_id: &str,
        request: &RetryRequest,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        let run_id = self.inner.store.resolve_run_id(run_id)?;
        let run = {
            // Held from the check to the activation, so that two retries of one run never
            // both reopen it, and nothing activates it in between.
            let mut active_runs = lock(&self.inner.active);
            if active_runs.contains_key(&run_id) {
                return Err(not_ended(&run_id));
            }
            let mut run = self
                .inner
                .store
                .run(&run_id)?
                .ok_or_else(|| EngineError::Store(StoreError::RunNotFound(run_id.clone())))?;
            let runbook = self.reopen(&mut run, request, by)?;
            active_runs.insert(run_id.clone(), self.new_active(run.clone(), runbook));
            run
        };
        self.inner.store.flush().await?;
        tracing::info!(run = %run.id, by, from = ?request.from, latest = request.latest, "run retried");
        self.schedule(run_id);
        Ok(run)
    }

    /// Checks the retry, changes `run` and commits it with its events; returns the version
    /// the run goes on with.
    fn reopen(
        &self,
        run: &mut RunRecord,
        request: &RetryRequest,
        by: &str,
    ) -> Result<Arc<Runbook>, EngineError> {
        if !run.status.is_terminal() {
            return Err(not_ended(&run.id));
        }
        if run.dry_run {
            return Err(EngineError::WrongState(format!(
                "run {} is a dry run; start a new one instead of retrying it",
                run.id
            )));
        }
        if run.status == RunStatus::Completed && request.from.is_none() {
            return Err(EngineError::WrongState(format!(
                "run {} completed, so nothing in it failed; name a step with --from to run it and the steps downstream of it again",
                run.id
            )));
        }
        if run.retries.len() >= MAX_RUN_RETRIES {
            return Err(EngineError::WrongState(format!(
                "run {} was retried {MAX_RUN_RETRIES} times already, the most one run keeps; start a new run",
                run.id
            )));
        }
        let pinned = self.pinned_runbook(run)?;
        let runbook = if request.latest {
            self.current_version(&run.runbook)?
        } else {
            pinned.clone()
        };
        let from = match &request.from {
            Some(id) => Some(
                runbook
                    .step_index(id)
                    .ok_or_else(|| EngineError::UnknownStep {
                        run: run.id.clone(),
                        step: id.clone(),
                    })?,
            ),
            None => None,
        };
        let moved = runbook.version != run.version;
        if moved {
            keeps_steps_in_order(run, &runbook)?;
        }
        // New steps of the current version come after the run's own, pending.
        let known = run.steps.len();
        for step in runbook.steps.iter().skip(known) {
            run.steps.push(StepRecord::pending(&step.id, &step.uses));
        }
        let mut reopened = steps_to_reopen(&run.steps, &runbook, from);
        reopened.extend(known..run.steps.len());
        if moved {
            unchanged_where_completed(run, &pinned, &runbook, &reopened)?;
        }
        if reopened.is_empty() {
            return Err(EngineError::WrongState(format!(
                "run {} has no step to run again",
                run.id
            )));
        }
        self.check_plugins(&runbook, reopened.iter().map(|&p| &runbook.steps[p]))?;
        self.check_secrets(&runbook)?;
        self.check_connections(&runbook)?;

        let retry = RunRetry {
            by: by.to_owned(),
            at: now_ms(),
            ended: run.status,
            from: request.from.clone(),
            previous_version: moved.then(|| run.version.clone()),
            steps: reopened.iter().map(|&p| run.steps[p].id.clone()).collect(),
        };
        let mut events = vec![EventKind::RunRetried {
            retry: retry.clone(),
        }];
        // A loop that `--from` runs again (it or a step upstream of it), or whose definition
        // the new version changed, starts over: its items are evaluated again and every one
        // runs. Another keeps its completed instances.
        let forced = from.map_or_else(BTreeSet::new, |from| downstream(&runbook, from));
        for &position in &reopened {
            events.extend(run.steps[position].reopen());
            let changed =
                moved && runbook.steps.get(position) != pinned.step(&run.steps[position].id);
            if forced.contains(&position) || changed {
                run.steps[position].restart_loop();
            }
        }
        run.retries.push(retry);
        run.version = runbook.version.clone();
        run.status = RunStatus::Running;
        run.error = None;
        run.finished_at = 0;
        events.push(EventKind::RunStatus {
            status: run.status,
            error: None,
        });
        let changes = Changes {
            header: true,
            steps: reopened.into_iter().collect(),
            ..Changes::default()
        };
        self.commit(run, &changes, events)?;
        lock(&self.inner.versions).insert(runbook.version.clone(), runbook.clone());
        Ok(runbook)
    }

    /// The current valid version of a runbook.
    fn current_version(&self, name: &str) -> Result<Arc<Runbook>, EngineError> {
        let entry = self
            .inner
            .catalog
            .get(name)
            .ok_or_else(|| EngineError::UnknownRunbook(name.to_owned()))?;
        entry.current.ok_or_else(|| EngineError::InvalidRunbook {
            name: name.to_owned(),
            diagnostics: entry.diagnostics.clone(),
        })
    }
}

fn not_ended(run_id: &str) -> EngineError {
    EngineError::WrongState(format!(
        "run {run_id} has not ended; only a failed, cancelled or timed-out run can be retried"
    ))
}

/// The steps a retry makes pending again, in runbook order: every step that did not complete
/// and was not skipped (failed, cancelled, timed out); with `from`, that step and every step
/// downstream of it whatever its status; and every skipped step downstream of those (its `if`
/// is judged again, or the step it waited for may complete now). Completed steps that `from`
/// does not reach keep their outputs; steps left out of a partial run stay out unless `from`
/// names one.
pub(super) fn steps_to_reopen(
    steps: &[StepRecord],
    runbook: &Runbook,
    from: Option<usize>,
) -> BTreeSet<usize> {
    let mut reopened: BTreeSet<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| {
            !step.unselected && !matches!(step.status, StepStatus::Completed | StepStatus::Skipped)
        })
        .map(|(position, _)| position)
        .collect();
    let mut queue: Vec<(usize, bool)> = reopened.iter().map(|&p| (p, false)).collect();
    if let Some(from) = from {
        reopened.insert(from);
        queue.push((from, true));
    }
    // `true`: downstream of `from`, where completed steps run again too. Each step is queued
    // at most twice (once per kind), so the walk is linear in the run's steps and needs.
    let mut seen: BTreeSet<(usize, bool)> = queue.iter().copied().collect();
    while let Some((position, forced)) = queue.pop() {
        for &dependent in runbook.dependents(position) {
            let Some(step) = steps.get(dependent) else {
                continue;
            };
            // A step left out of a run of part of its runbook stays out.
            let reopen = !step.unselected && (forced || step.status != StepStatus::Completed);
            if reopen && seen.insert((dependent, forced)) {
                reopened.insert(dependent);
                queue.push((dependent, forced));
            }
        }
    }
    reopened
}

/// Step `from` and every step downstream of it.
fn downstream(runbook: &Runbook, from: usize) -> BTreeSet<usize> {
    let mut found = BTreeSet::from([from]);
    let mut queue = vec![from];
    while let Some(position) = queue.pop() {
        for &dependent in runbook.dependents(position) {
            if found.insert(dependent) {
                queue.push(dependent);
            }
        }
    }
    found
}

/// A run moves to another version only when that version has the run's steps at the same
/// places (steps may be added after them): the run's records are kept by position.
fn keeps_steps_in_order(run: &RunRecord, runbook: &Runbook) -> Result<(), EngineError> {
    let moved: Vec<&str> = run
        .steps
        .iter()
        .enumerate()
        .filter(|(position, step)| {
            runbook
                .steps
                .get(*position)
                .is_none_or(|definition| definition.id != step.id)
        })
        .map(|(_, step)| step.id.as_str())
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    Err(EngineError::WrongState(format!(
        "the current version of `{}` removes or moves steps of run {}: {}; --latest needs the run's steps in their order (new steps may follow them); start a new run instead",
        runbook.name,
        run.id,
        moved.join(", ")
    )))
}

/// Refuses to move a run to a version in which a step that stays completed is defined
/// differently: its output would not be what the new version's steps expect.
fn unchanged_where_completed(
    run: &RunRecord,
    pinned: &Runbook,
    runbook: &Runbook,
    reopened: &BTreeSet<usize>,
) -> Result<(), EngineError> {
    let changed: Vec<&str> = run
        .steps
        .iter()
        .enumerate()
        .filter(|(position, step)| {
            step.status == StepStatus::Completed
                && !reopened.contains(position)
                && pinned.steps.get(*position) != runbook.steps.get(*position)
        })
        .map(|(_, step)| step.id.as_str())
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(EngineError::WrongState(format!(
        "--latest refused: steps of run {} that completed are defined differently in the current version of `{}`: {}; retry without --latest, or --from the first of them",
        run.id,
        runbook.name,
        changed.join(", ")
    )))
}

#[cfg(test)]
#[path = "retry_run_tests.rs"]
mod tests;

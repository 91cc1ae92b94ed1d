//! The pure core of the scheduler: from a run's state, its runbook and the time, decide what
//! happens next: which ready steps are skipped (a need that did not complete, an `if` that is
//! false) or fail (an `if` that cannot be evaluated), which start, which waiting steps are
//! looked at, the run's own status, and when to look at the run again. No I/O, no clock, no
//! tasks: the engine applies the [`Decision`] (commit, spawn, wake).

use super::context::condition_values;
use super::state::RunState;
use crate::runbook::Runbook;
use crate::store::{Changes, EventKind, RunStatus};
use crate::template;

/// What the engine must do after [`decide`].
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// The records the decision changed, to commit with `events`.
    pub changes: Changes,
    pub events: Vec<EventKind>,
    /// Steps to start now (already counted in `in_flight`).
    pub start: Vec<usize>,
    /// Waiting steps whose poll or deadline is due (already counted in `looking`).
    pub look: Vec<usize>,
    /// When to decide again if nothing else happens first (Unix ms).
    pub wake_at: Option<i64>,
}

/// Decides everything that is due at `now` for a run that has not ended.
pub fn decide(state: &mut RunState, runbook: &Runbook, now: i64) -> Decision {
    let mut decision = Decision::default();
    if state.run.status.is_terminal() {
        return decision;
    }
    judge_ready_steps(state, runbook, now, &mut decision);
    if state.run.status != RunStatus::Paused {
        start_runnable(state, runbook.max_parallel, now, &mut decision);
    }
    set_run_status(state, now, &mut decision);
    if state.run.status.is_terminal() {
        return decision;
    }
    look_at_due_waits(state, now, &mut decision);
    decision.wake_at = next_wake(state, now);
    decision
}

/// Judges every pending step whose needs have all ended: skipped when a need did not
/// complete, skipped when its `if` is false, failed when its `if` cannot be evaluated, else
/// runnable. A skip ends a step, which can make the steps that need it ready in turn: the
/// loop runs until none is left to judge. Skips have no side effects and happen even in a
/// paused run.
fn judge_ready_steps(state: &mut RunState, runbook: &Runbook, now: i64, decision: &mut Decision) {
    while let Some(position) = state.unjudged.pop_first() {
        let Some(definition) = runbook.steps.get(position) else {
            continue;
        };
        let blocker = state
            .needs(position)
            .iter()
            .map(|&need| &state.run.steps[need])
            .find(|need| need.status.is_failure() || need.upstream_failed)
            .map(|need| need.id.clone());
        let condition = match (&blocker, &definition.condition) {
            (None, Some(expr)) => Some(template::evaluate(
                expr,
                &template::context(&condition_values(state, definition)),
            )),
            _ => None,
        };
        let events = match (blocker, condition) {
            (Some(blocker), _) => state.update(position, |step| step.skip(Some(&blocker), now)),
            (None, Some(Ok(false))) => state.update(position, |step| step.skip(None, now)),
            (None, Some(Err(err))) => state.update(position, |step| {
                step.fail_before_start(format!("cannot evaluate `if`: {err}"), now)
            }),
            (None, _) => {
                state.runnable.insert(position);
                continue;
            }
        };
        decision.events.extend(events);
        decision.changes.steps.push(position);
    }
}

/// Starts runnable steps in runbook order while `max_parallel` leaves a slot, skipping those
/// already in flight and those whose back-off has not ended.
fn start_runnable(state: &mut RunState, max_parallel: usize, now: i64, decision: &mut Decision) {
    let mut free = max_parallel.saturating_sub(state.in_flight.len());
    if free == 0 {
        return;
    }
    for &position in &state.runnable {
        if state.in_flight.contains(&position) || state.run.steps[position].retry_at > now {
            continue;
        }
        decision.start.push(position);
        free -= 1;
        if free == 0 {
            break;
        }
    }
    state.in_flight.extend(decision.start.iter().copied());
}

/// The run's status from its steps: ended when every step has, waiting when nothing runs and
/// something waits, running otherwise. Only the operator ends a pause, unless every step has
/// ended anyway.
fn set_run_status(state: &mut RunState, now: i64, decision: &mut Decision) {
    let (status, error) = if state.all_ended() {
        let failed = state
            .run
            .steps
            .iter()
            .find(|step| step.status.is_failure() && !step.upstream_failed);
        match failed {
            Some(step) => (
                RunStatus::Failed,
                Some(format!(
                    "step `{}` {}: {}",
                    step.id,
                    super::status_label(step.status).replace('_', " "),
                    step.error.as_deref().unwrap_or("no error message")
                )),
            ),
            None => (RunStatus::Completed, None),
        }
    } else if state.run.status == RunStatus::Paused {
        (RunStatus::Paused, state.run.error.clone())
    } else if !state.any_running() && state.any_waiting() {
        (RunStatus::Waiting, None)
    } else {
        (RunStatus::Running, None)
    };
    if status == state.run.status {
        return;
    }
    let run = &mut state.run;
    if run.started_at == 0 {
        run.started_at = now;
    }
    if status.is_terminal() {
        run.finished_at = now;
    }
    run.status = status;
    run.error = error.clone();
    decision.changes.header = true;
    decision.events.push(EventKind::RunStatus { status, error });
}

/// Waiting steps whose poll (or deadline) is due and that nobody looks at yet. A look holds
/// no slot of `max_parallel` and does not make the run `running`: the step is still waiting.
fn look_at_due_waits(state: &mut RunState, now: i64, decision: &mut Decision) {
    for &position in &state.waiting {
        let Some(wait) = &state.run.steps[position].wait else {
            continue;
        };
        let due = wait.resume_at <= now || (wait.deadline > 0 && wait.deadline <= now);
        if due && !state.looking.contains(&position) {
            decision.look.push(position);
        }
    }
    state.looking.extend(decision.look.iter().copied());
}

/// The earliest future moment something becomes due: a back-off ends, a poll or a wait's
/// deadline comes. A back-off already over at `now` needs no timer: the step started, or it
/// waits for a slot, and a step that ends makes the engine decide again; a look in progress
/// does too when it ends.
fn next_wake(state: &RunState, now: i64) -> Option<i64> {
    let backoff = state.backoff.iter().map(|&(at, _)| at).find(|&at| at > now);
    let look = state
        .waiting
        .iter()
        .filter_map(|&position| state.run.steps[position].wait.as_ref())
        .map(|wait| {
            if wait.deadline > 0 {
                wait.resume_at.min(wait.deadline)
            } else {
                wait.resume_at
            }
        })
        .filter(|&due| due > now)
        .min();
    backoff.into_iter().chain(look).min()
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

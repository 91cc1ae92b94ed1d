//! Keys of the approvals queue, the daemon's list of waiting runs, and the answers to
//! approve, confirm, deny and cancel.

use runbook_protocol::v1::{Approval, Run};

use super::{move_selection, run_view};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::approvals::pending;
use crate::state::launch::Purpose;
use crate::state::run_view::WatchStatus;
use crate::state::{LaunchForm, LineInput, Prompt, PromptKind, Screen, State};

/// The runs that wait, as the daemon listed them; the same request stays selected.
pub fn listed(state: &mut State, runs: Vec<Run>) {
    let key = |p: &crate::state::approvals::Pending<'_>| (p.run.id.clone(), p.step.id.clone());
    let selected = pending(&state.waiting)
        .get(state.approvals.selected)
        .map(key);
    state.waiting = runs;
    let now = pending(&state.waiting);
    state.approvals.selected = selected
        .and_then(|wanted| now.iter().position(|p| key(p) == wanted))
        .unwrap_or_else(|| state.approvals.selected.min(now.len().saturating_sub(1)));
}

/// The queue's commands.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let queue = pending(&state.waiting);
    let len = queue.len();
    let chosen = queue.get(state.approvals.selected).map(|p| {
        (
            p.run.id.clone(),
            p.step.id.clone(),
            p.run.runbook.clone(),
            p.approval.clone(),
        )
    });
    if move_selection(&mut state.approvals.selected, len, intent, 5) {
        return;
    }
    let Some((run_id, step_id, runbook, approval)) = chosen else {
        return;
    };
    match intent {
        Intent::Approve => approve(state, &runbook, run_id, step_id, &approval, out),
        Intent::Deny => {
            state.prompt = Some(Prompt {
                kind: PromptKind::Deny { run_id, step_id },
                input: LineInput::default(),
            });
        }
        Intent::Open => run_view::open(state, &run_id, out),
        _ => {}
    }
}

/// `a` on a pending request: approves its plan; confirms an instruction done, through a form
/// when it asks for inputs.
pub fn approve(
    state: &mut State,
    runbook: &str,
    run_id: String,
    step_id: String,
    approval: &Approval,
    out: &mut Vec<Command>,
) {
    if !approval.instruction {
        out.push(Command::Approve { run_id, step_id });
    } else if approval.inputs.is_empty() {
        out.push(Command::Confirm {
            run_id,
            step_id,
            inputs: Default::default(),
        });
    } else {
        let form = LaunchForm::confirming(runbook, &run_id, &step_id, approval);
        state.stack.push(Screen::Launch(Box::new(form)));
    }
}

/// An approve, confirm, deny or cancel finished.
pub fn decided(
    state: &mut State,
    done: String,
    result: Result<Run, String>,
    out: &mut Vec<Command>,
) {
    // The confirm form on top waits for this answer, unless it is another run's (a decision
    // sent before the form opened).
    let confirming = match (state.screen(), &result) {
        (Screen::Launch(form), Ok(run)) => {
            matches!(&form.purpose, Purpose::Confirm { run_id, .. } if *run_id == run.id)
        }
        (Screen::Launch(form), Err(_)) => {
            form.starting && matches!(form.purpose, Purpose::Confirm { .. })
        }
        _ => false,
    };
    match result {
        Ok(run) => {
            if confirming {
                super::pop(state, out);
            }
            state.notify(done);
            // The queue shows the decision at once rather than at the next poll.
            if let Some(known) = state.waiting.iter_mut().find(|r| r.id == run.id) {
                *known = run.clone();
            }
            let len = pending(&state.waiting).len();
            state.approvals.selected = state.approvals.selected.min(len.saturating_sub(1));
            // A decision that took an ended run back to running (a retry) needs the stream
            // that ended with it again.
            let reopened = !run.status().is_terminal()
                && state
                    .run_views_mut()
                    .any(|view| view.run_id == run.id && view.watch == WatchStatus::Ended);
            if reopened {
                out.push(Command::Watch(run.id.clone()));
            }
            run_view::snapshot(state, run);
            out.push(Command::Refresh);
        }
        Err(error) => match state.screen_mut() {
            Screen::Launch(form) if confirming => {
                form.starting = false;
                form.error = Some(error);
            }
            _ => state.notify_error(error),
        },
    }
}

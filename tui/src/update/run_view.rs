//! Keys of the run view and the stream of its run: snapshots, events (applied once each, by
//! sequence number), the stream's state, and starting runs (launch form, re-run).

use runbook_protocol::v1::{Run, RunEvent, RunStatus, StepStatus};

use super::pop;
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::launch::params_of;
use crate::state::run_view::{WatchStatus, layout};
use crate::state::{LineInput, Prompt, PromptKind, RunView, Screen, State};

fn top(state: &mut State) -> Option<&mut RunView> {
    match state.screen_mut() {
        Screen::Run(view) => Some(view),
        _ => None,
    }
}

/// Opens the view of `run_id` on top and starts following it.
pub fn open(state: &mut State, run_id: &str, out: &mut Vec<Command>) {
    state
        .stack
        .push(Screen::Run(Box::new(RunView::new(run_id.to_owned()))));
    out.push(Command::Watch(run_id.to_owned()));
}

/// A run was started: its view replaces the launch form (or the run it re-runs).
pub fn started(state: &mut State, result: Result<Run, String>, out: &mut Vec<Command>) {
    match result {
        Ok(run) => {
            if matches!(state.screen(), Screen::Launch(_) | Screen::Run(_)) {
                pop(state, out);
            }
            state.notify(format!("started run {} of {}", run.id, run.runbook));
            open(state, &run.id, out);
            snapshot(state, run);
            out.push(Command::Refresh);
        }
        Err(error) => match state.screen_mut() {
            Screen::Launch(form) => {
                form.starting = false;
                form.error = Some(error);
            }
            _ => state.notify_error(format!("cannot start the run: {error}")),
        },
    }
}

/// The daemon's record of a run.
pub fn snapshot(state: &mut State, run: Run) {
    for view in state.run_views_mut() {
        if view.run_id == run.id && view.apply_snapshot(run.clone()) {
            let steps = view.run.as_ref().map_or(0, |r| r.steps.len());
            view.selected = view.selected.min(steps.saturating_sub(1));
            view.error = None;
        }
    }
}

/// One event of a run: applied to every view of it, unless seen before.
pub fn event(state: &mut State, event: &RunEvent) {
    for view in state.run_views_mut() {
        view.apply_event(event);
    }
}

/// The run cannot be watched.
pub fn failed(state: &mut State, run_id: &str, error: String) {
    for view in state.run_views_mut() {
        if view.run_id == run_id {
            view.error = Some(error.clone());
            view.watch = WatchStatus::Ended;
        }
    }
}

/// The state of a run's stream.
pub fn watch_status(state: &mut State, run_id: &str, status: WatchStatus) {
    for view in state.run_views_mut() {
        if view.run_id == run_id {
            view.watch = status.clone();
        }
    }
}

/// Scrolls the log pane by `lines` (negative: up). Reaching the end follows the log again.
pub fn scroll_log(state: &mut State, lines: isize) {
    let size = state.size;
    let Some(view) = top(state) else {
        return;
    };
    let steps = view.run.as_ref().map_or(0, |r| r.steps.len());
    let rows = usize::from(layout(size, steps).log_rows);
    let max_top = view.pane_len().saturating_sub(rows);
    let from = view.scroll.unwrap_or(max_top);
    let to = from.saturating_add_signed(lines).min(max_top);
    view.scroll = if lines > 0 && to >= max_top {
        None
    } else {
        Some(to)
    };
}

/// The run view's commands.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let size = state.size;
    let Some(view) = top(state) else {
        return;
    };
    let steps = view.run.as_ref().map_or(0, |r| r.steps.len());
    let rows = layout(size, steps).log_rows;
    let page = isize::try_from(rows.max(2) - 1).unwrap_or(1);
    match intent {
        Intent::Up | Intent::Down => {
            let selected = if intent == Intent::Up {
                view.selected.saturating_sub(1)
            } else {
                (view.selected + 1).min(steps.saturating_sub(1))
            };
            if selected != view.selected {
                view.selected = selected;
                // Another step's log starts at its newest lines.
                view.scroll = None;
                view.found = None;
            }
        }
        Intent::PageUp => scroll_log(state, -page),
        Intent::PageDown => scroll_log(state, page),
        Intent::Top => view.scroll = Some(0),
        Intent::Bottom => view.scroll = None,
        Intent::Follow => {
            view.scroll = match view.scroll {
                Some(_) => None,
                None => Some(view.pane_len().saturating_sub(usize::from(rows))),
            }
        }
        Intent::ToggleOutput => {
            view.show_output = !view.show_output;
            view.scroll = None;
            view.found = None;
        }
        Intent::Search => {
            let last = view.search.clone().unwrap_or_default();
            state.prompt = Some(Prompt {
                kind: PromptKind::SearchLog,
                input: LineInput::new(last),
            });
        }
        Intent::NextMatch | Intent::PrevMatch
            if !find(view, intent == Intent::NextMatch, usize::from(rows)) =>
        {
            state.notify_error("no more matches");
        }
        Intent::Cancel => {
            if view.is_live() {
                let run_id = view.run_id.clone();
                state.prompt = Some(Prompt {
                    kind: PromptKind::ConfirmCancel { run_id },
                    input: LineInput::default(),
                });
            } else {
                state.notify_error("the run has ended: nothing to cancel");
            }
        }
        Intent::Pause => {
            let status = view.run.as_ref().map(Run::status);
            match status {
                Some(status) if status.is_terminal() => {
                    state.notify_error("the run has ended: nothing to pause");
                }
                Some(status) => out.push(Command::Pause {
                    run_id: view.run_id.clone(),
                    pause: status != RunStatus::Paused,
                }),
                None => {}
            }
        }
        Intent::Rerun => rerun(state, out),
        Intent::Retry => match view.run.as_ref().map(Run::status) {
            Some(RunStatus::Failed | RunStatus::Cancelled | RunStatus::TimedOut) => {
                let run_id = view.run_id.clone();
                state.prompt = Some(Prompt {
                    kind: PromptKind::ConfirmRetry { run_id },
                    input: LineInput::default(),
                });
            }
            Some(RunStatus::Completed) => state.notify_error(
                "the run completed: nothing failed to retry (`runbook retry RUN --from STEP` runs part of it again)",
            ),
            Some(_) => state.notify_error("the run is still going: T retries an ended run"),
            None => {}
        },
        Intent::Approve | Intent::Deny => decide(state, intent, out),
        Intent::Resolve => match view.step() {
            Some(step) if step.status() == StepStatus::Ambiguous => {
                let (run_id, step_id) = (view.run_id.clone(), step.id.clone());
                state.prompt = Some(Prompt {
                    kind: PromptKind::Resolve { run_id, step_id },
                    input: LineInput::default(),
                });
            }
            Some(step) => {
                let id = step.id.clone();
                state.notify_error(format!(
                    "step {id} is not ambiguous: only a step a crash interrupted is resolved"
                ));
            }
            None => {}
        },
        _ => {}
    }
}

/// `R`: the same runbook again, with the same params, once this run has ended.
fn rerun(state: &mut State, out: &mut Vec<Command>) {
    let Some(run) = top(state).and_then(|view| view.run.clone()) else {
        return;
    };
    if !run.status().is_terminal() {
        state.notify_error("the run is still going: R runs an ended run again");
        return;
    }
    state.notify(format!("starting {} again…", run.runbook));
    out.push(Command::StartRun {
        runbook: run.runbook.clone(),
        params: params_of(&run.params_json),
        // Run again the way it ran: a dry run stays a dry run.
        dry_run: run.dry_run,
        part: Default::default(),
    });
}

/// `a` / `d` on the selected step, if it waits for approval.
fn decide(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let Some(view) = top(state) else {
        return;
    };
    let Some(step) = view.step() else {
        return;
    };
    let approval = step
        .approval
        .clone()
        .filter(|a| step.status() == StepStatus::Waiting && a.decided_at == 0);
    let (run_id, step_id) = (view.run_id.clone(), step.id.clone());
    let runbook = view.run.as_ref().map(|run| run.runbook.clone());
    let Some(approval) = approval else {
        state.notify_error(format!("step {step_id} does not wait for approval"));
        return;
    };
    if intent == Intent::Approve {
        let runbook = runbook.unwrap_or_default();
        super::approvals::approve(state, &runbook, run_id, step_id, &approval, out);
    } else {
        state.prompt = Some(Prompt {
            kind: PromptKind::Deny { run_id, step_id },
            input: LineInput::default(),
        });
    }
}

/// A log search was typed: jump to its newest match.
pub fn search(state: &mut State, query: String) {
    let size = state.size;
    let Some(view) = top(state) else {
        return;
    };
    view.found = None;
    if query.is_empty() {
        view.search = None;
        return;
    }
    view.search = Some(query.clone());
    let steps = view.run.as_ref().map_or(0, |r| r.steps.len());
    let rows = usize::from(layout(size, steps).log_rows);
    // From past the end backwards: the newest match.
    view.found = Some(usize::MAX);
    if !find(view, false, rows) {
        view.found = None;
        state.notify_error(format!("no match for `{query}`"));
    }
}

/// Moves to the next (newer) or previous (older) line matching the search; false if none.
fn find(view: &mut RunView, newer: bool, rows: usize) -> bool {
    let Some(query) = view.search.as_deref().map(str::to_lowercase) else {
        return false;
    };
    let lines: Vec<String> = match view.step() {
        Some(step) if view.show_output => crate::state::run_view::output_lines(step),
        _ => view
            .log()
            .map(|log| log.lines.iter().map(|l| l.text.clone()).collect())
            .unwrap_or_default(),
    };
    let hit = |i: &usize| lines[*i].to_lowercase().contains(&query);
    let from = view.found.unwrap_or(view.scroll.unwrap_or(lines.len()));
    let found = if newer {
        (from.saturating_add(1)..lines.len()).find(hit)
    } else {
        (0..from.min(lines.len())).rev().find(hit)
    };
    let Some(line) = found else {
        return false;
    };
    view.found = Some(line);
    // The match a few lines below the top, so that what precedes it shows too.
    let max_top = lines.len().saturating_sub(rows);
    view.scroll = Some(line.saturating_sub(2).min(max_top));
    true
}

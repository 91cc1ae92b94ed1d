//! Keys of the runs history and the daemon's answers to its filtered listing.

use runbook_protocol::v1::Run;

use super::{move_selection, page, run_view};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::{RunsFilter, State};

/// The history for `filter` arrived; an answer for a filter no longer shown is dropped.
pub fn listed(state: &mut State, filter: RunsFilter, result: Result<Vec<Run>, String>) {
    let history = &mut state.history;
    if filter != history.filter {
        return;
    }
    match result {
        Ok(runs) => {
            // New runs arrive at the top: follow the selected run, not its position.
            let selected = history
                .runs
                .as_ref()
                .and_then(|old| old.get(history.selected))
                .map(|r| r.id.clone());
            history.selected = selected
                .and_then(|id| runs.iter().position(|r| r.id == id))
                .unwrap_or_else(|| history.selected.min(runs.len().saturating_sub(1)));
            history.runs = Some(runs);
            history.error = None;
        }
        Err(error) => history.error = Some(error),
    }
}

/// The history's commands.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let page = page(state);
    let history = &mut state.history;
    let len = history.runs.as_ref().map_or(0, Vec::len);
    if move_selection(&mut history.selected, len, intent, page) {
        return;
    }
    let mut filter = history.filter.clone();
    match intent {
        Intent::Open => {
            let chosen = history
                .runs
                .as_ref()
                .and_then(|runs| runs.get(history.selected))
                .map(|r| r.id.clone());
            if let Some(id) = chosen {
                run_view::open(state, &id, out);
            }
            return;
        }
        Intent::StatusFilter => filter.status = filter.next_status(),
        Intent::RunbookFilter => {
            let names: Vec<&str> = state.runbooks.iter().map(|r| r.name.as_str()).collect();
            filter.runbook = filter.next_runbook(&names);
        }
        Intent::ClearFilters => filter = RunsFilter::default(),
        _ => return,
    }
    let history = &mut state.history;
    if filter != history.filter {
        history.filter = filter.clone();
        history.runs = None;
        history.selected = 0;
        history.error = None;
        out.push(Command::SetRunsFilter(filter));
    }
}

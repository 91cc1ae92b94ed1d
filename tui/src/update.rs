//! The TUI's only state transition: a pure `update(&mut State, Action)`.

use crate::action::Action;
use crate::state::{Connection, Pane, State};

/// Applies `action` to `state`. Pure: no I/O and no clock, so every behaviour is unit-testable.
pub fn update(state: &mut State, action: Action) {
    match action {
        Action::Quit => state.should_quit = true,
        Action::FocusNext => {
            state.focus = match state.focus {
                Pane::Runbooks => Pane::Runs,
                Pane::Runs => Pane::Runbooks,
            }
        }
        Action::Up => move_selection(state, |i, _| i.saturating_sub(1)),
        Action::Down => move_selection(state, |i, len| (i + 1).min(len.saturating_sub(1))),
        Action::Top => move_selection(state, |_, _| 0),
        Action::Bottom => move_selection(state, |_, len| len.saturating_sub(1)),
        Action::Tick(now_ms) => state.now_ms = now_ms,
        Action::Connected {
            daemon_version,
            active_runs,
        } => {
            state.connection = Connection::Connected {
                daemon_version,
                active_runs,
            }
        }
        Action::Disconnected(error) => state.connection = Connection::Disconnected(error),
        Action::Runbooks(mut runbooks) => {
            runbooks.sort_by(|a, b| a.name.cmp(&b.name));
            // Keep the same runbook selected when others appear or vanish around it.
            let selected = state.current_runbook().map(|r| r.name.clone());
            state.selected_runbook =
                reselect(selected, &runbooks, |r| &r.name, state.selected_runbook);
            state.runbooks = runbooks;
        }
        Action::Runs(runs) => {
            // New runs arrive at the top: follow the selected run, not its position.
            let selected = state.runs.get(state.selected_run).map(|r| r.id.clone());
            state.selected_run = reselect(selected, &runs, |r| &r.id, state.selected_run);
            state.runs = runs;
        }
    }
}

fn move_selection(state: &mut State, to: impl Fn(usize, usize) -> usize) {
    match state.focus {
        Pane::Runbooks => state.selected_runbook = to(state.selected_runbook, state.runbooks.len()),
        Pane::Runs => state.selected_run = to(state.selected_run, state.runs.len()),
    }
}

/// The index of the previously selected item in the new list, else the old index clamped.
fn reselect<T>(
    selected: Option<String>,
    items: &[T],
    key: impl Fn(&T) -> &String,
    old: usize,
) -> usize {
    selected
        .and_then(|key_wanted| items.iter().position(|item| *key(item) == key_wanted))
        .unwrap_or_else(|| old.min(items.len().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::{Run, RunbookSummary};

    fn runbooks(names: &[&str]) -> Vec<RunbookSummary> {
        names
            .iter()
            .map(|name| RunbookSummary {
                name: (*name).into(),
                ..Default::default()
            })
            .collect()
    }

    fn runs(ids: &[&str]) -> Vec<Run> {
        ids.iter()
            .map(|id| Run {
                id: (*id).into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn moving_stays_within_the_list() {
        let mut state = State::new("s", 0);
        update(&mut state, Action::Up);
        update(&mut state, Action::Down);
        assert_eq!(state.selected_runbook, 0, "an empty list keeps index 0");
        update(&mut state, Action::Runbooks(runbooks(&["a", "b", "c"])));
        update(&mut state, Action::Down);
        update(&mut state, Action::Down);
        update(&mut state, Action::Down);
        assert_eq!(state.selected_runbook, 2);
        update(&mut state, Action::Up);
        assert_eq!(state.selected_runbook, 1);
        update(&mut state, Action::Top);
        assert_eq!(state.selected_runbook, 0);
        update(&mut state, Action::Bottom);
        assert_eq!(state.selected_runbook, 2);
    }

    #[test]
    fn focus_decides_which_pane_moves() {
        let mut state = State::new("s", 0);
        update(&mut state, Action::Runbooks(runbooks(&["a", "b"])));
        update(&mut state, Action::Runs(runs(&["r3", "r2", "r1"])));
        update(&mut state, Action::FocusNext);
        assert_eq!(state.focus, Pane::Runs);
        update(&mut state, Action::Down);
        assert_eq!((state.selected_runbook, state.selected_run), (0, 1));
        update(&mut state, Action::FocusNext);
        assert_eq!(state.focus, Pane::Runbooks);
    }

    #[test]
    fn the_selected_run_stays_selected_when_new_runs_arrive() {
        let mut state = State::new("s", 0);
        update(&mut state, Action::Runs(runs(&["r2", "r1"])));
        update(&mut state, Action::FocusNext);
        update(&mut state, Action::Down);
        assert_eq!(state.runs[state.selected_run].id, "r1");
        update(&mut state, Action::Runs(runs(&["r4", "r3", "r2", "r1"])));
        assert_eq!(state.runs[state.selected_run].id, "r1");
        update(&mut state, Action::Runs(runs(&["r9"])));
        assert_eq!(state.selected_run, 0, "a vanished selection is clamped");
    }

    #[test]
    fn runbooks_are_sorted_and_connection_changes_are_kept() {
        let mut state = State::new("s", 0);
        update(&mut state, Action::Runbooks(runbooks(&["b", "a"])));
        assert_eq!(state.runbooks[0].name, "a");
        update(&mut state, Action::Disconnected("gone".into()));
        assert_eq!(state.connection, Connection::Disconnected("gone".into()));
        update(&mut state, Action::Quit);
        assert!(state.should_quit);
    }
}

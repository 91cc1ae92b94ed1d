//! The runbook list: every runbook the daemon knows, with its description, whether it can
//! run, and its last run; the problems of the selected one below it when it is invalid.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Cell, Row, Table, TableState};

use super::{diagnostics, pane_block, placeholder};
use crate::state::runbooks::last_run;
use crate::state::{Health, State};
use crate::{format, theme};

/// Draws the list (and the diagnostics panel when the selected runbook is invalid).
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let visible = state.list.visible(&state.runbooks);
    let area = match state.current_runbook().filter(|rb| !rb.valid) {
        Some(invalid) => {
            // The list needs a row per runbook plus its header and borders; the diagnostics,
            // with their snippets, are longer, so the list gets no more than half.
            let rows = u16::try_from(visible.len()).unwrap_or(u16::MAX);
            let list_height = rows.saturating_add(3).min(area.height / 2);
            let [list, problems] =
                Layout::vertical([Constraint::Length(list_height), Constraint::Fill(1)])
                    .areas(area);
            diagnostics::render(frame, problems, invalid);
            list
        }
        None => area,
    };
    let mut title = format!(" Runbooks ({}) ", state.runbooks.len());
    if !state.list.filter.is_empty() {
        title.push_str(&format!(
            "· filter: {} ({} shown) ",
            state.list.filter,
            visible.len()
        ));
    }
    let block = pane_block(title, true);
    if visible.is_empty() {
        let empty = if state.runbooks.is_empty() {
            "No runbooks yet: add a .toml file to the runbooks directory.".to_owned()
        } else {
            format!(
                "No runbook matches `{}`: Esc clears the filter.",
                state.list.filter
            )
        };
        placeholder(frame, area, block, state, &empty);
        return;
    }
    let name_width = visible
        .iter()
        .map(|rb| rb.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24) as u16;
    let rows = visible.iter().map(|rb| {
        let health = Health::of(rb);
        let (last, when) = match last_run(&state.runs, &rb.name) {
            Some(run) => {
                let status = run.status();
                let started = if run.started_at > 0 {
                    run.started_at
                } else {
                    run.created_at
                };
                (
                    Cell::from(status.label()).style(theme::run_status(status)),
                    Cell::from(format::ago(started, state.now_ms)),
                )
            }
            None => (Cell::from("-").style(theme::dim()), Cell::from("")),
        };
        Row::new(vec![
            Cell::from(rb.name.clone()),
            Cell::from(rb.description.clone()).style(theme::dim()),
            Cell::from(rb.step_count.to_string()),
            Cell::from(health.label()).style(theme::health(health)),
            last,
            when,
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_width),
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(["NAME", "DESCRIPTION", "STEPS", "STATE", "LAST RUN", "WHEN"])
            .style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(state.list.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

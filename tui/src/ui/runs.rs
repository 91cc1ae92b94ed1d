//! The runs history: runs newest first, filtered by status and runbook.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::bars::short;
use super::{pane_block, placeholder};
use crate::state::State;
use crate::{format, theme};

/// Draws the history into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let history = &state.history;
    let count = history.runs.as_ref().map_or(0, Vec::len);
    let title = format!(" Runs ({count}) · {} ", history.filter.describe());
    let block = pane_block(title, true);
    if let Some(error) = &history.error {
        let text = Text::styled(format!("Cannot list runs: {error}"), theme::error());
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let Some(runs) = history.runs.as_ref().filter(|runs| !runs.is_empty()) else {
        let empty = match (
            &history.runs,
            history.filter.status,
            &history.filter.runbook,
        ) {
            (None, ..) => "Loading runs …",
            (Some(_), None, None) => "No runs yet: press r on a runbook to start one.",
            (Some(_), ..) => "No run matches these filters: x clears them.",
        };
        placeholder(frame, area, block, state, empty);
        return;
    };
    let rows = runs.iter().map(|run| {
        let status = run.status();
        let started = if run.started_at > 0 {
            run.started_at
        } else {
            run.created_at
        };
        Row::new(vec![
            Cell::from(short(&run.id)),
            Cell::from(run.runbook.clone()),
            Cell::from(status.label()).style(theme::run_status(status)),
            Cell::from(format::ago(started, state.now_ms)),
            Cell::from(format::elapsed(
                run.started_at,
                run.finished_at,
                state.now_ms,
            )),
            Cell::from(run.error.clone()).style(theme::dim()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(["ID", "RUNBOOK", "STATUS", "STARTED", "TOOK", "ERROR"]).style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(history.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

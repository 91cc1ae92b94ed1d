//! The right pane: the most recent runs, newest first, with their status and age.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::{has_focus, pane_block};
use crate::state::{Pane, State};
use crate::{format, theme};

/// How many characters of a run id the list shows: enough to type as a unique prefix.
const SHORT_ID: usize = 12;

/// Draws the recent runs into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let focused = has_focus(state, Pane::Runs);
    let block = pane_block(format!(" Recent runs ({}) ", state.runs.len()), focused);
    if state.runs.is_empty() {
        let hint = Text::styled(
            "No runs yet: start one with `runbook run NAME`.",
            theme::dim(),
        );
        frame.render_widget(Paragraph::new(hint).block(block), area);
        return;
    }
    let rows = state.runs.iter().map(|run| {
        let status = run.status();
        let started = if run.started_at > 0 {
            run.started_at
        } else {
            run.created_at
        };
        Row::new(vec![
            Cell::from(run.id.chars().take(SHORT_ID).collect::<String>()),
            Cell::from(run.runbook.clone()),
            Cell::from(status.label()).style(theme::run_status(status)),
            Cell::from(format::ago(started, state.now_ms)),
            Cell::from(format::elapsed(
                run.started_at,
                run.finished_at,
                state.now_ms,
            )),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(SHORT_ID as u16),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["ID", "RUNBOOK", "STATUS", "STARTED", "TOOK"]).style(theme::header()))
    .block(block)
    .row_highlight_style(if focused {
        theme::selected()
    } else {
        Default::default()
    })
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(state.selected_run));
    frame.render_stateful_widget(table, area, &mut table_state);
}

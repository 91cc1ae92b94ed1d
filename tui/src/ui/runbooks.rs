//! The left pane: every runbook the daemon knows, with its step count and whether it can run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::{has_focus, pane_block};
use crate::state::{Health, Pane, State};
use crate::theme;

/// Draws the runbook list into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let focused = has_focus(state, Pane::Runbooks);
    let block = pane_block(format!(" Runbooks ({}) ", state.runbooks.len()), focused);
    if state.runbooks.is_empty() {
        let hint = Text::styled(
            "No runbooks yet: add a .toml file to the runbooks directory.",
            theme::dim(),
        );
        frame.render_widget(
            Paragraph::new(hint)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let rows = state.runbooks.iter().map(|rb| {
        let health = Health::of(rb);
        Row::new(vec![
            Cell::from(rb.name.clone()),
            Cell::from(rb.step_count.to_string()),
            Cell::from(health.label()).style(theme::health(health)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["NAME", "STEPS", "STATE"]).style(theme::header()))
    .block(block)
    .row_highlight_style(if focused {
        theme::selected()
    } else {
        Default::default()
    })
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(state.selected_runbook));
    frame.render_stateful_widget(table, area, &mut table_state);
}

//! The audit log: who did what, when, with what result, newest first, filtered by action.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Text;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::bars::short;
use super::{pane_block, placeholder};
use crate::state::State;
use crate::{format, theme};

/// Draws the audit log into `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let audit = &state.audit;
    let count = audit.entries.as_ref().map_or(0, Vec::len);
    let title = format!(" Audit log ({count}) · {} ", audit.filter.describe());
    let block = pane_block(title, true);
    if let Some(error) = &audit.error {
        let text = Text::styled(
            format!("Cannot read the audit log: {error}"),
            theme::error(),
        );
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let Some(entries) = audit.entries.as_ref().filter(|entries| !entries.is_empty()) else {
        let empty = match (&audit.entries, &audit.filter.action) {
            (None, _) => "Loading the audit log …",
            (Some(_), None) => "No audit entry yet: every change made through runbookd lands here.",
            (Some(_), Some(_)) => "No entry of this action: x clears the filter.",
        };
        placeholder(frame, area, block, state, empty);
        return;
    };
    let rows = entries.iter().map(|entry| {
        let result = match entry.result.as_str() {
            "SUCCESS" => theme::dim(),
            _ => theme::error(),
        };
        Row::new(vec![
            Cell::from(format::timestamp(entry.at)),
            Cell::from(format::printable(&entry.user).into_owned()),
            Cell::from(entry.action.clone()),
            Cell::from(format::printable(&target(entry)).into_owned()),
            Cell::from(entry.result.clone()).style(result),
            Cell::from(format::printable(&entry.detail).into_owned()).style(theme::dim()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Length(8),
            Constraint::Length(13),
            Constraint::Fill(3),
            Constraint::Length(7),
            Constraint::Fill(4),
        ],
    )
    .header(
        Row::new(["TIME (UTC)", "USER", "ACTION", "TARGET", "RESULT", "DETAIL"])
            .style(theme::header()),
    )
    .block(block)
    .row_highlight_style(theme::selected())
    .highlight_symbol("› ");
    let mut table_state = TableState::new().with_selected(Some(audit.selected));
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// What an entry acted on, with the run's id cut as the runs screen cuts it (`runbook
/// runs` and `runbook audit --run` take the prefix).
fn target(entry: &runbook_protocol::v1::AuditLogEntry) -> String {
    let shown = runbook_protocol::v1::AuditLogEntry {
        run_id: short(&entry.run_id),
        ..entry.clone()
    };
    format::audit_target(&shown)
}

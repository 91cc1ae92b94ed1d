//! The status bar (daemon and connection) and the footer (key hints).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::keymap::HINTS;
use crate::state::{Connection, State};
use crate::theme;

/// The top line: who we talk to, or why we cannot.
pub fn status(frame: &mut Frame, area: Rect, state: &State) {
    let (text, style) = match &state.connection {
        Connection::Connecting => (
            format!(" runbook · connecting to {} …", state.socket),
            theme::status_pending(),
        ),
        Connection::Connected {
            daemon_version,
            active_runs,
        } => (
            format!(
                " runbook · runbookd {daemon_version} on {} · {active_runs} active run{}",
                state.socket,
                if *active_runs == 1 { "" } else { "s" }
            ),
            theme::status_ok(),
        ),
        Connection::Disconnected(error) => (
            // The error first: it is what the user needs, and a long line is cut on the right.
            format!(
                " runbook · cannot reach runbookd: {error} · retrying · {}",
                state.socket
            ),
            theme::status_error(),
        ),
    };
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// The bottom line: the keys that work on this screen.
pub fn footer(frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for (key, what) in HINTS {
        spans.push(Span::styled(*key, theme::key()));
        spans.push(Span::styled(format!(" {what}   "), theme::dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

//! Drawing the TUI: a pure function of [`State`]; nothing here changes state or does I/O.
//! Each screen draws in its own module; this one lays out the chrome around them.

mod agents;
mod approvals;
mod audit;
mod bars;
mod diagnostics;
mod editor;
mod help;
mod launch;
mod markdown;
mod plugins;
mod run_view;
mod runbook_detail;
mod runbooks;
mod runs;

#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, BorderType, Borders, Padding, Paragraph, Wrap};
use runbook_protocol::v1::StepStatus;

use crate::state::{Connection, Screen, State};
use crate::{format, theme};

/// Draws the whole screen: status bar (with the approvals badge), an optional protocol
/// warning, the top screen, the footer (prompt, message or key hints), and help on top.
pub fn render(frame: &mut Frame, state: &State) {
    let banner = u16::from(state.protocol_mismatch.is_some());
    let [status, warning, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    bars::status(frame, status, state);
    if let Some(mismatch) = &state.protocol_mismatch {
        frame.render_widget(
            Paragraph::new(format!(" ⚠ {mismatch}")).style(theme::banner()),
            warning,
        );
    }
    match state.screen() {
        Screen::Runbooks => runbooks::render(frame, body, state),
        Screen::Runs => runs::render(frame, body, state),
        Screen::Approvals => approvals::render(frame, body, state),
        Screen::Detail(detail) => runbook_detail::render(frame, body, state, detail),
        Screen::Editor(editor) => editor::render(frame, body, state, editor),
        Screen::Launch(form) => launch::render(frame, body, state, form),
        Screen::Run(view) => run_view::render(frame, body, state, view),
        Screen::Audit => audit::render(frame, body, state),
        Screen::Plugins => plugins::render(frame, body, state),
        Screen::Agents => agents::render(frame, body, state),
    }
    bars::footer(frame, footer, state);
    if let Some(scroll) = state.help {
        help::render(frame, frame.area(), state, scroll);
    }
}

/// The frame of a pane, highlighted when it has the focus.
fn pane_block(title: String, focused: bool) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(if focused {
            theme::focused_border()
        } else {
            theme::border()
        })
        .title(title)
}

/// A pane for text rather than a table: one column of space inside each border.
fn text_block(title: String, focused: bool) -> Block<'static> {
    pane_block(title, focused).padding(Padding::horizontal(1))
}

/// A pane that has nothing to list, saying why: the daemon is out of reach, or there is
/// nothing yet (`empty`).
fn placeholder(frame: &mut Frame, area: Rect, block: Block<'static>, state: &State, empty: &str) {
    let text = match &state.connection {
        Connection::Disconnected(error) => Text::from(vec![
            Line::styled(format!("Cannot reach runbookd: {error}"), theme::error()),
            Line::styled(retrying(state), theme::dim()),
        ]),
        Connection::Connecting => Text::styled(
            format!("Connecting to runbookd on {} …", state.socket),
            theme::dim(),
        ),
        Connection::Connected(_) => Text::styled(empty.to_owned(), theme::dim()),
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(block.padding(Padding::horizontal(1))),
        area,
    );
}

/// A pane that only says something: what is loading, or why it failed.
fn message(frame: &mut Frame, area: Rect, title: String, text: Text<'static>) {
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(text_block(title, true)),
        area,
    );
}

/// `retrying in 2.0s`, or `retrying` when the time of the next attempt is unknown.
fn retrying(state: &State) -> String {
    if state.retry_at > state.now_ms {
        format!(
            "Retrying in {} (socket {}).",
            format::duration(state.retry_at - state.now_ms),
            state.socket
        )
    } else {
        format!("Retrying (socket {}).", state.socket)
    }
}

/// The frames of the spinner shown beside running steps and runs.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The spinner frame at `now_ms`: it turns with the clock, so render stays pure.
fn spinner(now_ms: i64) -> &'static str {
    SPINNER[usize::try_from(now_ms / 100).unwrap_or(0) % SPINNER.len()]
}

/// The one-cell symbol of a step status; a running step spins.
fn step_symbol(status: StepStatus, now_ms: i64) -> &'static str {
    match status {
        StepStatus::Running => spinner(now_ms),
        StepStatus::Completed => "✓",
        StepStatus::Failed | StepStatus::TimedOut => "✗",
        StepStatus::Waiting | StepStatus::Paused => "‖",
        StepStatus::Cancelled => "⊘",
        StepStatus::Skipped => "↷",
        StepStatus::Ambiguous => "?",
        StepStatus::Pending | StepStatus::Unspecified => "·",
    }
}

/// A centred rectangle of at most `width` x `height` inside `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

/// At most `max` characters of `text`, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

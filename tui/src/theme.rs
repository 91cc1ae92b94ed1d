//! Colours and styles of the TUI, in one place so screens stay consistent.

use ratatui::style::{Color, Modifier, Style};
use runbook_protocol::v1::RunStatus;

use crate::state::Health;

/// The style of a run status: green done, red failed, yellow waiting for someone, and so on.
pub fn run_status(status: RunStatus) -> Style {
    let color = match status {
        RunStatus::Completed => Color::Green,
        RunStatus::Failed | RunStatus::TimedOut => Color::Red,
        RunStatus::Running => Color::Cyan,
        RunStatus::Waiting | RunStatus::Paused => Color::Yellow,
        RunStatus::Cancelled | RunStatus::Pending | RunStatus::Unspecified => Color::DarkGray,
    };
    Style::new().fg(color)
}

/// A runbook's health: green valid, yellow invalid but still running its last good version,
/// red not runnable.
pub fn health(health: Health) -> Style {
    let color = match health {
        Health::Valid => Color::Green,
        Health::RunsLastGood => Color::Yellow,
        Health::Invalid => Color::Red,
    };
    Style::new().fg(color)
}

/// Column headers.
pub fn header() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// The message line of a runbook's problem, above its location and snippet.
pub fn problem() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// The selected row of the focused pane.
pub fn selected() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

/// The border of the focused pane.
pub fn focused_border() -> Style {
    Style::new().fg(Color::Cyan)
}

/// The border of a pane without focus.
pub fn border() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// The status bar when connected.
pub fn status_ok() -> Style {
    Style::new().fg(Color::Black).bg(Color::Green)
}

/// The status bar when the daemon cannot be reached.
pub fn status_error() -> Style {
    Style::new().fg(Color::White).bg(Color::Red)
}

/// The status bar while connecting.
pub fn status_pending() -> Style {
    Style::new().fg(Color::Black).bg(Color::Yellow)
}

/// A key in the footer.
pub fn key() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// Secondary text.
pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

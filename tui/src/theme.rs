//! Colours and styles of the TUI, in one place so screens stay consistent.

use ratatui::style::{Color, Modifier, Style};
use runbook_protocol::v1::{RunStatus, StepStatus};

use crate::editor::highlight::Token;
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

/// The selected row of a list.
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

/// The style of a step status, in the run status colours; ambiguous steps stand out.
pub fn step_status(status: StepStatus) -> Style {
    let color = match status {
        StepStatus::Completed => Color::Green,
        StepStatus::Failed | StepStatus::TimedOut => Color::Red,
        StepStatus::Running => Color::Cyan,
        StepStatus::Waiting | StepStatus::Paused => Color::Yellow,
        StepStatus::Ambiguous => Color::Magenta,
        StepStatus::Cancelled
        | StepStatus::Skipped
        | StepStatus::Pending
        | StepStatus::Unspecified => Color::DarkGray,
    };
    Style::new().fg(color)
}

/// The approvals badge: it must catch the eye on every screen.
pub fn badge() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

/// The current tab in the status bar.
pub fn tab_active() -> Style {
    Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
}

/// A banner that must not be missed (a protocol mismatch).
pub fn banner() -> Style {
    Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}

/// An error message in a pane or the footer.
pub fn error() -> Style {
    Style::new().fg(Color::Red)
}

/// Something to look at that is not an error: an agent that stopped heartbeating.
pub fn warning() -> Style {
    Style::new().fg(Color::Yellow)
}

/// A success message in the footer.
pub fn info() -> Style {
    Style::new().fg(Color::Green)
}

/// Standard error lines of a step.
pub fn stderr() -> Style {
    Style::new().fg(Color::LightRed)
}

/// Lines the TUI writes into a step's log (attempts, retries, approvals).
pub fn log_event() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::DIM)
}

/// A search match.
pub fn search_match() -> Style {
    Style::new().fg(Color::Black).bg(Color::Yellow)
}

/// The line number gutter of the editor.
pub fn gutter() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A line number of a line with a problem.
pub fn gutter_problem() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// A piece of TOML.
pub fn token(token: Token) -> Style {
    match token {
        Token::Plain => Style::new(),
        Token::Comment => Style::new().fg(Color::DarkGray),
        Token::Table => Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD),
        Token::Key => Style::new().fg(Color::Cyan),
        Token::String => Style::new().fg(Color::Green),
        Token::Template => Style::new().fg(Color::Yellow),
        Token::Number | Token::Bool => Style::new().fg(Color::LightBlue),
        Token::Punct => Style::new().fg(Color::DarkGray),
    }
}

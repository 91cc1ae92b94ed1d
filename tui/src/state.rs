//! Everything the TUI shows, as plain data: rendered by `ui`, changed only by `update`.

use runbook_protocol::v1::{Run, RunbookSummary};

/// The connection to the daemon, as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// No answer yet.
    Connecting,
    /// The daemon answers.
    Connected {
        /// The daemon's version.
        daemon_version: String,
        /// Runs in progress.
        active_runs: u32,
    },
    /// The last attempt failed with this message.
    Disconnected(String),
}

/// Whether a runbook can run, as the STATE column shows it. An invalid save keeps the last good
/// version runnable, so "invalid" alone would not tell the user whether runs still work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The file on disk is valid.
    Valid,
    /// The file is invalid, but its last good version still runs.
    RunsLastGood,
    /// The file is invalid and never was valid: the runbook cannot run.
    Invalid,
}

impl Health {
    /// The health of `runbook`.
    pub fn of(runbook: &RunbookSummary) -> Self {
        match (runbook.valid, runbook.version.is_empty()) {
            (true, _) => Self::Valid,
            (false, false) => Self::RunsLastGood,
            (false, true) => Self::Invalid,
        }
    }

    /// The STATE cell: short, since the list pane is narrow; the `*` is explained in the
    /// diagnostics panel.
    pub fn label(self) -> &'static str {
        match self {
            Self::Valid => "ok",
            Self::RunsLastGood => "invalid*",
            Self::Invalid => "invalid",
        }
    }
}

/// Which pane has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The runbook list on the left.
    Runbooks,
    /// The recent runs on the right.
    Runs,
}

/// The TUI's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The daemon's socket, shown in the status bar.
    pub socket: String,
    /// The connection to the daemon.
    pub connection: Connection,
    /// Runbooks, sorted by name.
    pub runbooks: Vec<RunbookSummary>,
    /// Recent runs, newest first.
    pub runs: Vec<Run>,
    /// The pane with the keyboard.
    pub focus: Pane,
    /// Index of the selected runbook (meaningful when there are runbooks).
    pub selected_runbook: usize,
    /// Index of the selected run (meaningful when there are runs).
    pub selected_run: usize,
    /// The current time in Unix milliseconds, for "how long ago" columns.
    pub now_ms: i64,
    /// Set when the user asked to leave.
    pub should_quit: bool,
}

impl State {
    /// The state before anything was heard from the daemon.
    pub fn new(socket: impl Into<String>, now_ms: i64) -> Self {
        Self {
            socket: socket.into(),
            connection: Connection::Connecting,
            runbooks: Vec::new(),
            runs: Vec::new(),
            focus: Pane::Runbooks,
            selected_runbook: 0,
            selected_run: 0,
            now_ms,
            should_quit: false,
        }
    }

    /// The selected runbook, if there is any.
    pub fn current_runbook(&self) -> Option<&RunbookSummary> {
        self.runbooks.get(self.selected_runbook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_tells_whether_an_invalid_runbook_still_runs() {
        let runbook = |valid: bool, version: &str| RunbookSummary {
            valid,
            version: version.into(),
            ..Default::default()
        };
        assert_eq!(Health::of(&runbook(true, "abc")), Health::Valid);
        assert_eq!(Health::of(&runbook(false, "abc")), Health::RunsLastGood);
        assert_eq!(Health::of(&runbook(false, "")), Health::Invalid);
        assert_eq!(Health::RunsLastGood.label(), "invalid*");
    }
}

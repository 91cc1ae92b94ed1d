//! Every change to the TUI's state, whether from a key, a tick or the daemon, is an [`Action`].

use runbook_protocol::v1::{Run, RunbookSummary};

/// One state change, applied by [`crate::update::update`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Leave the TUI.
    Quit,
    /// Move the focus to the other pane.
    FocusNext,
    /// Select the previous row of the focused pane.
    Up,
    /// Select the next row of the focused pane.
    Down,
    /// Select the first row of the focused pane.
    Top,
    /// Select the last row of the focused pane.
    Bottom,
    /// Time passed; carries the current time in Unix milliseconds (keeps `update` pure).
    Tick(i64),
    /// The daemon answered its status.
    Connected {
        /// The daemon's version.
        daemon_version: String,
        /// Runs in progress.
        active_runs: u32,
    },
    /// The daemon cannot be reached or a call failed; the message says why.
    Disconnected(String),
    /// The current list of runbooks.
    Runbooks(Vec<RunbookSummary>),
    /// The most recent runs, newest first.
    Runs(Vec<Run>),
}

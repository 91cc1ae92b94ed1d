//! Every change to the TUI's state, whether from a key, a tick or the daemon, is an [`Action`].

use crossterm::event::KeyEvent;
use runbook_protocol::v1::{
    AuditLogEntry, ListAgentsResponse, Plugin, Run, RunEvent, RunbookDetail, RunbookSummary,
    RunbookVersion, SaveRunbookResponse, ValidateRunbookResponse,
};

use crate::state::run_view::WatchStatus;
use crate::state::{AuditFilter, RunsFilter};

/// One state change, applied by [`crate::update::update`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Leave the TUI.
    Quit,
    /// A key was pressed; what it means depends on the screen.
    Key(KeyEvent),
    /// Text was pasted (bracketed paste): inserted whole rather than key by key.
    Paste(String),
    /// The mouse wheel turned: positive scrolls down, negative up, in lines.
    Scroll(i16),
    /// The terminal was resized to (columns, rows).
    Resize(u16, u16),
    /// Time passed; carries the current time in Unix milliseconds (keeps `update` pure).
    Tick(i64),
    /// The daemon answered its status.
    Connected {
        daemon: crate::state::DaemonView,
        /// The protocol version it speaks.
        protocol_version: u32,
    },
    /// The daemon cannot be reached or a call failed; the message says why.
    Disconnected(String),
    /// The next connection attempt starts at this time (Unix ms).
    RetryAt(i64),
    /// The current list of runbooks.
    Runbooks(Vec<RunbookSummary>),
    /// The most recent runs, newest first.
    Runs(Vec<Run>),
    /// The runs that wait (for approval or otherwise), with their steps.
    Waiting(Vec<Run>),
    /// The runs history for `filter`, newest first, or why it could not be listed.
    History {
        /// The filter the runs were listed with.
        filter: RunsFilter,
        /// The runs, or the error.
        result: Result<Vec<Run>, String>,
    },
    /// The audit log's entries for `filter`, oldest first as the daemon sends them, or why
    /// they could not be listed.
    Audit {
        /// The filter the entries were listed with.
        filter: AuditFilter,
        /// The entries, or the error.
        result: Result<Vec<AuditLogEntry>, String>,
    },
    /// The daemon's plugins, or why they could not be listed.
    Plugins(Result<Vec<Plugin>, String>),
    /// The daemon's remote agents (and whether it has a cluster), or why they could not be
    /// listed.
    Agents(Result<ListAgentsResponse, String>),
    /// A runbook changed on the daemon (new version, invalid save, removal).
    RunbookChanged(String),
    /// A runbook's detail, or why it could not be loaded.
    RunbookLoaded {
        /// The runbook asked for.
        name: String,
        /// Its detail, or the error.
        result: Result<RunbookDetail, String>,
    },
    /// A runbook's versions, oldest first.
    Versions {
        /// The runbook asked for.
        name: String,
        /// The versions, or the error.
        result: Result<Vec<RunbookVersion>, String>,
    },
    /// A rollback's answer: the version made current, or why not.
    RolledBack {
        /// The runbook.
        runbook: String,
        /// The version restored (a new version number with the old content), or the error.
        result: Result<RunbookVersion, String>,
    },
    /// The daemon's verdict on the editor's text of `generation`.
    Validated {
        /// The editor generation that was sent.
        generation: u64,
        /// The verdict, or why there is none.
        result: Result<ValidateRunbookResponse, String>,
    },
    /// A save finished.
    Saved {
        /// The runbook saved.
        name: String,
        /// The text that was sent.
        source: String,
        /// The daemon's answer, or why it failed.
        result: Result<SaveRunbookResponse, String>,
    },
    /// A save was refused because the file changed on disk since it was loaded.
    SaveConflict {
        /// The runbook.
        name: String,
        /// The daemon's message.
        message: String,
    },
    /// A run was started (or could not be).
    RunStarted(Result<Run, String>),
    /// A run as the daemon has it now.
    RunSnapshot(Run),
    /// Why a run cannot be watched (unknown id, say): the stream will not be retried.
    RunFailed {
        /// The run.
        run_id: String,
        /// Why.
        error: String,
    },
    /// One event of a run, in order; duplicates are possible after a reconnect.
    RunEvent(RunEvent),
    /// The state of a run's event stream changed.
    WatchStatus {
        /// The run.
        run_id: String,
        /// The new state.
        status: WatchStatus,
    },
    /// An approve, deny or cancel finished: `done` says what was done.
    Decided {
        /// What was done, for the footer ("approved step x of run y").
        done: String,
        /// The run as it is now, or why the decision failed.
        result: Result<Run, String>,
    },
    /// `$EDITOR` exited.
    ExternalEditDone {
        /// The runbook whose file was edited.
        name: String,
        /// Ok, or why the editor could not run.
        result: Result<(), String>,
    },
}

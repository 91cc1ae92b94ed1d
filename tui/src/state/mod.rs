//! Everything the TUI shows, as plain data: rendered by `ui`, changed only by `update`.
//! Each screen's state lives in its own submodule; this one holds what every screen shares
//! (connection, lists from the daemon, the screen stack, prompts and notices).

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod editor;
pub mod input;
pub mod launch;
pub mod plugins;
pub mod run_view;
pub mod runbooks;
pub mod runs;

use runbook_protocol::v1::{Run, RunbookSummary};

pub use agents::AgentsView;
pub use approvals::ApprovalsState;
pub use audit::{AuditFilter, AuditLog};
pub use editor::EditorState;
pub use input::LineInput;
pub use launch::LaunchForm;
pub use plugins::PluginsView;
pub use run_view::RunView;
pub use runbooks::{DetailState, Health, RunbookList};
pub use runs::{History, RunsFilter};

/// The connection to the daemon, as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// No answer yet.
    Connecting,
    /// The daemon answers.
    Connected(DaemonView),
    /// The last attempt failed with this message.
    Disconnected(String),
}

/// What the status bar says of a daemon that answers, from its last `Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonView {
    /// The daemon's version.
    pub version: String,
    /// Runs in progress.
    pub active_runs: u32,
    /// Steps executing now.
    pub steps_in_flight: u32,
    /// The size of the store's files on disk.
    pub store_bytes: u64,
    /// Empty when the daemon can take work; else why it cannot.
    pub not_ready: String,
}

/// One screen. The top-level ones (runbooks, runs, approvals) are tabs; the others open on
/// top of them and Esc goes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// The runbook list (the first screen).
    Runbooks,
    /// The runs history.
    Runs,
    /// The approvals queue.
    Approvals,
    /// One runbook: steps, params, versions.
    Detail(Box<DetailState>),
    /// Editing a runbook's file.
    Editor(Box<EditorState>),
    /// The launch form of a runbook.
    Launch(Box<LaunchForm>),
    /// A run, live.
    Run(Box<RunView>),
    /// The daemon's audit log.
    Audit,
    /// The daemon's plugins.
    Plugins,
    /// The remote agents the daemon knows.
    Agents,
}

impl Screen {
    /// Whether this is one of the top-level tabs.
    pub fn is_tab(&self) -> bool {
        matches!(self, Self::Runbooks | Self::Runs | Self::Approvals)
    }
}

/// What a one-line prompt at the bottom of the screen asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// A filter of the runbook list, applied as it is typed.
    FilterRunbooks,
    /// A search in the run view's log.
    SearchLog,
    /// A search in the editor.
    SearchEditor,
    /// Why a step is denied.
    Deny {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
    },
    /// Whether to cancel a run (y/n).
    ConfirmCancel {
        /// The run.
        run_id: String,
    },
    /// Whether to retry an ended run in place (y/n).
    ConfirmRetry {
        /// The run.
        run_id: String,
    },
    /// Which version of a runbook to make current again (a number, prefilled).
    Rollback {
        /// The runbook.
        runbook: String,
    },
    /// What to do with an ambiguous step (r/s/f).
    Resolve {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
    },
}

/// A prompt being answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// What it asks for.
    pub kind: PromptKind,
    /// What is typed so far.
    pub input: LineInput,
}

/// A screen to open once a runbook's detail arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The editor.
    Edit,
    /// The launch form.
    Launch,
}

/// A runbook asked for, and what to open with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOpen {
    /// The runbook.
    pub runbook: String,
    /// The screen to open.
    pub then: Then,
}

/// A short message in the footer: the outcome of an action, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The message.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
    /// Hidden after this time (Unix ms).
    pub until_ms: i64,
}

/// How long a notice stays.
pub const NOTICE_MS: i64 = 6_000;

/// The TUI's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The daemon's socket, shown in the status bar.
    pub socket: String,
    /// The connection to the daemon.
    pub connection: Connection,
    /// When the next connection attempt starts, while disconnected (Unix ms; 0 unknown).
    pub retry_at: i64,
    /// Set when the daemon speaks another protocol version: why some calls may fail.
    pub protocol_mismatch: Option<String>,
    /// Runbooks, sorted by name.
    pub runbooks: Vec<RunbookSummary>,
    /// Recent runs, newest first: the LAST RUN column.
    pub runs: Vec<Run>,
    /// Runs that wait, with their steps: the approvals queue.
    pub waiting: Vec<Run>,
    /// The runbook list screen.
    pub list: RunbookList,
    /// The runs history screen.
    pub history: History,
    /// The approvals screen.
    pub approvals: ApprovalsState,
    /// The audit log screen.
    pub audit: AuditLog,
    /// The plugins screen.
    pub plugins: PluginsView,
    /// The agents screen.
    pub agents: AgentsView,
    /// The open screens, bottom first; never empty, and the bottom one is a tab.
    pub stack: Vec<Screen>,
    /// The prompt being answered, if any; it has the keyboard.
    pub prompt: Option<Prompt>,
    /// The help overlay, when open, and how far it is scrolled.
    pub help: Option<u16>,
    /// The footer message, if any.
    pub notice: Option<Notice>,
    /// A runbook being loaded to open a screen with.
    pub pending: Option<PendingOpen>,
    /// Quitting with unsaved edits was asked once: asking again quits.
    pub quit_armed: bool,
    /// The terminal's size (columns, rows), for paging.
    pub size: (u16, u16),
    /// The current time in Unix milliseconds, for "how long ago" columns and spinners.
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
            retry_at: 0,
            protocol_mismatch: None,
            runbooks: Vec::new(),
            runs: Vec::new(),
            waiting: Vec::new(),
            list: RunbookList::default(),
            history: History::default(),
            approvals: ApprovalsState::default(),
            audit: AuditLog::default(),
            plugins: PluginsView::default(),
            agents: AgentsView::default(),
            stack: vec![Screen::Runbooks],
            prompt: None,
            help: None,
            notice: None,
            pending: None,
            quit_armed: false,
            size: (80, 24),
            now_ms,
            should_quit: false,
        }
    }

    /// The screen on top.
    pub fn screen(&self) -> &Screen {
        // The stack is never empty: `update` never pops its last screen.
        self.stack.last().unwrap_or(&Screen::Runbooks)
    }

    /// The screen on top, to change it.
    pub fn screen_mut(&mut self) -> &mut Screen {
        if self.stack.is_empty() {
            self.stack.push(Screen::Runbooks);
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    /// The selected runbook of the list, if any.
    pub fn current_runbook(&self) -> Option<&RunbookSummary> {
        self.list.current(&self.runbooks)
    }

    /// How many steps wait for approval, for the badge.
    pub fn approval_count(&self) -> usize {
        approvals::pending(&self.waiting).len()
    }

    /// Shows `text` in the footer for a while.
    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
            until_ms: self.now_ms + NOTICE_MS,
        });
    }

    /// Shows `text` in the footer as an error, for a while.
    pub fn notify_error(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: true,
            until_ms: self.now_ms + NOTICE_MS,
        });
    }

    /// The open run views.
    pub fn run_views_mut(&mut self) -> impl Iterator<Item = &mut RunView> {
        self.stack.iter_mut().filter_map(|screen| match screen {
            Screen::Run(view) => Some(view.as_mut()),
            _ => None,
        })
    }
}

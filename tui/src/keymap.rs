//! Which key does what on which screen: the one table that `update` reads keys through and
//! that the help overlay, the footer and docs/tui.md describe.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for; `update` decides what that means in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Leave the TUI.
    Quit,
    /// Go back a screen (or close what is open).
    Back,
    /// Show every key.
    Help,
    /// Open the approvals queue.
    Approvals,
    /// Open the audit log.
    AuditLog,
    /// Open the plugins screen.
    PluginList,
    /// Open the agents screen.
    AgentList,
    /// The next top-level tab.
    NextTab,
    /// The previous top-level tab.
    PrevTab,
    /// Previous row.
    Up,
    /// Next row.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// First row (the log's top in the run view).
    Top,
    /// Last row (the log's end, following it, in the run view).
    Bottom,
    /// Open the selected item.
    Open,
    /// Filter the list.
    Filter,
    /// Edit the runbook in the TUI.
    Edit,
    /// Edit the runbook in `$EDITOR`.
    ExternalEdit,
    /// Open the launch form.
    Launch,
    /// Cancel the run.
    Cancel,
    /// Pause or resume the run.
    Pause,
    /// Run the same runbook again with the same params.
    Rerun,
    /// Retry the ended run in place: what failed runs again, completed steps keep their outputs.
    Retry,
    /// Decide what happens to the selected ambiguous step: retry, skip or fail.
    Resolve,
    /// Make an earlier version of the runbook current again.
    Rollback,
    /// Approve the selected step.
    Approve,
    /// Deny the selected step, with a reason.
    Deny,
    /// Toggle following the newest log lines.
    Follow,
    /// Search.
    Search,
    /// The next match of the search.
    NextMatch,
    /// The previous match of the search.
    PrevMatch,
    /// Toggle the log pane between log and output JSON.
    ToggleOutput,
    /// Cycle the status filter.
    StatusFilter,
    /// Cycle the runbook filter.
    RunbookFilter,
    /// Clear the filters.
    ClearFilters,
    /// Save the file.
    Save,
    /// Undo.
    Undo,
    /// Redo.
    Redo,
    /// Reload the file from disk.
    Reload,
    /// The next form field.
    NextField,
    /// The previous form field.
    PrevField,
    /// The previous choice.
    ChoiceLeft,
    /// The next choice.
    ChoiceRight,
    /// Turn the launch form's dry run on or off.
    ToggleDryRun,
    /// Submit the form.
    Submit,
}

/// A key as bindings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character, without Ctrl or Alt (Shift is part of the character).
    Char(char),
    /// Ctrl with a character.
    Ctrl(char),
    /// Any other key, without Ctrl.
    Code(KeyCode),
}

impl Key {
    fn matches(self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match self {
            Self::Char(c) => !ctrl && !alt && key.code == KeyCode::Char(c),
            Self::Ctrl(c) => ctrl && key.code == KeyCode::Char(c),
            Self::Code(code) => !ctrl && key.code == code,
        }
    }
}

/// One binding: its keys, how help shows them, what they do.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys that trigger it.
    pub keys: &'static [Key],
    /// The keys as help shows them.
    pub label: &'static str,
    /// What it does, for help.
    pub help: &'static str,
    /// A word or two for the footer; empty keeps it out of the footer.
    pub hint: &'static str,
    /// What it asks for.
    pub intent: Intent,
}

const fn bind(
    keys: &'static [Key],
    label: &'static str,
    help: &'static str,
    hint: &'static str,
    intent: Intent,
) -> Binding {
    Binding {
        keys,
        label,
        help,
        hint,
        intent,
    }
}

use Key::{Char, Code, Ctrl};

/// Keys that work on every screen where letters are not text.
pub const GLOBAL: &[Binding] = &[
    bind(
        &[Char('?'), Code(KeyCode::F(1))],
        "? F1",
        "show all keys",
        "help",
        Intent::Help,
    ),
    bind(
        &[Char('A'), Code(KeyCode::F(2))],
        "A F2",
        "open the approvals queue (from any screen)",
        "",
        Intent::Approvals,
    ),
    bind(
        &[Char('U'), Code(KeyCode::F(4))],
        "U F4",
        "open the audit log (from any screen)",
        "",
        Intent::AuditLog,
    ),
    bind(
        &[Char('P'), Code(KeyCode::F(5))],
        "P F5",
        "open the plugins: imports, grants, refusals (from any screen)",
        "",
        Intent::PluginList,
    ),
    // `A` is the approvals': W for the workers that `runs_on` steps go to.
    bind(
        &[Char('W'), Code(KeyCode::F(6))],
        "W F6",
        "open the remote agents: labels, heartbeat, health (from any screen)",
        "",
        Intent::AgentList,
    ),
    bind(
        &[Code(KeyCode::Tab)],
        "Tab",
        "next tab: Runbooks, Runs, Approvals",
        "",
        Intent::NextTab,
    ),
    bind(
        &[Code(KeyCode::BackTab)],
        "S-Tab",
        "previous tab",
        "",
        Intent::PrevTab,
    ),
    bind(
        &[Code(KeyCode::Esc)],
        "Esc",
        "back a screen",
        "",
        Intent::Back,
    ),
    bind(&[Char('q')], "q", "quit", "quit", Intent::Quit),
    bind(&[Ctrl('c')], "Ctrl-C", "quit", "", Intent::Quit),
];

/// Keys that work where letters are text (editor, launch form).
pub const GLOBAL_TEXT: &[Binding] = &[
    bind(
        &[Code(KeyCode::F(1))],
        "F1",
        "show all keys",
        "",
        Intent::Help,
    ),
    bind(
        &[Code(KeyCode::F(2))],
        "F2",
        "open the approvals queue",
        "",
        Intent::Approvals,
    ),
    bind(
        &[Code(KeyCode::F(4))],
        "F4",
        "open the audit log",
        "",
        Intent::AuditLog,
    ),
    bind(
        &[Code(KeyCode::F(5))],
        "F5",
        "open the plugins",
        "",
        Intent::PluginList,
    ),
    bind(
        &[Code(KeyCode::F(6))],
        "F6",
        "open the remote agents",
        "",
        Intent::AgentList,
    ),
    bind(&[Code(KeyCode::Esc)], "Esc", "back", "back", Intent::Back),
    bind(&[Ctrl('c')], "Ctrl-C", "quit", "", Intent::Quit),
];

const UP: Binding = bind(
    &[Code(KeyCode::Up), Char('k')],
    "↑ k",
    "previous row",
    "",
    Intent::Up,
);
const DOWN: Binding = bind(
    &[Code(KeyCode::Down), Char('j')],
    "↓ j",
    "next row",
    "",
    Intent::Down,
);
const PAGE_UP: Binding = bind(
    &[Code(KeyCode::PageUp)],
    "PgUp",
    "a page up",
    "",
    Intent::PageUp,
);
const PAGE_DOWN: Binding = bind(
    &[Code(KeyCode::PageDown)],
    "PgDn",
    "a page down",
    "",
    Intent::PageDown,
);
const TOP: Binding = bind(
    &[Code(KeyCode::Home), Char('g')],
    "g Home",
    "first row",
    "",
    Intent::Top,
);
const BOTTOM: Binding = bind(
    &[Code(KeyCode::End), Char('G')],
    "G End",
    "last row",
    "",
    Intent::Bottom,
);

/// The runbook list.
pub const RUNBOOKS: &[Binding] = &[
    UP,
    DOWN,
    PAGE_UP,
    PAGE_DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        "open the runbook: steps, params, versions",
        "open",
        Intent::Open,
    ),
    bind(
        &[Char('/')],
        "/",
        "filter by name or description",
        "filter",
        Intent::Filter,
    ),
    bind(
        &[Char('e')],
        "e",
        "edit the runbook here",
        "edit",
        Intent::Edit,
    ),
    bind(
        &[Char('E')],
        "E",
        "edit the runbook in $EDITOR",
        "",
        Intent::ExternalEdit,
    ),
    bind(
        &[Char('r')],
        "r",
        "run it (launch form)",
        "run",
        Intent::Launch,
    ),
];

/// One runbook's screen.
pub const DETAIL: &[Binding] = &[
    UP,
    DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Char('e')],
        "e",
        "edit the runbook here",
        "edit",
        Intent::Edit,
    ),
    bind(
        &[Char('E')],
        "E",
        "edit the runbook in $EDITOR",
        "$EDITOR",
        Intent::ExternalEdit,
    ),
    bind(
        &[Char('r')],
        "r",
        "run it (launch form)",
        "run",
        Intent::Launch,
    ),
    bind(
        &[Char('b')],
        "b",
        "roll back to an earlier version (asks which)",
        "rollback",
        Intent::Rollback,
    ),
];

/// The editor; letters are text here.
pub const EDITOR: &[Binding] = &[
    bind(
        &[Ctrl('s')],
        "Ctrl-S",
        "save through the daemon (a valid text becomes a new version)",
        "save",
        Intent::Save,
    ),
    bind(&[Ctrl('z')], "Ctrl-Z", "undo", "undo", Intent::Undo),
    bind(&[Ctrl('y')], "Ctrl-Y", "redo", "redo", Intent::Redo),
    bind(&[Ctrl('f')], "Ctrl-F", "search", "find", Intent::Search),
    bind(
        &[Ctrl('n'), Code(KeyCode::F(3))],
        "Ctrl-N F3",
        "next match",
        "",
        Intent::NextMatch,
    ),
    bind(
        &[Ctrl('p')],
        "Ctrl-P",
        "previous match",
        "",
        Intent::PrevMatch,
    ),
    bind(
        &[Ctrl('r')],
        "Ctrl-R",
        "reload the file from disk (drops unsaved edits)",
        "",
        Intent::Reload,
    ),
];

/// Editor keys that only help describes: they edit the text.
pub const EDITOR_NOTES: &[(&str, &str)] = &[
    ("letters, Enter", "type (Enter keeps the indentation)"),
    ("Tab", "indent to the next 2-space stop"),
    ("Backspace Del", "delete before / under the cursor"),
    ("← → ↑ ↓", "move"),
    ("Ctrl-← / →", "a word left / right"),
    ("Home End", "line start (first non-blank first) / end"),
    ("PgUp PgDn", "a page up / down"),
    ("Ctrl-Home/End", "start / end of the file"),
];

/// The launch form; letters are text here.
pub const LAUNCH: &[Binding] = &[
    bind(
        &[Code(KeyCode::Tab), Code(KeyCode::Down)],
        "Tab ↓",
        "next field",
        "next",
        Intent::NextField,
    ),
    bind(
        &[Code(KeyCode::BackTab), Code(KeyCode::Up)],
        "S-Tab ↑",
        "previous field",
        "",
        Intent::PrevField,
    ),
    bind(
        &[Code(KeyCode::Left)],
        "←",
        "previous choice (choice fields)",
        "",
        Intent::ChoiceLeft,
    ),
    bind(
        &[Code(KeyCode::Right), Char(' ')],
        "→ Space",
        "next choice (choice fields)",
        "choose",
        Intent::ChoiceRight,
    ),
    bind(
        &[Ctrl('d')],
        "Ctrl-D",
        "dry run on/off: every step's plan is its output, nothing runs",
        "dry run",
        Intent::ToggleDryRun,
    ),
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        "start the run and watch it",
        "start",
        Intent::Submit,
    ),
];

/// The form that confirms an instruction step done.
pub const CONFIRM: &[Binding] = &[
    LAUNCH[0],
    LAUNCH[1],
    LAUNCH[2],
    LAUNCH[3],
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        "confirm it done with these values",
        "confirm",
        Intent::Submit,
    ),
];

/// The run view.
pub const RUN: &[Binding] = &[
    bind(
        &[Code(KeyCode::Up), Char('k')],
        "↑ k",
        "previous step",
        "",
        Intent::Up,
    ),
    bind(
        &[Code(KeyCode::Down), Char('j')],
        "↓ j",
        "next step",
        "",
        Intent::Down,
    ),
    bind(
        &[Code(KeyCode::PageUp)],
        "PgUp",
        "scroll the log up (stops following)",
        "",
        Intent::PageUp,
    ),
    bind(
        &[Code(KeyCode::PageDown)],
        "PgDn",
        "scroll the log down",
        "",
        Intent::PageDown,
    ),
    bind(
        &[Code(KeyCode::Home), Char('g')],
        "g Home",
        "top of the log",
        "",
        Intent::Top,
    ),
    bind(
        &[Code(KeyCode::End), Char('G')],
        "G End",
        "end of the log, following it",
        "",
        Intent::Bottom,
    ),
    bind(
        &[Char('f')],
        "f",
        "follow the newest lines on / off",
        "follow",
        Intent::Follow,
    ),
    bind(
        &[Char('/')],
        "/",
        "search the log",
        "search",
        Intent::Search,
    ),
    bind(&[Char('n')], "n", "next match", "", Intent::NextMatch),
    bind(&[Char('N')], "N", "previous match", "", Intent::PrevMatch),
    bind(
        &[Char('o')],
        "o",
        "show the step's output JSON / its log",
        "output",
        Intent::ToggleOutput,
    ),
    bind(
        &[Char('a')],
        "a",
        "approve the selected step",
        "",
        Intent::Approve,
    ),
    bind(
        &[Char('d')],
        "d",
        "deny the selected step, with a reason",
        "",
        Intent::Deny,
    ),
    bind(
        &[Char('c')],
        "c",
        "cancel the run",
        "cancel",
        Intent::Cancel,
    ),
    bind(
        &[Char('p')],
        "p",
        "pause the run (running steps finish, no new one starts) / resume it",
        "pause",
        Intent::Pause,
    ),
    bind(
        &[Char('R')],
        "R",
        "run again with the same params (ended runs)",
        "rerun",
        Intent::Rerun,
    ),
    bind(
        &[Char('T')],
        "T",
        "retry the ended run in place (failed steps run again)",
        // Left out of the footer, which must fit 80 columns: `?` lists it.
        "",
        Intent::Retry,
    ),
    bind(
        &[Char('x')],
        "x",
        "resolve the selected ambiguous step: retry, skip or fail",
        "",
        Intent::Resolve,
    ),
];

/// The approvals queue.
pub const APPROVALS: &[Binding] = &[
    UP,
    DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Char('a')],
        "a",
        "approve the selected request",
        "approve",
        Intent::Approve,
    ),
    bind(
        &[Char('d')],
        "d",
        "deny it, with a reason",
        "deny",
        Intent::Deny,
    ),
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        "open its run",
        "run",
        Intent::Open,
    ),
];

/// The runs history.
pub const RUNS: &[Binding] = &[
    UP,
    DOWN,
    PAGE_UP,
    PAGE_DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Code(KeyCode::Enter)],
        "Enter",
        "open the run",
        "open",
        Intent::Open,
    ),
    bind(
        &[Char('s')],
        "s",
        "cycle the status filter",
        "status",
        Intent::StatusFilter,
    ),
    bind(
        &[Char('b')],
        "b",
        "cycle the runbook filter",
        "runbook",
        Intent::RunbookFilter,
    ),
    bind(
        &[Char('x')],
        "x",
        "clear the filters",
        "clear",
        Intent::ClearFilters,
    ),
];

/// The audit log.
pub const AUDIT: &[Binding] = &[
    UP,
    DOWN,
    PAGE_UP,
    PAGE_DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Char('s')],
        "s",
        "cycle the action filter",
        "action",
        Intent::StatusFilter,
    ),
    bind(
        &[Char('x')],
        "x",
        "clear the filter",
        "clear",
        Intent::ClearFilters,
    ),
    bind(
        &[Char('r')],
        "r",
        "read the log again",
        "reload",
        Intent::Reload,
    ),
];

pub const PLUGINS: &[Binding] = &[
    UP,
    DOWN,
    PAGE_UP,
    PAGE_DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Char('r')],
        "r",
        "list the plugins again (after `runbook plugin grant`)",
        "reload",
        Intent::Reload,
    ),
];

/// The remote agents.
pub const AGENTS: &[Binding] = &[
    UP,
    DOWN,
    PAGE_UP,
    PAGE_DOWN,
    TOP,
    BOTTOM,
    bind(
        &[Char('r')],
        "r",
        "list the agents now (the screen also does so every second)",
        "reload",
        Intent::Reload,
    ),
];

/// Keys of a prompt (filter, search, deny reason) and of the help overlay, for help only.
pub const PROMPT_NOTES: &[(&str, &str)] = &[
    ("Enter", "confirm (a filter stays applied)"),
    ("Esc", "cancel (a filter is cleared)"),
    ("y / n", "answer a yes/no question"),
    ("mouse wheel", "scroll lists, logs, the editor and help"),
];

/// Where the keyboard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The runbook list.
    Runbooks,
    /// One runbook.
    Detail,
    /// The editor.
    Editor,
    /// The launch form.
    Launch,
    /// The form that confirms an instruction step.
    Confirm,
    /// A run.
    Run,
    /// The approvals queue.
    Approvals,
    /// The runs history.
    Runs,
    /// The audit log.
    Audit,
    /// The plugins.
    Plugins,
    /// The remote agents.
    Agents,
}

impl Context {
    /// This screen's own bindings.
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Self::Runbooks => RUNBOOKS,
            Self::Detail => DETAIL,
            Self::Editor => EDITOR,
            Self::Launch => LAUNCH,
            Self::Confirm => CONFIRM,
            Self::Run => RUN,
            Self::Approvals => APPROVALS,
            Self::Runs => RUNS,
            Self::Audit => AUDIT,
            Self::Plugins => PLUGINS,
            Self::Agents => AGENTS,
        }
    }

    /// Whether letters are text here, so only the text-safe global keys apply.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Editor | Self::Launch | Self::Confirm)
    }

    /// The global bindings that apply here.
    pub fn globals(self) -> &'static [Binding] {
        if self.is_text() { GLOBAL_TEXT } else { GLOBAL }
    }

    /// The section title in help.
    pub fn title(self) -> &'static str {
        match self {
            Self::Runbooks => "Runbooks",
            Self::Detail => "Runbook",
            Self::Editor => "Editor",
            Self::Launch => "Launch form",
            Self::Confirm => "Confirm form (an instruction step)",
            Self::Run => "Run",
            Self::Approvals => "Approvals",
            Self::Runs => "Runs",
            Self::Audit => "Audit log",
            Self::Plugins => "Plugins",
            Self::Agents => "Agents",
        }
    }

    /// Every context, in the order help lists them.
    pub const ALL: [Context; 11] = [
        Self::Runbooks,
        Self::Detail,
        Self::Editor,
        Self::Launch,
        Self::Confirm,
        Self::Run,
        Self::Approvals,
        Self::Runs,
        Self::Audit,
        Self::Plugins,
        Self::Agents,
    ];
}

/// What `key` asks for in `context`, if anything: the screen's own bindings first, then the
/// global ones. Key releases are ignored: terminals that report them would act twice.
pub fn intent(context: Context, key: KeyEvent) -> Option<Intent> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    context
        .bindings()
        .iter()
        .chain(context.globals())
        .find(|binding| binding.keys.iter().any(|k| k.matches(&key)))
        .map(|binding| binding.intent)
}

/// The footer's hints for `context`: (keys, what).
pub fn hints(context: Context) -> Vec<(&'static str, &'static str)> {
    context
        .bindings()
        .iter()
        .chain(context.globals())
        .filter(|binding| !binding.hint.is_empty())
        .map(|binding| (binding.label, binding.hint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn screens_decide_what_a_key_means() {
        let c = |ch| key(KeyCode::Char(ch));
        assert_eq!(intent(Context::Runbooks, c('q')), Some(Intent::Quit));
        assert_eq!(intent(Context::Runbooks, c('e')), Some(Intent::Edit));
        assert_eq!(intent(Context::Runbooks, c('j')), Some(Intent::Down));
        assert_eq!(intent(Context::Editor, c('q')), None, "letters are text");
        assert_eq!(intent(Context::Editor, c('A')), None);
        assert_eq!(intent(Context::Run, c('A')), Some(Intent::Approvals));
        assert_eq!(intent(Context::Run, c('p')), Some(Intent::Pause));
        assert_eq!(intent(Context::Runbooks, c('x')), None);
        let ctrl_s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert_eq!(intent(Context::Editor, ctrl_s), Some(Intent::Save));
        assert_eq!(intent(Context::Runbooks, ctrl_s), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(intent(Context::Editor, ctrl_c), Some(Intent::Quit));
        let shifted = KeyEvent::new(KeyCode::Char('R'), KeyModifiers::SHIFT);
        assert_eq!(intent(Context::Run, shifted), Some(Intent::Rerun));
        let mut release = c('q');
        release.kind = KeyEventKind::Release;
        assert_eq!(intent(Context::Runbooks, release), None);
    }

    #[test]
    fn no_key_is_bound_twice_on_one_screen() {
        for context in Context::ALL {
            let mut seen: Vec<Key> = Vec::new();
            for binding in context.bindings().iter().chain(context.globals()) {
                for key in binding.keys {
                    assert!(
                        !seen.contains(key),
                        "{key:?} is bound twice in {}",
                        context.title()
                    );
                    seen.push(*key);
                }
            }
        }
    }

    #[test]
    fn every_screen_has_footer_hints() {
        for context in Context::ALL {
            assert!(!hints(context).is_empty(), "{}", context.title());
        }
    }
}

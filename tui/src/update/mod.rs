//! The TUI's only state transition: a pure `update(&mut State, Action) -> Vec<Command>`. No I/O
//! and no clock (time arrives in `Tick`s), so every behaviour is unit-testable; what needs the
//! daemon is returned as [`Command`]s. This module routes actions; each screen's keys and
//! answers live in its own submodule.

mod agents;
mod approvals;
mod audit;
mod editor;
mod launch;
mod plugins;
mod prompt;
mod run_view;
mod runbooks;
mod runs;

#[cfg(test)]
mod tests;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::Action;
use crate::command::Command;
use crate::keymap::{self, Context, Intent};
use crate::state::{Connection, Screen, State};

/// Applies `action` to `state` and returns the effects it asks for.
pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    let mut out = Vec::new();
    match action {
        Action::Quit => state.should_quit = true,
        Action::Key(key) => on_key(state, key, &mut out),
        Action::Paste(text) => on_paste(state, &text),
        Action::Scroll(lines) => on_scroll(state, lines),
        Action::Resize(columns, rows) => state.size = (columns, rows),
        Action::Tick(now_ms) => on_tick(state, now_ms, &mut out),
        Action::Connected {
            daemon,
            protocol_version,
        } => {
            state.connection = Connection::Connected(daemon);
            state.retry_at = 0;
            state.protocol_mismatch = (protocol_version != runbook_protocol::PROTOCOL_VERSION)
                .then(|| {
                    format!(
                        "runbookd speaks protocol {protocol_version}, this client {}: upgrade \
                         the older one",
                        runbook_protocol::PROTOCOL_VERSION
                    )
                });
        }
        Action::Disconnected(error) => state.connection = Connection::Disconnected(error),
        Action::RetryAt(at) => state.retry_at = at,
        Action::Runbooks(list) => runbooks::listed(state, list),
        Action::Runs(runs) => state.runs = runs,
        Action::Waiting(runs) => approvals::listed(state, runs),
        Action::History { filter, result } => runs::listed(state, filter, result),
        Action::Audit { filter, result } => audit::listed(state, filter, result),
        Action::Plugins(result) => plugins::listed(state, result),
        Action::Agents(result) => agents::listed(state, result),
        Action::RunbookChanged(name) => runbooks::changed(state, &name, &mut out),
        Action::RunbookLoaded { name, result } => runbooks::loaded(state, &name, result),
        Action::Versions { name, result } => runbooks::versions(state, &name, result),
        Action::RolledBack { runbook, result } => runbooks::rolled_back(state, &runbook, result),
        Action::Validated { generation, result } => editor::validated(state, generation, result),
        Action::Saved {
            name,
            source,
            result,
        } => editor::saved(state, &name, source, result, &mut out),
        Action::SaveConflict { name, message } => editor::conflict(state, &name, &message),
        Action::RunStarted(result) => run_view::started(state, result, &mut out),
        Action::RunSnapshot(run) => run_view::snapshot(state, run),
        Action::RunFailed { run_id, error } => run_view::failed(state, &run_id, error),
        Action::RunEvent(event) => run_view::event(state, &event),
        Action::WatchStatus { run_id, status } => run_view::watch_status(state, &run_id, status),
        Action::Decided { done, result } => approvals::decided(state, done, result, &mut out),
        Action::ExternalEditDone { name, result } => {
            runbooks::external_done(state, &name, result, &mut out);
        }
    }
    out
}

/// Where the keyboard is: the top screen's context.
pub fn context(state: &State) -> Context {
    match state.screen() {
        Screen::Runbooks => Context::Runbooks,
        Screen::Runs => Context::Runs,
        Screen::Approvals => Context::Approvals,
        Screen::Detail(_) => Context::Detail,
        Screen::Editor(_) => Context::Editor,
        Screen::Launch(form) if form.purpose != crate::state::launch::Purpose::Launch => {
            Context::Confirm
        }
        Screen::Launch(_) => Context::Launch,
        Screen::Run(_) => Context::Run,
        Screen::Audit => Context::Audit,
        Screen::Plugins => Context::Plugins,
        Screen::Agents => Context::Agents,
    }
}

fn on_key(state: &mut State, key: KeyEvent, out: &mut Vec<Command>) {
    if key.kind == KeyEventKind::Release {
        return;
    }
    if state.help.is_some() {
        help_key(state, key);
        return;
    }
    if state.prompt.is_some() {
        prompt::on_key(state, key, out);
        return;
    }
    let context = context(state);
    let intent = keymap::intent(context, key);
    if intent != Some(Intent::Quit) {
        state.quit_armed = false;
    }
    // Where letters are text, a key without a binding is typing.
    let Some(intent) = intent else {
        match context {
            Context::Editor => editor::on_text_key(state, key),
            Context::Launch | Context::Confirm => {
                launch::on_text_key(state, key);
            }
            _ => {}
        }
        return;
    };
    // A launch form's text field takes its editing keys (Space, ←, →) before their bindings.
    if matches!(context, Context::Launch | Context::Confirm) && launch::on_text_key(state, key) {
        return;
    }
    if context != Context::Editor || intent != Intent::Back {
        editor::disarm_discard(state);
    }
    match intent {
        Intent::Quit => quit(state),
        Intent::Back => back(state, out),
        Intent::Help => state.help = Some(0),
        Intent::Approvals => open_approvals(state),
        Intent::AuditLog => audit::open(state, out),
        Intent::PluginList => plugins::open(state, out),
        Intent::AgentList => agents::open(state, out),
        Intent::NextTab => switch_tab(state, 1),
        Intent::PrevTab => switch_tab(state, -1),
        intent => match context {
            Context::Runbooks => runbooks::on_list(state, intent, out),
            Context::Detail => runbooks::on_detail(state, intent, out),
            Context::Editor => editor::on_intent(state, intent, out),
            Context::Launch | Context::Confirm => launch::on_intent(state, intent, out),
            Context::Run => run_view::on_intent(state, intent, out),
            Context::Approvals => approvals::on_intent(state, intent, out),
            Context::Runs => runs::on_intent(state, intent, out),
            Context::Audit => audit::on_intent(state, intent, out),
            Context::Plugins => plugins::on_intent(state, intent, out),
            Context::Agents => agents::on_intent(state, intent, out),
        },
    }
}

/// Quits, unless the editor holds unsaved changes and this is the first ask.
fn quit(state: &mut State) {
    let unsaved = state
        .stack
        .iter()
        .any(|screen| matches!(screen, Screen::Editor(editor) if editor.dirty()));
    if unsaved && !state.quit_armed {
        state.quit_armed = true;
        state.notify_error("unsaved changes in the editor: quit again to drop them, or save");
        return;
    }
    state.should_quit = true;
}

/// Esc: back a screen; the editor asks first when there are unsaved changes.
fn back(state: &mut State, out: &mut Vec<Command>) {
    if matches!(state.screen(), Screen::Runbooks) && !state.list.filter.is_empty() {
        state.list.filter.clear();
        return;
    }
    if let Screen::Editor(editor) = state.screen_mut()
        && editor.dirty()
        && !editor.confirm_discard
    {
        editor.confirm_discard = true;
        state.notify_error("unsaved changes: Esc again drops them, Ctrl-S saves");
        return;
    }
    pop(state, out);
}

/// Closes the top screen (never the last one), and stops following a run nobody shows.
pub(crate) fn pop(state: &mut State, out: &mut Vec<Command>) {
    if state.stack.len() <= 1 {
        return;
    }
    if let Some(Screen::Run(view)) = state.stack.pop() {
        let still_shown = state
            .stack
            .iter()
            .any(|s| matches!(s, Screen::Run(other) if other.run_id == view.run_id));
        if !still_shown {
            out.push(Command::Unwatch(view.run_id));
        }
    }
}

fn open_approvals(state: &mut State) {
    if !matches!(state.screen(), Screen::Approvals) {
        state.stack.push(Screen::Approvals);
    }
}

/// Tab / Shift-Tab: only between the top-level screens, so that nothing open is lost.
fn switch_tab(state: &mut State, delta: isize) {
    if state.stack.len() != 1 {
        return;
    }
    const TABS: [Screen; 3] = [Screen::Runbooks, Screen::Runs, Screen::Approvals];
    let at = TABS.iter().position(|t| t == state.screen()).unwrap_or(0) as isize;
    let next = (at + delta).rem_euclid(TABS.len() as isize) as usize;
    state.stack[0] = TABS[next].clone();
}

fn help_key(state: &mut State, key: KeyEvent) {
    let scroll = state.help.unwrap_or(0);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    state.help = match key.code {
        KeyCode::Char('c') if ctrl => {
            state.should_quit = true;
            None
        }
        KeyCode::Esc | KeyCode::Char('q' | '?') | KeyCode::F(1) => None,
        KeyCode::Up | KeyCode::Char('k') => Some(scroll.saturating_sub(1)),
        KeyCode::Down | KeyCode::Char('j') => Some(scroll.saturating_add(1)),
        KeyCode::PageUp => Some(scroll.saturating_sub(10)),
        KeyCode::PageDown => Some(scroll.saturating_add(10)),
        KeyCode::Home | KeyCode::Char('g') => Some(0),
        _ => Some(scroll),
    };
}

fn on_paste(state: &mut State, text: &str) {
    if let Some(prompt) = &mut state.prompt {
        for c in text.chars().filter(|c| !c.is_control()) {
            prompt
                .input
                .edit(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        prompt::live_filter(state);
        return;
    }
    match context(state) {
        Context::Editor => editor::paste(state, text),
        Context::Launch | Context::Confirm => launch::paste(state, text),
        _ => {}
    }
}

/// The mouse wheel scrolls whatever the screen scrolls.
fn on_scroll(state: &mut State, lines: i16) {
    if let Some(scroll) = &mut state.help {
        *scroll = scroll.saturating_add_signed(lines);
        return;
    }
    let intent = if lines < 0 { Intent::Up } else { Intent::Down };
    let mut ignored = Vec::new();
    match context(state) {
        Context::Run => run_view::scroll_log(state, lines.into()),
        Context::Editor => editor::scroll(state, lines.into()),
        Context::Launch | Context::Confirm => {}
        context => {
            for _ in 0..lines.unsigned_abs() {
                match context {
                    Context::Runbooks => runbooks::on_list(state, intent, &mut ignored),
                    Context::Detail => runbooks::on_detail(state, intent, &mut ignored),
                    Context::Approvals => approvals::on_intent(state, intent, &mut ignored),
                    Context::Runs => runs::on_intent(state, intent, &mut ignored),
                    Context::Audit => audit::on_intent(state, intent, &mut ignored),
                    Context::Plugins => plugins::on_intent(state, intent, &mut ignored),
                    Context::Agents => agents::on_intent(state, intent, &mut ignored),
                    _ => {}
                }
            }
        }
    }
}

fn on_tick(state: &mut State, now_ms: i64, out: &mut Vec<Command>) {
    state.now_ms = now_ms;
    if state.notice.as_ref().is_some_and(|n| n.until_ms <= now_ms) {
        state.notice = None;
    }
    editor::tick(state, out);
    agents::tick(state, out);
}

/// Moves `selected` within `len` rows by an intent; false for intents that are not moves.
pub(crate) fn move_selection(
    selected: &mut usize,
    len: usize,
    intent: Intent,
    page: usize,
) -> bool {
    let last = len.saturating_sub(1);
    *selected = match intent {
        Intent::Up => selected.saturating_sub(1),
        Intent::Down => (*selected + 1).min(last),
        Intent::PageUp => selected.saturating_sub(page.max(1)),
        Intent::PageDown => (*selected + page.max(1)).min(last),
        Intent::Top => 0,
        Intent::Bottom => last,
        _ => return false,
    };
    true
}

/// Rows a list moves on PgUp / PgDn: the screen's height less its bars and borders.
pub(crate) fn page(state: &State) -> usize {
    usize::from(state.size.1.saturating_sub(6)).max(1)
}

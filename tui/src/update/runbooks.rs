//! Keys and daemon answers of the runbook list and of one runbook's screen, and opening the
//! editor or the launch form once a runbook's detail has arrived.

use runbook_protocol::v1::{RunbookDetail, RunbookSummary, RunbookVersion};

use super::{move_selection, page};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::runbooks::step_tree;
use crate::state::{
    DetailState, EditorState, Health, LaunchForm, LineInput, PendingOpen, Prompt, PromptKind,
    Screen, State, Then,
};

/// A new list of runbooks: sorted, with the same runbook selected as before.
pub fn listed(state: &mut State, mut list: Vec<RunbookSummary>) {
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let selected = state.current_runbook().map(|r| r.name.clone());
    state.runbooks = list;
    let visible = state.list.visible(&state.runbooks);
    state.list.selected = selected
        .and_then(|name| visible.iter().position(|r| r.name == name))
        .unwrap_or_else(|| state.list.selected.min(visible.len().saturating_sub(1)));
}

/// Keys of the runbook list.
pub fn on_list(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let len = state.list.visible(&state.runbooks).len();
    let page = page(state);
    if move_selection(&mut state.list.selected, len, intent, page) {
        return;
    }
    if intent == Intent::Filter {
        state.prompt = Some(Prompt {
            kind: PromptKind::FilterRunbooks,
            input: LineInput::new(state.list.filter.clone()),
        });
        return;
    }
    let Some(runbook) = state.current_runbook().cloned() else {
        return;
    };
    match intent {
        Intent::Open => {
            state
                .stack
                .push(Screen::Detail(Box::new(DetailState::loading(
                    &runbook.name,
                ))));
            out.push(Command::LoadRunbook(runbook.name.clone()));
            out.push(Command::LoadVersions(runbook.name));
        }
        intent => act_on(state, &runbook, intent, out),
    }
}

/// Keys of one runbook's screen.
pub fn on_detail(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let Screen::Detail(detail) = state.screen_mut() else {
        return;
    };
    let steps = detail
        .detail
        .as_ref()
        .map_or(0, |d| step_tree(&d.steps).len());
    if move_selection(&mut detail.selected, steps, intent, 5) {
        return;
    }
    let name = detail.name.clone();
    let summary = detail.detail.as_ref().and_then(|d| d.summary.clone());
    let runbook = summary
        .or_else(|| state.runbooks.iter().find(|r| r.name == name).cloned())
        .unwrap_or(RunbookSummary {
            name,
            ..Default::default()
        });
    if intent == Intent::Rollback {
        return ask_rollback(state);
    }
    act_on(state, &runbook, intent, out);
}

/// `b` on a runbook's screen: asks which version to restore, the one before the current
/// one typed in.
fn ask_rollback(state: &mut State) {
    let Screen::Detail(detail) = state.screen() else {
        return;
    };
    let Some(versions) = &detail.versions else {
        return state.notify_error("its versions are still loading");
    };
    let Some(previous) = versions.len().checked_sub(2).map(|i| versions[i].number) else {
        let name = detail.name.clone();
        return state.notify_error(format!("{name} has no earlier version to roll back to"));
    };
    let runbook = detail.name.clone();
    state.prompt = Some(Prompt {
        kind: PromptKind::Rollback { runbook },
        input: LineInput::new(previous.to_string()),
    });
}

/// A rollback was answered: the file now holds the old content, which the daemon reloads
/// (and announces) like any save.
pub fn rolled_back(state: &mut State, runbook: &str, result: Result<RunbookVersion, String>) {
    match result {
        Ok(now) => state.notify(format!(
            "rolled back {runbook}: now #{} ({})",
            now.number,
            crate::format::short_hash(&now.version)
        )),
        Err(err) => state.notify_error(format!("cannot roll {runbook} back: {err}")),
    }
}

/// Edit, edit in `$EDITOR`, or launch `runbook`.
fn act_on(state: &mut State, runbook: &RunbookSummary, intent: Intent, out: &mut Vec<Command>) {
    match intent {
        Intent::Edit => request(state, &runbook.name, Then::Edit, out),
        Intent::ExternalEdit if runbook.path.is_empty() => {
            state.notify_error(format!("{} has no file to edit", runbook.name));
        }
        Intent::ExternalEdit => out.push(Command::ExternalEdit {
            name: runbook.name.clone(),
            path: runbook.path.clone(),
        }),
        Intent::Launch if Health::of(runbook) == Health::Invalid => {
            state.notify_error(format!(
                "{} has no valid version, so it cannot run: fix it first (e)",
                runbook.name
            ));
        }
        Intent::Launch => request(state, &runbook.name, Then::Launch, out),
        _ => {}
    }
}

/// Asks for a runbook's detail, to open `then` with it when it arrives.
fn request(state: &mut State, name: &str, then: Then, out: &mut Vec<Command>) {
    state.pending = Some(PendingOpen {
        runbook: name.to_owned(),
        then,
    });
    out.push(Command::LoadRunbook(name.to_owned()));
}

/// The daemon reported a change of a runbook: reload what shows it.
pub fn changed(state: &mut State, name: &str, out: &mut Vec<Command>) {
    let mut shown = false;
    let mut detail = false;
    for screen in &state.stack {
        match screen {
            Screen::Detail(d) if d.name == name => {
                shown = true;
                detail = true;
            }
            Screen::Editor(e) if e.runbook == name => shown = true,
            _ => {}
        }
    }
    if shown {
        out.push(Command::LoadRunbook(name.to_owned()));
    }
    if detail {
        out.push(Command::LoadVersions(name.to_owned()));
    }
}

/// A runbook's detail arrived: fill the screens that show it and open what was asked for.
pub fn loaded(state: &mut State, name: &str, result: Result<RunbookDetail, String>) {
    let now = state.now_ms;
    let mut notices = Vec::new();
    for screen in &mut state.stack {
        match screen {
            Screen::Detail(d) if d.name == name => match &result {
                Ok(detail) => {
                    d.detail = Some(detail.clone());
                    d.error = None;
                    let steps = step_tree(&detail.steps).len();
                    d.selected = d.selected.min(steps.saturating_sub(1));
                }
                Err(error) => d.error = Some(error.clone()),
            },
            Screen::Editor(editor) if editor.runbook == name => {
                if let Ok(detail) = &result
                    && let Some(notice) = refresh_editor(editor, detail, now)
                {
                    notices.push(notice);
                }
            }
            _ => {}
        }
    }
    for (text, error) in notices {
        if error {
            state.notify_error(text);
        } else {
            state.notify(text);
        }
    }
    let Some(pending) = state.pending.take_if(|p| p.runbook == name) else {
        return;
    };
    let detail = match result {
        Ok(detail) => detail,
        Err(error) => {
            state.notify_error(format!("cannot load {name}: {error}"));
            return;
        }
    };
    match pending.then {
        Then::Edit => {
            let mut editor = EditorState::open(&detail, now);
            editor.scroll_to_cursor(state.size);
            state.stack.push(Screen::Editor(Box::new(editor)));
        }
        Then::Launch => {
            let runnable = detail
                .summary
                .as_ref()
                .is_some_and(|s| !s.version.is_empty());
            if runnable {
                state
                    .stack
                    .push(Screen::Launch(Box::new(LaunchForm::new(&detail))));
            } else {
                state.notify_error(format!(
                    "{name} has no valid version, so it cannot run: fix it first (e)"
                ));
            }
        }
    }
}

/// Brings an open editor up to date with the file on disk: at once when it has no unsaved
/// changes (or a reload was asked for), else only with a warning. Returns the notice to show.
fn refresh_editor(
    editor: &mut EditorState,
    detail: &RunbookDetail,
    now: i64,
) -> Option<(String, bool)> {
    // Our own save makes the daemon report a change too; its answer says what was written.
    if editor.saving {
        return None;
    }
    if detail.file_hash.is_empty() || detail.file_hash == editor.base_hash {
        editor.reload_requested = false;
        return None;
    }
    if editor.dirty() && !editor.reload_requested {
        return Some((
            "the file changed on disk: Ctrl-R loads it (dropping your edits), Ctrl-S overwrites it"
                .to_owned(),
            true,
        ));
    }
    let fresh = EditorState::open(detail, now);
    editor.buffer.replace_all(&detail.file_source);
    editor.saved_text = fresh.saved_text;
    editor.base_hash = fresh.base_hash;
    editor.conflict = false;
    editor.reload_requested = false;
    editor.confirm_discard = false;
    editor.generation += 1;
    editor.validate_due = Some(now);
    Some(("reloaded the file from disk".to_owned(), false))
}

/// A runbook's versions arrived.
pub fn versions(state: &mut State, name: &str, result: Result<Vec<RunbookVersion>, String>) {
    for screen in &mut state.stack {
        if let Screen::Detail(d) = screen
            && d.name == name
        {
            match &result {
                Ok(versions) => d.versions = Some(versions.clone()),
                Err(error) => d.error = Some(error.clone()),
            }
        }
    }
}

/// `$EDITOR` exited: reload what it may have changed.
pub fn external_done(
    state: &mut State,
    name: &str,
    result: Result<(), String>,
    out: &mut Vec<Command>,
) {
    match result {
        Ok(()) => {
            state.notify(format!("back from the editor; reloading {name}"));
            out.push(Command::Refresh);
            changed(state, name, out);
        }
        Err(error) => state.notify_error(error),
    }
}

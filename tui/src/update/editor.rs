//! Keys of the editor, its validate-as-you-type debounce, and the daemon's answers to its
//! validations and saves.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use runbook_protocol::v1::{SaveRunbookResponse, ValidateRunbookResponse};

use crate::command::Command;
use crate::format;
use crate::keymap::Intent;
use crate::state::editor::{VALIDATE_AFTER_MS, Validity};
use crate::state::{EditorState, LineInput, Prompt, PromptKind, Screen, State};

/// The editor on top, if it is on top.
fn top(state: &mut State) -> Option<&mut EditorState> {
    match state.screen_mut() {
        Screen::Editor(editor) => Some(editor),
        _ => None,
    }
}

/// Any key other than a second Esc keeps the unsaved changes.
pub fn disarm_discard(state: &mut State) {
    if let Some(editor) = top(state) {
        editor.confirm_discard = false;
    }
}

/// The text changed: validate it once typing pauses.
fn edited(editor: &mut EditorState, now_ms: i64) {
    editor.generation += 1;
    editor.validate_due = Some(now_ms + VALIDATE_AFTER_MS);
    editor.confirm_discard = false;
}

/// A key that edits or moves (letters are text here).
pub fn on_text_key(state: &mut State, key: KeyEvent) {
    let (now, size) = (state.now_ms, state.size);
    let page = usize::from(state.size.1.saturating_sub(6)).max(1);
    let Some(editor) = top(state) else {
        return;
    };
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let buffer = &mut editor.buffer;
    let mut changed = true;
    match key.code {
        KeyCode::Char(c) if !ctrl && !alt => buffer.insert_char(c),
        KeyCode::Enter => buffer.newline(),
        KeyCode::Tab => buffer.indent(),
        KeyCode::Backspace => buffer.backspace(),
        KeyCode::Delete => buffer.delete(),
        code => {
            changed = false;
            match code {
                KeyCode::Left if ctrl => buffer.word_left(),
                KeyCode::Right if ctrl => buffer.word_right(),
                KeyCode::Home if ctrl => buffer.top(),
                KeyCode::End if ctrl => buffer.bottom(),
                KeyCode::Left => buffer.left(),
                KeyCode::Right => buffer.right(),
                KeyCode::Up => buffer.up(1),
                KeyCode::Down => buffer.down(1),
                KeyCode::Home => buffer.home(),
                KeyCode::End => buffer.end(),
                KeyCode::PageUp => buffer.up(page),
                KeyCode::PageDown => buffer.down(page),
                _ => return,
            }
        }
    }
    // Moving is not editing, but any key means the user wants to keep their changes.
    editor.confirm_discard = false;
    if changed {
        edited(editor, now);
    }
    editor.scroll_to_cursor(size);
}

/// Pasted text is inserted whole, as one undo step.
pub fn paste(state: &mut State, text: &str) {
    let (now, size) = (state.now_ms, state.size);
    if let Some(editor) = top(state) {
        editor.buffer.insert_str(text);
        edited(editor, now);
        editor.scroll_to_cursor(size);
    }
}

/// The mouse wheel scrolls the view; the cursor stays where it is unless it would leave it.
pub fn scroll(state: &mut State, lines: isize) {
    let size = state.size;
    let Some(editor) = top(state) else {
        return;
    };
    let last = editor.buffer.lines().len().saturating_sub(1);
    editor.scroll_top = editor.scroll_top.saturating_add_signed(lines).min(last);
    let rows = usize::from(editor.layout(size).text_rows);
    let cursor = editor.buffer.cursor();
    let row = cursor
        .row
        .clamp(editor.scroll_top, editor.scroll_top + rows - 1);
    if row != cursor.row {
        editor
            .buffer
            .set_cursor(crate::editor::Pos::new(row, cursor.col));
    }
}

/// The editor's commands.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let (now, size) = (state.now_ms, state.size);
    let Some(editor) = top(state) else {
        return;
    };
    match intent {
        Intent::Save if editor.saving => {}
        Intent::Save => {
            editor.saving = true;
            out.push(Command::Save {
                runbook: editor.runbook.clone(),
                source: editor.buffer.text(),
                // After a refused save the user chose to overwrite what is on disk.
                base_hash: if editor.conflict {
                    String::new()
                } else {
                    editor.base_hash.clone()
                },
            });
        }
        Intent::Undo | Intent::Redo => {
            let done = if intent == Intent::Undo {
                editor.buffer.undo()
            } else {
                editor.buffer.redo()
            };
            if done {
                edited(editor, now);
                editor.scroll_to_cursor(size);
            }
        }
        Intent::Search => {
            let last = editor.search.clone().unwrap_or_default();
            state.prompt = Some(Prompt {
                kind: PromptKind::SearchEditor,
                input: LineInput::new(last),
            });
        }
        Intent::NextMatch | Intent::PrevMatch => {
            let forward = intent == Intent::NextMatch;
            let found = find(editor, forward);
            if !found {
                state.notify_error("no match");
            }
        }
        Intent::Reload => {
            editor.reload_requested = true;
            out.push(Command::LoadRunbook(editor.runbook.clone()));
        }
        _ => {}
    }
}

/// Moves the cursor to the next (or previous) match of the editor's search; false when
/// there is none.
pub fn find(editor: &mut EditorState, forward: bool) -> bool {
    let Some(query) = editor.search.clone() else {
        return false;
    };
    let from = editor.buffer.cursor();
    let found = if forward {
        editor.buffer.find_forward(&query, from)
    } else {
        editor.buffer.find_backward(&query, from)
    };
    match found {
        Some(pos) => {
            editor.buffer.set_cursor(pos);
            true
        }
        None => false,
    }
}

/// A search was typed: jump to its first match after the cursor.
pub fn search(state: &mut State, query: String) {
    let size = state.size;
    let Some(editor) = top(state) else {
        return;
    };
    if query.is_empty() {
        editor.search = None;
        return;
    }
    editor.search = Some(query.clone());
    match editor.buffer.find_from(&query, editor.buffer.cursor()) {
        Some(pos) => {
            editor.buffer.set_cursor(pos);
            editor.scroll_to_cursor(size);
        }
        None => state.notify_error(format!("no match for `{query}`")),
    }
}

/// Sends the text for validation once typing has paused long enough.
pub fn tick(state: &mut State, out: &mut Vec<Command>) {
    let now = state.now_ms;
    for screen in &mut state.stack {
        let Screen::Editor(editor) = screen else {
            continue;
        };
        if editor.validate_due.is_some_and(|due| due <= now) {
            editor.validate_due = None;
            editor.validity = Validity::Checking;
            out.push(Command::Validate {
                generation: editor.generation,
                path: editor.path.clone(),
                source: editor.buffer.text(),
            });
        }
    }
}

/// The daemon's verdict on the text of `generation`; a verdict on an older text is dropped,
/// since the diagnostics would point at lines that moved.
pub fn validated(
    state: &mut State,
    generation: u64,
    result: Result<ValidateRunbookResponse, String>,
) {
    for screen in &mut state.stack {
        let Screen::Editor(editor) = screen else {
            continue;
        };
        if editor.generation != generation || editor.validate_due.is_some() {
            continue;
        }
        match &result {
            Ok(verdict) => {
                editor.diagnostics = verdict.diagnostics.clone();
                editor.validity = if verdict.valid {
                    Validity::Valid
                } else {
                    Validity::Invalid
                };
            }
            Err(error) => editor.validity = Validity::Failed(error.clone()),
        }
    }
}

/// A save finished.
pub fn saved(
    state: &mut State,
    name: &str,
    source: String,
    result: Result<SaveRunbookResponse, String>,
    out: &mut Vec<Command>,
) {
    let mut notice = None;
    for screen in &mut state.stack {
        let Screen::Editor(editor) = screen else {
            continue;
        };
        if editor.runbook != name {
            continue;
        }
        editor.saving = false;
        match &result {
            Ok(response) => {
                editor.base_hash = response.file_hash.clone();
                editor.saved_text = source.clone();
                editor.conflict = false;
                editor.confirm_discard = false;
                if editor.buffer.text() == source {
                    editor.diagnostics = response.diagnostics.clone();
                    editor.validity = if response.valid {
                        Validity::Valid
                    } else {
                        Validity::Invalid
                    };
                }
                notice = Some(save_message(response));
            }
            Err(error) => notice = Some((format!("not saved: {error}"), true)),
        }
    }
    if result.is_ok() {
        out.push(Command::Refresh);
        out.push(Command::LoadVersions(name.to_owned()));
    }
    match notice {
        Some((text, true)) => state.notify_error(text),
        Some((text, false)) => state.notify(text),
        None => {}
    }
}

fn save_message(response: &SaveRunbookResponse) -> (String, bool) {
    if !response.valid {
        let count = response.diagnostics.len();
        return (
            format!(
                "saved, but invalid ({count} problem{}): runs keep the last good version",
                if count == 1 { "" } else { "s" }
            ),
            true,
        );
    }
    match &response.version {
        Some(version) => (
            format!(
                "saved: version {} ({}) is now current",
                version.number,
                format::short_hash(&version.version)
            ),
            false,
        ),
        None => (
            "saved (same content as the current version)".to_owned(),
            false,
        ),
    }
}

/// A save was refused because the file changed on disk since it was loaded.
pub fn conflict(state: &mut State, name: &str, message: &str) {
    for screen in &mut state.stack {
        if let Screen::Editor(editor) = screen
            && editor.runbook == name
        {
            editor.saving = false;
            editor.conflict = true;
        }
    }
    state.notify_error(format!(
        "not saved (Ctrl-S overwrites, Ctrl-R reloads): {message}"
    ));
}

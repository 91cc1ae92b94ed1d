//! Keys of the one-line prompt (filter, search, deny reason, yes/no): it has the keyboard
//! until Enter or Esc.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{editor, run_view};
use runbook_protocol::v1::ResolveAction;

use crate::command::Command;
use crate::state::{PromptKind, State};

/// A key while a prompt is open.
pub fn on_key(state: &mut State, key: KeyEvent, out: &mut Vec<Command>) {
    let Some(prompt) = &mut state.prompt else {
        return;
    };
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        state.should_quit = true;
        return;
    }
    let confirmed = match &prompt.kind {
        PromptKind::ConfirmCancel { run_id } => Some(Command::Cancel(run_id.clone())),
        PromptKind::ConfirmRetry { run_id } => Some(Command::Retry(run_id.clone())),
        _ => None,
    };
    if let PromptKind::Resolve { run_id, step_id } = &prompt.kind {
        let action = match key.code {
            KeyCode::Char('r' | 'R') => Some(ResolveAction::Retry),
            KeyCode::Char('s' | 'S') => Some(ResolveAction::Skip),
            KeyCode::Char('f' | 'F') => Some(ResolveAction::Fail),
            KeyCode::Esc | KeyCode::Enter => {
                state.prompt = None;
                return;
            }
            _ => None,
        };
        if let Some(action) = action {
            out.push(Command::Resolve {
                run_id: run_id.clone(),
                step_id: step_id.clone(),
                action,
            });
            state.prompt = None;
        }
        return;
    }
    if let Some(command) = confirmed {
        match key.code {
            KeyCode::Char('y' | 'Y') => {
                out.push(command);
                state.prompt = None;
            }
            KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Enter => state.prompt = None,
            _ => {}
        }
        return;
    }
    match key.code {
        KeyCode::Esc => {
            if prompt.kind == PromptKind::FilterRunbooks {
                state.list.filter.clear();
            }
            state.prompt = None;
        }
        KeyCode::Enter => {
            let Some(prompt) = state.prompt.take() else {
                return;
            };
            let text = prompt.input.text().trim().to_owned();
            if text.is_empty() && matches!(prompt.kind, PromptKind::Rollback { .. }) {
                state.prompt = Some(prompt);
                state.notify_error("type the version to restore (a number from the list), or Esc");
                return;
            }
            if text.is_empty() && matches!(prompt.kind, PromptKind::Deny { .. }) {
                // The reason is what the run's record and its author will see: insist.
                state.prompt = Some(prompt);
                state.notify_error("type why the step is denied, or Esc to keep it waiting");
                return;
            }
            match prompt.kind {
                // Applied while typing; Enter only closes the prompt.
                PromptKind::FilterRunbooks => {}
                PromptKind::SearchLog => run_view::search(state, text),
                PromptKind::SearchEditor => editor::search(state, text),
                PromptKind::Deny { run_id, step_id } => out.push(Command::Deny {
                    run_id,
                    step_id,
                    reason: text,
                }),
                PromptKind::Rollback { runbook } => out.push(Command::Rollback {
                    runbook,
                    version: text,
                }),
                PromptKind::ConfirmCancel { .. }
                | PromptKind::ConfirmRetry { .. }
                | PromptKind::Resolve { .. } => {}
            }
        }
        _ => {
            prompt.input.edit(key);
            live_filter(state);
        }
    }
}

/// The runbook filter follows what is typed, so the list narrows as you type.
pub fn live_filter(state: &mut State) {
    if let Some(prompt) = &state.prompt
        && prompt.kind == PromptKind::FilterRunbooks
        && state.list.filter != prompt.input.text()
    {
        state.list.filter = prompt.input.text().to_owned();
        state.list.selected = 0;
    }
}

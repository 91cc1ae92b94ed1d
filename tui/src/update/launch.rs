//! Keys of the launch form: typing values, choosing among allowed ones, starting the run (or
//! confirming an instruction step done).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::command::Command;
use crate::keymap::Intent;
use crate::state::launch::Purpose;
use crate::state::{LaunchForm, Screen, State};

fn top(state: &mut State) -> Option<&mut LaunchForm> {
    match state.screen_mut() {
        Screen::Launch(form) => Some(form),
        _ => None,
    }
}

/// A key typed into the focused field, if it is a free-text field; true when it edited it.
pub fn on_text_key(state: &mut State, key: KeyEvent) -> bool {
    let Some(field) = top(state).and_then(LaunchForm::focused) else {
        return false;
    };
    if field.is_choice() || !field.input.edit(key) {
        return false;
    }
    field.error = None;
    true
}

/// Pasted text goes into the focused free-text field, on one line.
pub fn paste(state: &mut State, text: &str) {
    if let Some(field) = top(state).and_then(LaunchForm::focused)
        && !field.is_choice()
    {
        for c in text.chars().filter(|c| !c.is_control()) {
            field
                .input
                .edit(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        field.error = None;
    }
}

/// The form's commands.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let Some(form) = top(state) else {
        return;
    };
    let count = form.fields.len().max(1);
    match intent {
        Intent::NextField => form.focus = (form.focus + 1) % count,
        Intent::PrevField => form.focus = (form.focus + count - 1) % count,
        Intent::ChoiceLeft | Intent::ChoiceRight => {
            let delta = if intent == Intent::ChoiceLeft { -1 } else { 1 };
            if let Some(field) = form.focused() {
                field.cycle(delta);
                field.error = None;
            }
        }
        Intent::ToggleDryRun if form.purpose == Purpose::Launch => form.dry_run = !form.dry_run,
        Intent::Submit if form.starting => {}
        Intent::Submit => {
            if let Some(values) = form.submit() {
                form.starting = true;
                form.error = None;
                out.push(match &form.purpose {
                    Purpose::Launch => Command::StartRun {
                        runbook: form.runbook.clone(),
                        params: values,
                        dry_run: form.dry_run,
                        part: form.part(),
                    },
                    Purpose::Confirm {
                        run_id, step_id, ..
                    } => Command::Confirm {
                        run_id: run_id.clone(),
                        step_id: step_id.clone(),
                        inputs: values,
                    },
                });
            }
        }
        _ => {}
    }
}

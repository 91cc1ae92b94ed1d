//! Keys of the plugins screen and the daemon's answer to its listing. The screen asks when it
//! opens and when the operator reloads it (after a `runbook plugin grant`, say).

use runbook_protocol::v1::Plugin;

use super::{move_selection, page};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::{Screen, State};

/// Opens the plugins screen on top of whatever is open (once), and asks for the listing.
pub fn open(state: &mut State, out: &mut Vec<Command>) {
    if !matches!(state.screen(), Screen::Plugins) {
        state.stack.push(Screen::Plugins);
    }
    state.plugins.error = None;
    out.push(Command::LoadPlugins);
}

/// The listing arrived, or why it could not be read.
pub fn listed(state: &mut State, result: Result<Vec<Plugin>, String>) {
    let view = &mut state.plugins;
    match result {
        Ok(plugins) => {
            view.selected = view.selected.min(plugins.len().saturating_sub(1));
            view.plugins = Some(plugins);
            view.error = None;
        }
        Err(error) => view.error = Some(error),
    }
}

/// The screen's keys.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let page = page(state);
    let view = &mut state.plugins;
    let len = view.plugins.as_ref().map_or(0, Vec::len);
    if move_selection(&mut view.selected, len, intent, page) {
        return;
    }
    if intent == Intent::Reload {
        out.push(Command::LoadPlugins);
    }
}

//! Keys of the agents screen, the daemon's answer to its listing, and the listing's refresh:
//! asked for when the screen opens, on `r`, and again at the lists' poll period while the
//! screen is on top, since heartbeats age and agents come and go by the second.

use runbook_protocol::v1::ListAgentsResponse;

use super::{move_selection, page};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::{Connection, Screen, State};

/// How long after one listing was asked for the screen asks for the next: the period at
/// which the other lists are polled, so that the screen ages no slower than the rest.
fn refresh_ms() -> i64 {
    i64::try_from(crate::client::POLL_EVERY.as_millis()).unwrap_or(i64::MAX)
}

/// Opens the agents screen on top of whatever is open (once), and asks for the listing.
pub fn open(state: &mut State, out: &mut Vec<Command>) {
    if !matches!(state.screen(), Screen::Agents) {
        state.stack.push(Screen::Agents);
    }
    state.agents.error = None;
    ask(state, out);
}

/// The listing arrived, or why it could not be read.
pub fn listed(state: &mut State, result: Result<ListAgentsResponse, String>) {
    let view = &mut state.agents;
    view.pending = false;
    match result {
        Ok(listing) => {
            view.selected = view.selected.min(listing.agents.len().saturating_sub(1));
            view.listing = Some(listing);
            view.error = None;
        }
        Err(error) => view.error = Some(error),
    }
}

/// The screen's keys.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let page = page(state);
    let view = &mut state.agents;
    let len = view.agents().len();
    if move_selection(&mut view.selected, len, intent, page) {
        return;
    }
    if intent == Intent::Reload {
        ask(state, out);
    }
}

/// Time passed: asks again once the last answer is in and a poll period has gone by, while
/// the screen is on top and the daemon answers. A daemon out of reach is left to the poller,
/// which backs off; the screen resumes when it is back.
pub fn tick(state: &mut State, out: &mut Vec<Command>) {
    let view = &state.agents;
    let due = !view.pending && state.now_ms.saturating_sub(view.asked_ms) >= refresh_ms();
    if due
        && matches!(state.screen(), Screen::Agents)
        && matches!(state.connection, Connection::Connected(_))
    {
        ask(state, out);
    }
}

fn ask(state: &mut State, out: &mut Vec<Command>) {
    state.agents.pending = true;
    state.agents.asked_ms = state.now_ms;
    out.push(Command::LoadAgents);
}

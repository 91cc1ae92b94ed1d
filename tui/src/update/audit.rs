//! Keys of the audit log screen and the daemon's answers to its listing. The screen asks
//! when it opens, when its filter changes and when the operator reloads it: an audit log is
//! read to answer a question, not watched.

use runbook_protocol::v1::AuditLogEntry;

use super::{move_selection, page};
use crate::command::Command;
use crate::keymap::Intent;
use crate::state::{AuditFilter, Screen, State};

/// Opens the audit log on top of whatever is open (once), and asks for its entries.
pub fn open(state: &mut State, out: &mut Vec<Command>) {
    if !matches!(state.screen(), Screen::Audit) {
        state.stack.push(Screen::Audit);
    }
    state.audit.error = None;
    out.push(Command::LoadAudit(state.audit.filter.clone()));
}

/// The entries for `filter` arrived (oldest first); an answer for a filter no longer shown is
/// dropped. Shown newest first, as an operator reads a log after the fact.
pub fn listed(state: &mut State, filter: AuditFilter, result: Result<Vec<AuditLogEntry>, String>) {
    let audit = &mut state.audit;
    if filter != audit.filter {
        return;
    }
    match result {
        Ok(mut entries) => {
            entries.reverse();
            audit.selected = audit.selected.min(entries.len().saturating_sub(1));
            audit.entries = Some(entries);
            audit.error = None;
        }
        Err(error) => audit.error = Some(error),
    }
}

/// The screen's keys.
pub fn on_intent(state: &mut State, intent: Intent, out: &mut Vec<Command>) {
    let page = page(state);
    let audit = &mut state.audit;
    let len = audit.entries.as_ref().map_or(0, Vec::len);
    if move_selection(&mut audit.selected, len, intent, page) {
        return;
    }
    let filter = match intent {
        Intent::StatusFilter => AuditFilter {
            action: audit.filter.next_action(),
        },
        Intent::ClearFilters => AuditFilter::default(),
        Intent::Reload => {
            out.push(Command::LoadAudit(audit.filter.clone()));
            return;
        }
        _ => return,
    };
    if filter != audit.filter {
        audit.filter = filter.clone();
        audit.entries = None;
        audit.selected = 0;
        audit.error = None;
        out.push(Command::LoadAudit(filter));
    }
}

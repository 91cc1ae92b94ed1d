//! The audit log screen: which entries it asks the daemon for (an action filter) and what it
//! got. Read-only: the log is the daemon's, and nothing here changes it.

use runbook_protocol::v1::AuditLogEntry;

/// The actions the filter cycles through, after "any": the daemon's audited actions.
pub const ACTION_CYCLE: [&str; 25] = [
    "start",
    "approve",
    "confirm",
    "deny",
    "resolve",
    "cancel",
    "pause",
    "resume",
    "retry",
    "complete",
    "save",
    "rollback",
    "reload",
    "secret_set",
    "secret_rm",
    "plugin_load",
    "plugin_unload",
    "plugin_install",
    "plugin_rm",
    "plugin_grant",
    "plugin_revoke",
    "prune",
    "prune_dry_run",
    "shutdown",
    "connect",
];

/// Entries the screen asks for: the newest this many (the daemon's largest page).
pub const AUDIT_ENTRIES: u32 = 1000;

/// Which entries the screen shows; the daemon does the filtering (`ListAudit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AuditFilter {
    /// Only entries of this action.
    pub action: Option<String>,
}

impl AuditFilter {
    /// The next action filter: any, then each of [`ACTION_CYCLE`], then any again.
    pub fn next_action(&self) -> Option<String> {
        let next = match &self.action {
            None => ACTION_CYCLE.first(),
            Some(action) => ACTION_CYCLE
                .iter()
                .position(|known| known == action)
                .and_then(|at| ACTION_CYCLE.get(at + 1)),
        };
        next.map(|action| (*action).to_owned())
    }

    /// `action: approve`, for the screen's title.
    pub fn describe(&self) -> String {
        format!("action: {}", self.action.as_deref().unwrap_or("any"))
    }
}

/// The audit log screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditLog {
    /// What is asked for.
    pub filter: AuditFilter,
    /// The matching entries, newest first, once the daemon answered.
    pub entries: Option<Vec<AuditLogEntry>>,
    /// The selected row.
    pub selected: usize,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_filter_cycles_through_every_action_back_to_any() {
        let mut filter = AuditFilter::default();
        let mut seen = Vec::new();
        loop {
            filter.action = filter.next_action();
            match &filter.action {
                Some(action) => seen.push(action.clone()),
                None => break,
            }
        }
        assert_eq!(seen, ACTION_CYCLE);
        assert_eq!(filter.describe(), "action: any");
    }
}

//! The agents screen: the remote agents the daemon knows on NATS as it last listed them, and
//! the pacing of the listing, which is asked for again while the screen is open because a
//! heartbeat's age and an agent's health change by the second.

use runbook_protocol::v1::ListAgentsResponse;

/// The agents screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentsView {
    /// The daemon's last answer: its agents by name, and whether it has `[cluster]` at all.
    pub listing: Option<ListAgentsResponse>,
    /// The selected row.
    pub selected: usize,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
    /// A listing was asked for and has not come back: the automatic refresh waits for it, so
    /// that a slow daemon is not asked again before it answered.
    pub pending: bool,
    /// When the last listing was asked for (Unix ms), to pace the automatic refresh.
    pub asked_ms: i64,
}

impl AgentsView {
    /// The agents listed, none before the first answer.
    pub fn agents(&self) -> &[runbook_protocol::v1::Agent] {
        self.listing.as_ref().map_or(&[], |listing| &listing.agents)
    }
}

//! The runs history screen: which runs it asks the daemon for (filters) and what it got.

use runbook_protocol::v1::{Run, RunStatus};

/// The statuses the status filter cycles through, after "any".
pub const STATUS_CYCLE: [RunStatus; 8] = [
    RunStatus::Running,
    RunStatus::Waiting,
    RunStatus::Failed,
    RunStatus::Completed,
    RunStatus::Cancelled,
    RunStatus::TimedOut,
    RunStatus::Pending,
    RunStatus::Paused,
];

/// Which runs the history shows; the daemon does the filtering (`ListRuns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RunsFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this runbook.
    pub runbook: Option<String>,
}

impl RunsFilter {
    /// The next status filter: any, then each of [`STATUS_CYCLE`], then any again.
    pub fn next_status(&self) -> Option<RunStatus> {
        match self.status {
            None => Some(STATUS_CYCLE[0]),
            Some(status) => {
                let at = STATUS_CYCLE.iter().position(|s| *s == status);
                at.and_then(|i| STATUS_CYCLE.get(i + 1)).copied()
            }
        }
    }

    /// The next runbook filter among `names` (sorted): any, then each name, then any again.
    pub fn next_runbook(&self, names: &[&str]) -> Option<String> {
        match &self.runbook {
            None => names.first().map(|n| (*n).to_owned()),
            Some(current) => {
                let at = names.iter().position(|n| n == current);
                at.and_then(|i| names.get(i + 1)).map(|n| (*n).to_owned())
            }
        }
    }

    /// `status: failed · runbook: any`, for the screen's title.
    pub fn describe(&self) -> String {
        format!(
            "status: {} · runbook: {}",
            self.status.map_or("any", RunStatus::label),
            self.runbook.as_deref().unwrap_or("any")
        )
    }
}

/// The history screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// What is asked for.
    pub filter: RunsFilter,
    /// The runs matching the filter, newest first, once the daemon answered.
    pub runs: Option<Vec<Run>>,
    /// The selected row.
    pub selected: usize,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cycle_back_to_any() {
        let mut filter = RunsFilter::default();
        let mut seen = Vec::new();
        loop {
            filter.status = filter.next_status();
            match filter.status {
                Some(status) => seen.push(status),
                None => break,
            }
        }
        assert_eq!(seen, STATUS_CYCLE);
        let names = ["a", "b"];
        filter.runbook = filter.next_runbook(&names);
        assert_eq!(filter.runbook.as_deref(), Some("a"));
        filter.runbook = filter.next_runbook(&names);
        filter.runbook = filter.next_runbook(&names);
        assert_eq!(filter.runbook, None);
        assert_eq!(filter.describe(), "status: any · runbook: any");
    }
}

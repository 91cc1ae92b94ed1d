//! What `update` asks the outside world to do, as data: [`Command`]s are carried out by
//! background tasks (see `client`) that report back with Actions, so that `update` stays pure
//! and the UI loop never waits for the daemon.

use std::collections::BTreeMap;

use crate::state::{AuditFilter, RunsFilter};

/// One effect to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Fetch a runbook's detail (`GetRunbook`).
    LoadRunbook(String),
    /// Fetch a runbook's versions (`ListVersions`).
    LoadVersions(String),
    /// Validate editor text (`ValidateRunbook`).
    Validate {
        /// The editor generation, echoed back so that stale answers can be dropped.
        generation: u64,
        /// The file's path, shown in diagnostics.
        path: String,
        /// The text.
        source: String,
    },
    /// Save editor text (`SaveRunbook`).
    Save {
        /// The runbook.
        runbook: String,
        /// The text.
        source: String,
        /// The file's hash when it was loaded; empty overwrites.
        base_hash: String,
    },
    /// Start a run (`StartRun`).
    StartRun {
        /// The runbook.
        runbook: String,
        /// Raw param values by name.
        params: BTreeMap<String, String>,
        /// Plan every step and run nothing.
        dry_run: bool,
        /// Which steps to run; all of them by default.
        part: RunPart,
    },
    /// Follow a run: a snapshot, then its events, reconnecting as needed.
    Watch(String),
    /// Stop following a run.
    Unwatch(String),
    /// Approve a step.
    Approve {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
    },
    /// Confirm an instruction step done.
    Confirm {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
        /// The values it asks for, raw.
        inputs: BTreeMap<String, String>,
    },
    /// Deny a step.
    Deny {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
        /// Why.
        reason: String,
    },
    /// Cancel a run.
    Cancel(String),
    /// Retry an ended run in place (`RetryRun`, without `from` or `latest`).
    Retry(String),
    /// Make version `version` (a number or hash) of `runbook` current again (`Rollback`).
    Rollback {
        /// The runbook.
        runbook: String,
        /// The version to restore, as typed.
        version: String,
    },
    /// Decide what happens to an ambiguous step.
    Resolve {
        /// The run.
        run_id: String,
        /// The step.
        step_id: String,
        /// Retry, skip or fail.
        action: runbook_protocol::v1::ResolveAction,
    },
    /// Pause a run (`pause`) or resume a paused one.
    Pause {
        /// The run.
        run_id: String,
        /// True to pause, false to resume.
        pause: bool,
    },
    /// List the runs history with this filter from now on.
    SetRunsFilter(RunsFilter),
    /// Fetch the audit log's newest entries with this filter (`ListAudit`).
    LoadAudit(AuditFilter),
    /// List the daemon's plugins.
    LoadPlugins,
    /// List the daemon's remote agents (`ListAgents`).
    LoadAgents,
    /// Refresh the lists now rather than at the next poll.
    Refresh,
    /// Suspend the TUI and run `$EDITOR` on a runbook's file.
    ExternalEdit {
        /// The runbook.
        name: String,
        /// Its file.
        path: String,
    },
}

/// Part of a runbook to run, as `run --only/--from/--to` select it; empty runs all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunPart {
    /// Only these steps.
    pub only: Vec<String>,
    /// This step and the steps downstream of it.
    pub from: String,
    /// This step and the steps it needs.
    pub to: String,
}

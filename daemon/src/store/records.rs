//! The durable records: runs with their steps, events, approvals and runbook versions. They
//! are serialized as JSON inside sled.

use serde::{Deserialize, Serialize};

/// The state of a run (design section 6).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Waiting,
    Paused,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunStatus {
    /// Whether the run will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }
}

/// The state of a step within a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Waiting,
    Paused,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Skipped,
    /// It started, and a crash left its result unknown: the operator decides.
    Ambiguous,
}

impl StepStatus {
    /// Whether the step will not run again unless an operator says so.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Skipped
        )
    }

    /// Whether the step ended without doing its job.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled | Self::TimedOut)
    }
}

/// One run of one pinned runbook version. Serialized, it is the run's header: its steps are
/// stored one record each, and their outputs in a tree of their own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub runbook: String,
    /// Content hash of the runbook version the run is pinned to.
    pub version: String,
    pub status: RunStatus,
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    pub steps: Vec<StepRecord>,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub error: Option<String>,
    /// A dry run asks every step's plugin for its plan and records it as the step's output;
    /// nothing is executed and nothing waits for approval.
    #[serde(default)]
    pub dry_run: bool,
    /// Every time an operator took the ended run back to running, oldest first (at most
    /// [`MAX_RUN_RETRIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<RunRetry>,
}

/// How many times one run may be retried in place: its history of retries stays small, and a
/// run retried this often is better started afresh.
pub const MAX_RUN_RETRIES: usize = 100;

/// One operator's retry of an ended run: who, when, from where, and what it reopened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRetry {
    pub by: String,
    pub at: i64,
    /// How the run had ended.
    pub ended: RunStatus,
    /// The step `--from` named, whose downstream steps ran again too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version the run was pinned to before, when the retry moved it to the runbook's
    /// current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// The steps made pending again, in runbook order.
    pub steps: Vec<String>,
}

impl RunRecord {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|step| step.id == id)
    }

    /// The step with this id, mutably.
    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|step| step.id == id)
    }
}

/// A step's state within a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub id: String,
    pub uses: String,
    pub status: StepStatus,
    /// Attempts started so far; the current one when running.
    pub attempts: u32,
    /// The output of the newest attempt; stored apart, keyed by run, step and attempt.
    #[serde(skip)]
    pub output: Option<serde_json::Value>,
    /// Size of the stored output's JSON, when read from the store (0 otherwise).
    #[serde(skip)]
    pub output_bytes: u64,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: i64,
    pub approval: Option<ApprovalRecord>,
    /// Skipped because a step it needs did not complete (as opposed to its `if` being false).
    #[serde(default)]
    pub upstream_failed: bool,
    /// When a failed step waits to be tried again: not before this time (Unix ms), else 0.
    #[serde(default)]
    pub retry_at: i64,
    /// Every finished attempt, oldest first.
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// Bytes of output lines left out of the stored log because an attempt printed more than
    /// the daemon's output budget (its start and end are kept).
    #[serde(default)]
    pub log_omitted_bytes: u64,
    /// Set while the step waits for an async invocation to finish.
    #[serde(default)]
    pub wait: Option<AsyncWait>,
    /// The attempt whose idempotency key the step's next attempt sends again: set when an
    /// attempt was interrupted by a daemon stop (the far side may have seen its key), cleared
    /// when an attempt ends or an operator decides to retry, so a new key only comes with a
    /// new decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_of_attempt: Option<u32>,
    /// The process groups the running attempt started, so that recovery after a crash can
    /// kill what is left of them before anything runs the step again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub process_groups: Vec<ProcessGroup>,
    /// The dispatches to remote agents the running attempt made, so that recovery after a
    /// crash can withdraw them before anything runs the step again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dispatches: Vec<DispatchRecord>,
    /// Set while the running attempt waits for a rate-limit permit of its target, before its
    /// call; cleared when an attempt starts or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_wait: Option<PermitWait>,
    /// Attempts made before an operator last retried the run: the step's retry policy counts
    /// only the attempts after it, so a retried step has its whole budget again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_before_retry: u32,
    /// Left out of a run of part of its runbook (`--only`, `--from`, `--to`): skipped, and
    /// not run again by a retry of the run unless the retry names it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unselected: bool,
    /// A loop step's instances, one per item, in item order; empty for other steps and
    /// until the loop's items are known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceRecord>,
}

/// One instance of a loop step: its item and how its newest run went. Its output is stored
/// apart, keyed by run, step, the step attempt it ran in, and its index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceRecord {
    pub item: serde_json::Value,
    pub status: StepStatus,
    /// Times it was run; each counts as a step execution of the run.
    pub attempts: u32,
    /// The step attempt its newest run belonged to (0 before it ran).
    pub step_attempt: u32,
    /// The attempt number its newest run's idempotency key carries (`RUN:id[i]:N`).
    #[serde(default)]
    pub key_attempt: u32,
    /// Set when a daemon stop interrupted its run: the next run sends the same key (the far
    /// side may have seen it); cleared when it runs again or an operator decides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_key: bool,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: i64,
    /// The newest run's output, while the engine has it in hand (never serialized here).
    #[serde(skip)]
    pub output: Option<serde_json::Value>,
}

impl InstanceRecord {
    /// An instance that has not run.
    pub fn pending(item: serde_json::Value) -> Self {
        Self {
            item,
            status: StepStatus::Pending,
            attempts: 0,
            step_attempt: 0,
            key_attempt: 0,
            reuse_key: false,
            error: None,
            started_at: 0,
            finished_at: 0,
            output: None,
        }
    }
}

/// A step held before its call until its target's rate limit gives it a permit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PermitWait {
    /// The target's name.
    pub target: String,
    /// The limit as the runbook writes it (`50/s`).
    pub limit: String,
    /// When the permit is due (Unix ms).
    pub until: i64,
}

/// A process group a step's attempt started: its id and its leader's start time (clock
/// ticks since boot), which tells it apart from a later group that got the same id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessGroup {
    pub pgid: u32,
    pub started: u64,
    /// The kernel's boot id when it started: after a reboot the group is gone, and its id
    /// and start time may match someone else's.
    #[serde(default)]
    pub boot_id: String,
}

/// A call dispatched to a remote agent: its id and its place in the dispatch queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DispatchRecord {
    pub id: String,
    pub sequence: u64,
}

/// A step waiting for work it started elsewhere (an HTTP 202): what its plugin needs to look
/// again, kept durable so that the wait survives a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AsyncWait {
    /// The plugin's own token for `resume`.
    pub token: String,
    /// The far side's id for the work, when it gave one.
    pub invocation_id: Option<String>,
    /// When to look next (Unix ms).
    pub resume_at: i64,
    /// When the wait times out (Unix ms); 0 for never.
    pub deadline: i64,
    /// When the wait began (Unix ms).
    pub since: i64,
    /// The plugin's polling interval, for looking again after a failed look.
    pub poll_ms: u64,
}

/// A run whose records could not be read at start-up, moved aside so that the other runs
/// recover: its header (as hex, byte for byte) and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quarantined {
    pub run_id: String,
    pub reason: String,
    /// Unix ms.
    pub quarantined_at: i64,
    /// The run's header as it was stored; its step, output and event records stay where
    /// they were.
    pub header_hex: String,
}

/// How one attempt of a step ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: i64,
    pub finished_at: i64,
    /// `None` for the attempt that succeeded.
    pub error: Option<String>,
}

impl StepRecord {
    /// A step that has not started.
    pub fn pending(id: &str, uses: &str) -> Self {
        Self {
            id: id.to_owned(),
            uses: uses.to_owned(),
            status: StepStatus::Pending,
            attempts: 0,
            output: None,
            output_bytes: 0,
            error: None,
            started_at: 0,
            finished_at: 0,
            approval: None,
            upstream_failed: false,
            retry_at: 0,
            history: Vec::new(),
            log_omitted_bytes: 0,
            wait: None,
            key_of_attempt: None,
            process_groups: Vec::new(),
            dispatches: Vec::new(),
            permit_wait: None,
            attempts_before_retry: 0,
            unselected: false,
            instances: Vec::new(),
        }
    }

    /// The attempt number whose idempotency key attempt `attempt` sends.
    pub fn key_attempt(&self, attempt: u32) -> u32 {
        self.key_of_attempt.unwrap_or(attempt)
    }
}

/// A request for a human to approve a step's plan, and the decision once made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalRecord {
    pub summary: String,
    /// The plugin's plan as JSON (effects with argv, env names and cwd).
    pub plan: serde_json::Value,
    /// Hash of the exact plan (argv, env values, cwd, stdin) and the runbook version.
    pub plan_hash: String,
    pub requested_at: i64,
    pub decision: Option<Decision>,
    /// Whether it waits for an instruction to be carried out by hand (confirmed, rather than
    /// a plan approved).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instruction: bool,
    /// What confirming it asks for: an instruction step's declared `inputs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<crate::runbook::Param>,
    /// A loop's approval: each instance's index with the hash of its exact plan. A later
    /// attempt (a retry, after a restart) runs without asking again when every instance it
    /// runs still has its approved plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_plans: Vec<(usize, String)>,
}

/// What an operator decided about an approval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub at: i64,
    pub reason: Option<String>,
    /// What the operator typed when confirming an instruction step, typed against its
    /// `inputs`: the step's output. Absent from records written before instruction steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
    Log,
}

/// Something that happened in a run; stored with a gap-free per-run sequence number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStatus {
        status: RunStatus,
        error: Option<String>,
    },
    StepStatus {
        step_id: String,
        status: StepStatus,
        attempt: u32,
        error: Option<String>,
        /// The output on completion, when at most [`INLINE_OUTPUT_BYTES`] of JSON.
        output: Option<serde_json::Value>,
        /// Set when the step has a larger output, left out here (it is stored on its own).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        output_omitted: bool,
    },
    StepOutput {
        step_id: String,
        stream: OutputStream,
        line: String,
    },
    ApprovalRequested {
        step_id: String,
        approval: ApprovalRecord,
    },
    /// An attempt failed and the step will be tried again after `delay_ms`.
    StepRetrying {
        step_id: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// The running attempt waits for a rate-limit permit of its target before its call.
    StepPermitWait { step_id: String, wait: PermitWait },
    /// An operator took the ended run back to running.
    RunRetried { retry: RunRetry },
    /// An instance of a loop step started or ended.
    InstanceStatus {
        step_id: String,
        index: u32,
        status: StepStatus,
        /// Times the instance has run, this one included.
        attempts: u32,
        error: Option<String>,
    },
}

/// A stored event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub run_id: String,
    pub seq: u64,
    pub at: i64,
    pub kind: EventKind,
}

/// One stored content of a runbook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub name: String,
    pub version: String,
    pub path: String,
    pub source: String,
    pub created_at: i64,
}

/// One entry of a runbook's history: its `number`-th distinct content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub name: String,
    /// 1-based, gap-free per runbook.
    pub number: u32,
    /// The content hash; the source is the [`VersionRecord`] of that hash.
    pub version: String,
    pub path: String,
    pub created_at: i64,
    /// "file" for a save on disk, or who rolled back to which number.
    pub cause: String,
}

/// The largest step output (as JSON text) that events and run summaries carry inline; a
/// larger one is read on its own (`GetStepOutput`), so that one big HTTP body never makes a
/// message too large for the API or a transition costly to publish.
pub const INLINE_OUTPUT_BYTES: usize = 64 * 1024;

/// The size of a value's JSON text, without building the text.
pub fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

//! The run state machine: starting runs, scheduling steps in dependency order, approvals,
//! operator decisions (approve, deny, resolve, cancel) and crash recovery. No tonic or sled
//! types here.
//!
//! While a run is active its state lives in memory ([`state::RunState`]); the store is its
//! write-ahead record: every transition is committed (only the records it changed) before it
//! is published or acted on, and nothing re-reads the run from the store. What happens next
//! is decided by the pure [`decide::decide`]; this module and `schedule.rs` apply it.

mod connections;
mod context;
mod decide;
mod each;
mod output;
mod params;
mod resume_watch;
mod retention;
mod retry_run;
mod schedule;
mod selection;
mod state;
mod step;
mod transition;
mod wait;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::events::{DurablePublisher, EventBus};
use crate::plugins::{PluginHost, SecretSource};
use crate::runbook::{self, Diagnostic, Runbook};
use crate::store::{
    Changes, EventKind, INLINE_OUTPUT_BYTES, RunRecord, RunStatus, StepRecord, StepStatus, Store,
    StoreError, now_ms,
};
use crate::targets::TargetGates;
use state::RunState;

pub use connections::ConnectionStatus;
pub use context::status_label;
pub use resume_watch::{DEFAULT_RESUME_WATCH, ResumeWatch};
pub use retention::{DEFAULT_AUDIT_RETENTION, PRUNE_EVERY, RetentionPolicy};
pub use retry_run::RetryRequest;
pub use selection::Selection;
pub use wait::Completion;

/// Whether steps of a kind wait for a human before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalPolicy {
    Required,
    Auto,
}

impl From<crate::plugins::Approval> for ApprovalPolicy {
    fn from(approval: crate::plugins::Approval) -> Self {
        match approval {
            crate::plugins::Approval::Required => Self::Required,
            crate::plugins::Approval::Auto => Self::Auto,
        }
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Per step kind; kinds not listed follow their plugin's own default.
    pub approvals: HashMap<String, ApprovalPolicy>,
    /// Timeout of a step that sets none.
    pub step_timeout: Duration,
    /// Bytes of output lines stored per step attempt: the start and the end are kept, the
    /// middle is replaced by a line saying how much was left out.
    pub output_budget: u64,
    /// Database connections every runbook may use, by name.
    pub connections: std::collections::BTreeMap<String, crate::plugins::ConnectionUrl>,
    /// The crash-loop guard of the data directory; `None`: runs are always resumed.
    pub resume_watch: Option<ResumeWatch>,
    /// What loop steps (`for_each`) may do.
    pub loops: LoopLimits,
}

/// The bounds of loop steps, from `[limits]` in the daemon config. A loop beyond one fails
/// before any of its instances starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopLimits {
    /// Items of one loop (`loop_items`).
    pub items: usize,
    /// Step executions of one run, a loop counting each instance (`loop_executions`): a loop
    /// that would take the run past it does not start.
    pub executions: usize,
    /// Loops over loops' outputs (`loop_depth`).
    pub depth: usize,
    /// A loop's `max_parallel` (`loop_parallel`).
    pub parallel: usize,
}

impl Default for LoopLimits {
    fn default() -> Self {
        Self {
            items: 100,
            executions: 1_000,
            depth: 10,
            parallel: 10,
        }
    }
}

impl Policy {
    /// Whether the operator's policy makes steps of `kind` wait for approval; a kind the
    /// policy does not list follows its plugin's own default.
    /// An instruction step always waits: it is done by a human, so only one can say it is.
    /// `granted` is what `runbook plugin grant --approval` set for a user plugin's kind; the
    /// config's `[approvals]` entry wins over it.
    pub fn requires_approval(
        &self,
        kind: &str,
        granted: Option<ApprovalPolicy>,
        plugin_default: impl FnOnce(&str) -> bool,
    ) -> bool {
        if kind == crate::runbook::INSTRUCTION_KIND {
            return true;
        }
        match self.approval_of(kind, granted) {
            Some(policy) => policy == ApprovalPolicy::Required,
            None => plugin_default(kind),
        }
    }

    /// The operator's word on `kind`: the config's `[approvals]` entry, else `granted`.
    pub fn approval_of(
        &self,
        kind: &str,
        granted: Option<ApprovalPolicy>,
    ) -> Option<ApprovalPolicy> {
        self.approvals.get(kind).copied().or(granted)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            approvals: HashMap::new(),
            step_timeout: Duration::from_secs(3600),
            output_budget: 8 * 1024 * 1024,
            connections: std::collections::BTreeMap::new(),
            resume_watch: None,
            loops: LoopLimits::default(),
        }
    }
}

/// What the operator decided about an ambiguous step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Retry,
    Skip,
    Fail,
}

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no runbook named `{0}`")]
    UnknownRunbook(String),
    #[error("runbook `{name}` is invalid and has no valid version to run:\n{}", runbook::render_all(.diagnostics))]
    InvalidRunbook {
        name: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(
        "runbook `{name}` uses step kinds that are not loaded: {}; add their plugins or fix the runbook",
        .kinds.join(", ")
    )]
    MissingPlugins { name: String, kinds: Vec<String> },
    #[error("{0}")]
    InvalidParams(String),
    /// A selection of steps (`--only`, `--from`, `--to`, `--outputs-from`) that cannot run.
    #[error("{0}")]
    InvalidSelection(String),
    #[error(
        "runbook `{name}` reads secrets that are not in the vault: {}; set them with `runbook secret set NAME`",
        .secrets.join(", ")
    )]
    MissingSecrets { name: String, secrets: Vec<String> },
    #[error(
        "runbook `{name}` uses database connections that are not defined: {}; define them in the daemon config or in a [connections.NAME] table",
        .connections.join(", ")
    )]
    UnknownConnections {
        name: String,
        connections: Vec<String>,
    },
    #[error(
        "runbook `{name}` has steps that run on agents (`runs_on`): {}; this runbookd has no `[cluster]` in its config to reach them",
        .steps.join(", ")
    )]
    NoCluster { name: String, steps: Vec<String> },
    #[error("run {run} has no step `{step}`")]
    UnknownStep { run: String, step: String },
    #[error("{0}")]
    WrongState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// A cloneable handle to the engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    plugins: PluginHost,
    catalog: Catalog,
    bus: EventBus,
    publisher: DurablePublisher,
    metrics: crate::metrics::Metrics,
    policy: Policy,
    /// The vault, as templates and plugin calls see it.
    secrets: Option<Arc<dyn SecretSource>>,
    /// Circuit breakers and rate limits of targets, shared by every run.
    targets: TargetGates,
    /// Runs with work in progress in this process.
    active: Mutex<HashMap<String, Arc<ActiveRun>>>,
    /// Parsed runbook versions by content hash: runs are pinned to one.
    versions: Mutex<HashMap<String, Arc<Runbook>>>,
    tasks: TaskTracker,
    /// Runs `runs_on` steps on agents; set once the cluster is up (`[cluster]`).
    dispatcher: std::sync::OnceLock<crate::cluster::Dispatcher>,
    /// Dispatches of attempts that recovery found interrupted, for the cluster to withdraw
    /// when it starts (after recovery).
    withdrawals: Mutex<Vec<crate::store::DispatchRecord>>,
    /// Set by [`Engine::shutdown`]: no step starts after it, so none is left `running` (and
    /// found ambiguous at the next start) without ever having run.
    stopping: CancellationToken,
}

/// A run that has work in progress in this process.
struct ActiveRun {
    /// The run's state. Held only for a transition (change, commit, publish), never across
    /// an await, so transitions of one run are serialized and in sequence-number order.
    state: Mutex<RunState>,
    cancel: CancellationToken,
    runbook: Arc<Runbook>,
    /// The plugins as they were when this process took the run up: a plugin removed or
    /// replaced later does not change a run in flight.
    plugins: PluginHost,
}

impl Engine {
    /// Creates the engine; call it inside the runtime (it starts the event publisher).
    pub fn new(
        store: Store,
        plugins: PluginHost,
        catalog: Catalog,
        bus: EventBus,
        policy: Policy,
        secrets: Option<Arc<dyn SecretSource>>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                publisher: DurablePublisher::spawn(store.clone(), bus.clone(), metrics.clone()),
                metrics,
                store,
                plugins,
                catalog,
                bus,
                policy,
                secrets,
                targets: TargetGates::default(),
                active: Mutex::new(HashMap::new()),
                versions: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                dispatcher: std::sync::OnceLock::new(),
                withdrawals: Mutex::default(),
                stopping: CancellationToken::new(),
            }),
        }
    }

    /// The dispatches of interrupted attempts that are still to be withdrawn.
    pub fn take_withdrawals(&self) -> Vec<crate::store::DispatchRecord> {
        std::mem::take(&mut *lock(&self.inner.withdrawals))
    }

    /// Hands `runs_on` steps to `dispatcher` from now on.
    pub fn set_dispatcher(&self, dispatcher: crate::cluster::Dispatcher) {
        let _ = self.inner.dispatcher.set(dispatcher);
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn plugins(&self) -> &PluginHost {
        &self.inner.plugins
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The shared state of every target steps have used.
    pub fn targets(&self) -> &TargetGates {
        &self.inner.targets
    }

    /// Runs with work in progress.
    pub fn active_runs(&self) -> usize {
        lock(&self.inner.active).len()
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// What the metrics' gauges show of the engine: active runs, steps running, approvals
    /// waiting, and each target's circuit.
    pub fn gauges(&self) -> crate::metrics::Snapshot {
        let runs: Vec<Arc<ActiveRun>> = lock(&self.inner.active).values().cloned().collect();
        let mut snapshot = crate::metrics::Snapshot {
            active_runs: runs.len() as u64,
            ..Default::default()
        };
        for active in runs {
            let state = lock(&active.state);
            snapshot.steps_in_flight += state.in_flight.len() as u64;
            snapshot.approvals_waiting += state
                .run
                .steps
                .iter()
                .filter(|step| awaits_approval(step))
                .count() as u64;
        }
        snapshot.circuits = self
            .inner
            .targets
            .list()
            .into_iter()
            .map(|target| {
                let state = match target.circuit {
                    crate::targets::Circuit::Closed => 0,
                    crate::targets::Circuit::HalfOpen => 1,
                    crate::targets::Circuit::Open => 2,
                };
                (target.runbook, target.name, state)
            })
            .collect();
        snapshot
    }

    /// Starts a run of a runbook's current version. Params are checked first: a run that
    /// could not start is never created.
    pub async fn start_run(
        &self,
        name: &str,
        raw_params: &HashMap<String, String>,
        dry_run: bool,
    ) -> Result<RunRecord, EngineError> {
        self.start_part(name, raw_params, dry_run, &Selection::default())
            .await
    }

    /// Starts a run of the steps `selection` keeps; the others are `skipped` as "not
    /// selected" (with the output an earlier run lends them, under `outputs_from`).
    pub async fn start_part(
        &self,
        name: &str,
        raw_params: &HashMap<String, String>,
        dry_run: bool,
        selection: &Selection,
    ) -> Result<RunRecord, EngineError> {
        let entry = self
            .inner
            .catalog
            .get(name)
            .ok_or_else(|| EngineError::UnknownRunbook(name.to_owned()))?;
        let runbook = entry.current.ok_or_else(|| EngineError::InvalidRunbook {
            name: name.to_owned(),
            diagnostics: entry.diagnostics.clone(),
        })?;
        // The current version may predate the removal of a plugin it needs.
        self.check_plugins(&runbook, runbook.steps.iter())?;
        let params = params::resolve(&runbook, raw_params).map_err(EngineError::InvalidParams)?;
        self.check_secrets(&runbook)?;
        self.check_connections(&runbook)?;
        self.check_cluster(&runbook)?;
        let part = self.part_of(&runbook, selection)?;
        lock(&self.inner.versions).insert(runbook.version.clone(), runbook.clone());
        let now = now_ms();
        let mut run = RunRecord {
            id: ulid::Ulid::new().to_string(),
            runbook: runbook.name.clone(),
            version: runbook.version.clone(),
            status: RunStatus::Pending,
            params,
            steps: runbook
                .steps
                .iter()
                .map(|step| StepRecord::pending(&step.id, &step.uses))
                .collect(),
            created_at: now,
            started_at: 0,
            finished_at: 0,
            error: None,
            dry_run,
            retries: Vec::new(),
        };
        if let Some(part) = part {
            part.leave_out(&mut run, now);
        }
        self.commit(
            &run,
            &Changes::all(&run),
            vec![EventKind::RunStatus {
                status: RunStatus::Pending,
                error: None,
            }],
        )?;
        self.inner.store.flush().await?;
        self.inner.metrics.run_started(&run.runbook);
        tracing::info!(run = %run.id, runbook = %run.runbook, version = %run.version, dry_run, "run started");
        // Take the run's plugin snapshot now, at creation, not when it is first scheduled.
        self.activate_with(run.clone(), runbook);
        self.schedule(run.id.clone());
        Ok(run)
    }

    /// What a selection keeps of `runbook`, checked: `None` for the whole runbook.
    fn part_of(
        &self,
        runbook: &Runbook,
        selection: &Selection,
    ) -> Result<Option<selection::Part>, EngineError> {
        if selection.is_all() {
            return Ok(None);
        }
        let lender = match &selection.outputs_from {
            Some(id) => {
                let id = self.inner.store.resolve_run_id(id)?;
                Some(
                    self.inner
                        .store
                        .run(&id)?
                        .ok_or_else(|| EngineError::Store(StoreError::RunNotFound(id.clone())))?,
                )
            }
            None => None,
        };
        selection::Part::new(runbook, selection, lender)
            .map(Some)
            .map_err(EngineError::InvalidSelection)
    }

    /// Refuses steps whose plugin is not loaded (any more).
    fn check_plugins<'a>(
        &self,
        runbook: &Runbook,
        steps: impl Iterator<Item = &'a runbook::Step>,
    ) -> Result<(), EngineError> {
        let available = self.inner.plugins.kinds();
        let mut missing: Vec<String> = steps
            .filter(|step| !available.contains(&step.uses))
            .map(|step| step.uses.clone())
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        Err(EngineError::MissingPlugins {
            name: runbook.name.clone(),
            kinds: missing,
        })
    }

    /// Refuses a run whose templates read secrets the vault does not hold: better now than
    /// halfway through.
    fn check_secrets(&self, runbook: &Runbook) -> Result<(), EngineError> {
        let mut texts = Vec::new();
        for step in &runbook.steps {
            collect_strings(&step.with, &mut texts);
        }
        for target in &runbook.targets {
            texts.push(target.url.clone());
            collect_strings(&target.headers, &mut texts);
            if let Some(auth) = &target.auth {
                collect_strings(auth, &mut texts);
            }
        }
        let known = self.vault_names();
        let missing: Vec<String> = secret_names(&texts)
            .into_iter()
            .filter(|name| !known.contains(name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(EngineError::MissingSecrets {
            name: runbook.name.clone(),
            secrets: missing,
        })
    }

    /// Refuses a run whose database steps name a connection neither the runbook nor the
    /// daemon config defines.
    /// Refuses a run with `runs_on` steps on a daemon without a cluster to reach agents.
    fn check_cluster(&self, runbook: &Runbook) -> Result<(), EngineError> {
        if self.inner.dispatcher.get().is_some() {
            return Ok(());
        }
        let remote: Vec<String> = runbook
            .steps
            .iter()
            .filter(|step| !step.runs_on.is_empty())
            .map(|step| step.id.clone())
            .collect();
        if remote.is_empty() {
            return Ok(());
        }
        Err(EngineError::NoCluster {
            name: runbook.name.clone(),
            steps: remote,
        })
    }

    fn check_connections(&self, runbook: &Runbook) -> Result<(), EngineError> {
        let mut unknown: Vec<String> = runbook
            .steps
            .iter()
            .filter_map(|step| step.with.get("connection").and_then(|name| name.as_str()))
            .filter(|name| !crate::template::is_template(name))
            .filter(|name| {
                runbook.connection(name).is_none()
                    && !self.inner.policy.connections.contains_key(*name)
            })
            .map(str::to_owned)
            .collect();
        unknown.sort();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(EngineError::UnknownConnections {
            name: runbook.name.clone(),
            connections: unknown,
        })
    }

    /// The names of every secret in the vault.
    fn vault_names(&self) -> std::collections::BTreeSet<String> {
        self.inner
            .secrets
            .as_ref()
            .map(|source| {
                source
                    .placeholders()
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lets a step that waits for approval run the plan it showed (an instruction step: marks
    /// it done, its inputs at their defaults).
    pub async fn approve(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.confirm(run_id, step_id, &HashMap::new(), by).await
    }

    /// Marks an instruction step done with what the operator typed (`key=value` texts), typed
    /// and checked against the step's `inputs`: they become its output. Any other step that
    /// waits for approval is approved, and takes no inputs.
    pub async fn confirm(
        &self,
        run_id: &str,
        step_id: &str,
        inputs: &HashMap<String, String>,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        let run = self
            .decide_step(run_id, step_id, |step, run_id, definition| {
                waiting_for_approval(step, run_id)?;
                let confirmed = if definition.uses == crate::runbook::INSTRUCTION_KIND {
                    Some(
                        params::resolve_inputs(step_id, &definition.inputs, inputs)
                            .map_err(EngineError::InvalidParams)?,
                    )
                } else if let Some(name) = inputs.keys().min() {
                    return Err(EngineError::InvalidParams(format!(
                        "input `{name}`: step `{step_id}` is a `{}` step; only instruction steps take inputs",
                        definition.uses
                    )));
                } else {
                    None
                };
                Ok(step.approve(by, confirmed, now_ms()))
            })
            .await?;
        self.approval_decided(&run, step_id);
        Ok(run)
    }

    /// Refuses a step that waits for approval: it fails with the reason.
    pub async fn deny(
        &self,
        run_id: &str,
        step_id: &str,
        reason: &str,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        let run = self
            .decide_step(run_id, step_id, |step, run_id, _| {
                waiting_for_approval(step, run_id)?;
                Ok(step.deny(by, reason, now_ms()))
            })
            .await?;
        self.approval_decided(&run, step_id);
        Ok(run)
    }

    /// Counts how long a decided approval waited.
    fn approval_decided(&self, run: &RunRecord, step_id: &str) {
        let Some(approval) = run
            .steps
            .iter()
            .find(|step| step.id == step_id)
            .and_then(|step| step.approval.as_ref())
        else {
            return;
        };
        if let Some(decision) = &approval.decision {
            let waited = u64::try_from(decision.at - approval.requested_at).unwrap_or(0);
            self.inner
                .metrics
                .approval_decided(Duration::from_millis(waited));
        }
    }

    /// Decides what happens to an ambiguous step.
    pub async fn resolve(
        &self,
        run_id: &str,
        step_id: &str,
        resolution: Resolution,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide_step(run_id, step_id, |step, run_id, _| {
            if step.status != StepStatus::Ambiguous {
                return Err(EngineError::WrongState(format!(
                    "step `{}` of run {run_id} is {}, not ambiguous; only an ambiguous step can be resolved",
                    step.id,
                    status_label(step.status)
                )));
            }
            Ok(step.resolve(resolution, by, now_ms()))
        })
        .await
    }

    /// Cancels a run: running steps are stopped, nothing else starts.
    pub async fn cancel(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        let run_id = self.inner.store.resolve_run_id(run_id)?;
        let active = self.activate_for_change(&run_id)?;
        let run = self.transition(&active, |state| {
            if state.run.status.is_terminal() {
                return Err(ended(&state.run));
            }
            active.cancel.cancel();
            let now = now_ms();
            let mut changes = Changes {
                header: true,
                ..Changes::default()
            };
            let mut events = Vec::new();
            for position in 0..state.run.steps.len() {
                if state.run.steps[position].status.is_terminal() {
                    continue;
                }
                events.extend(state.update(position, |step| step.cancel(now)));
                changes.steps.push(position);
            }
            let run = &mut state.run;
            run.status = RunStatus::Cancelled;
            run.finished_at = now;
            run.error = Some("cancelled by the operator".into());
            events.push(EventKind::RunStatus {
                status: run.status,
                error: run.error.clone(),
            });
            Ok((changes, events, state.run.clone()))
        })?;
        self.inner.store.flush().await?;
        self.forget(&run_id);
        Ok(run)
    }

    /// Pauses a run: steps already running finish, waiting ones keep being looked at, but no
    /// step starts until the run is resumed. A paused run stays paused across restarts.
    pub async fn pause(&self, run_id: &str, by: &str) -> Result<RunRecord, EngineError> {
        self.set_paused(run_id, true, by).await
    }

    /// Lets a paused run go on where it stopped.
    pub async fn resume(&self, run_id: &str, by: &str) -> Result<RunRecord, EngineError> {
        self.set_paused(run_id, false, by).await
    }

    async fn set_paused(
        &self,
        run_id: &str,
        pause: bool,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide_run(run_id, |state, _| {
            let run = &mut state.run;
            let paused = run.status == RunStatus::Paused;
            if paused == pause {
                return Err(EngineError::WrongState(format!(
                    "run {} is {}",
                    run.id,
                    if paused {
                        "already paused"
                    } else {
                        "not paused"
                    }
                )));
            }
            // `advance` derives the status again from the steps once the run goes on.
            run.status = if pause {
                RunStatus::Paused
            } else {
                RunStatus::Running
            };
            run.error = pause.then(|| format!("paused by {by}"));
            let events = vec![EventKind::RunStatus {
                status: run.status,
                error: run.error.clone(),
            }];
            Ok((
                Changes {
                    header: true,
                    ..Changes::default()
                },
                events,
            ))
        })
        .await
    }

    /// Picks up every run that had not ended when the daemon stopped. A step that was running
    /// is re-run only if its plugin is idempotent; otherwise it becomes ambiguous.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let (runs, quarantined) = self.inner.store.unfinished_runs()?;
        for run in &quarantined {
            tracing::error!(
                run = %run.run_id,
                reason = %run.reason,
                "run quarantined: its records cannot be read; it is kept aside, not resumed"
            );
        }
        let watch = self.inner.policy.resume_watch.as_ref();
        let suspects = watch.map(ResumeWatch::suspects).unwrap_or_default();
        let mut resumed = Vec::new();
        for mut run in runs {
            if suspects.contains(&run.id) {
                // The guard must never keep the daemon from starting: a run that cannot be
                // failed now is failed at the next start, as its id stays on record.
                if let Err(err) =
                    self.fail_unresumed(run, watch.map(ResumeWatch::window).unwrap_or_default())
                {
                    tracing::error!(error = %err, "cannot fail a run the crash-loop guard names");
                }
                continue;
            }
            let (events, changes) = self.interrupt_running(&mut run);
            if !events.is_empty() {
                self.commit(&run, &changes, events)?;
            }
            let runbook = match self.pinned_runbook(&run) {
                Ok(runbook) => runbook,
                // Its version cannot be read: the other runs still recover.
                Err(err) => {
                    let reason = format!("its runbook version cannot be loaded: {err}");
                    tracing::error!(run = %run.id, reason = %reason, "run quarantined");
                    self.inner.store.quarantine(&run.id, &reason)?;
                    continue;
                }
            };
            resumed.push((run, runbook));
        }
        // What was recorded above is on disk before anything runs, and before the guard's
        // record forgets the runs failed above.
        self.inner.store.flush().await?;
        if let Some(watch) = watch {
            // Only runs that start something when resumed can bring the daemon down: one
            // that waits for an approval or an operator's decision, or is paused, cannot.
            let working: Vec<String> = resumed
                .iter()
                .filter(|(run, _)| resumes_work(run))
                .map(|(run, _)| run.id.clone())
                .collect();
            // Without its record the runs resume as they did before the guard existed.
            if let Err(err) = watch.arm(&working, now_ms()) {
                tracing::error!(error = %err, "cannot record the runs being resumed; the crash-loop guard is off for them");
            }
            if !working.is_empty() {
                let watch = watch.clone();
                let stopping = self.inner.stopping.clone();
                tokio::spawn(async move {
                    // A stop before the window has passed disarms in `shutdown`.
                    tokio::select! {
                        () = tokio::time::sleep(watch.window()) => {}
                        () = stopping.cancelled() => return,
                    }
                    if let Err(err) = watch.disarm() {
                        tracing::warn!(error = %err, "cannot clear the crash-loop guard's record");
                    }
                });
            }
        }
        let count = resumed.len();
        for (run, runbook) in resumed {
            tracing::info!(run = %run.id, "resuming run");
            let id = run.id.clone();
            self.activate_with(run, runbook);
            self.schedule(id);
        }
        Ok(count)
    }

    /// Records the steps of `run` that were running when the daemon stopped as interrupted
    /// (see `StepRecord::interrupt`), after killing what their attempts left running.
    fn interrupt_running(&self, run: &mut RunRecord) -> (Vec<EventKind>, Changes) {
        let now = now_ms();
        let mut events = Vec::new();
        let mut changes = Changes::default();
        for (position, step) in run.steps.iter_mut().enumerate() {
            if step.status != StepStatus::Running {
                continue;
            }
            let idempotent = self
                .inner
                .plugins
                .descriptor(&step.uses)
                .is_ok_and(|descriptor| descriptor.idempotent);
            // Whatever the interrupted attempt started dies before anything can run the
            // step again: an operator's retry must not run a second copy beside it.
            for group in &step.process_groups {
                let killed =
                    crate::plugins::kill_leftover_group(group.pgid, group.started, &group.boot_id);
                if killed > 0 {
                    tracing::warn!(
                        run = %run.id,
                        step = %step.id,
                        pgid = group.pgid,
                        killed,
                        "killed processes the interrupted attempt left running"
                    );
                }
            }
            // Nor may an agent start (or go on with) what the attempt dispatched to it.
            lock(&self.inner.withdrawals).extend(step.dispatches.iter().cloned());
            events.extend(step.interrupt(idempotent, &run.id, now));
            changes.steps.push(position);
        }
        (events, changes)
    }

    /// Ends a run that the previous start was resuming when the daemon died within the
    /// resume watch: its interrupted steps are recorded as after any crash, and the run fails
    /// with the reason instead of being resumed again.
    fn fail_unresumed(
        &self,
        mut run: RunRecord,
        window: std::time::Duration,
    ) -> Result<(), EngineError> {
        let now = now_ms();
        let (mut events, mut changes) = self.interrupt_running(&mut run);
        changes.header = true;
        // Nothing of a failed run runs or waits any more; a step whose result is unknown
        // stays ambiguous, which says so.
        for (position, step) in run.steps.iter_mut().enumerate() {
            if !step.status.is_terminal() && step.status != StepStatus::Ambiguous {
                events.extend(step.cancel(now));
                if !changes.steps.contains(&position) {
                    changes.steps.push(position);
                }
            }
        }
        let reason = format!(
            "not resumed: the daemon stopped within {} of resuming this run at its last start, \
             which a step of this run may have caused; it was failed so that it cannot stop \
             the daemon at every start (see `[limits] resume_watch`)",
            humantime::format_duration(window)
        );
        tracing::error!(run = %run.id, "run failed instead of resumed: the daemon died while resuming it");
        run.status = RunStatus::Failed;
        run.finished_at = now;
        run.error = Some(reason.clone());
        events.push(EventKind::RunStatus {
            status: run.status,
            error: Some(reason),
        });
        self.commit(&run, &changes, events)
    }

    /// Runs moved aside because their records could not be read.
    pub fn quarantined(&self) -> Result<Vec<crate::store::Quarantined>, EngineError> {
        Ok(self.inner.store.quarantined()?)
    }

    /// Runs with a step running now.
    pub fn runs_in_flight(&self) -> Vec<String> {
        let mut runs: Vec<String> = lock(&self.inner.active)
            .values()
            .filter(|active| !lock(&active.state).in_flight.is_empty())
            .map(|active| lock(&active.state).run.id.clone())
            .collect();
        runs.sort();
        runs
    }

    /// Stops: no step starts any more, steps already running get up to `grace` to end, and
    /// what still runs then is abandoned (resumed or marked ambiguous at the next start, like
    /// after a crash).
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.stopping.cancel();
        // A clean stop is not a crash: the runs it resumed are not suspects at the next start.
        if let Some(watch) = &self.inner.policy.resume_watch
            && let Err(err) = watch.disarm()
        {
            tracing::warn!(error = %err, "cannot clear the crash-loop guard's record");
        }
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            return;
        }
        let left = self.runs_in_flight();
        if !left.is_empty() {
            tracing::warn!(
                runs = ?left,
                grace = %humantime::format_duration(grace),
                "stopping with steps still running: they are left to crash recovery at the next start"
            );
        }
        for active in lock(&self.inner.active).values() {
            active.cancel.cancel();
        }
        self.inner.tasks.wait().await;
    }

    /// Applies an operator's decision about one step of a run that has not ended, durably,
    /// then lets the scheduler act on it. `change` gets the step and the run's id; it must
    /// check before it changes anything.
    async fn decide_step(
        &self,
        run_id: &str,
        step_id: &str,
        change: impl FnOnce(
            &mut StepRecord,
            &str,
            &crate::runbook::Step,
        ) -> Result<Vec<EventKind>, EngineError>,
    ) -> Result<RunRecord, EngineError> {
        self.decide_run(run_id, |state, runbook| {
            let position = state
                .position(step_id)
                .ok_or_else(|| EngineError::UnknownStep {
                    run: state.run.id.clone(),
                    step: step_id.to_owned(),
                })?;
            let definition = &runbook.steps[position];
            let run_id = state.run.id.clone();
            let (events, changes) =
                changed_step(state, position, |step| change(step, &run_id, definition));
            Ok((changes, events?))
        })
        .await
    }

    /// Applies an operator's decision to a run that has not ended, durably, then lets the
    /// scheduler act on it.
    async fn decide_run(
        &self,
        run_id: &str,
        change: impl FnOnce(
            &mut RunState,
            &crate::runbook::Runbook,
        ) -> Result<(Changes, Vec<EventKind>), EngineError>,
    ) -> Result<RunRecord, EngineError> {
        let run_id = self.inner.store.resolve_run_id(run_id)?;
        let active = self.activate_for_change(&run_id)?;
        let run = self.transition(&active, |state| {
            if state.run.status.is_terminal() {
                return Err(ended(&state.run));
            }
            let (changes, events) = change(state, &active.runbook)?;
            Ok((changes, events, state.run.clone()))
        })?;
        self.inner.store.flush().await?;
        self.schedule(run_id);
        Ok(run)
    }

    /// Changes an active run's state and commits what changed, with its events, under the
    /// run's lock: `change` says which records it changed and what events they imply.
    fn transition<R>(
        &self,
        active: &ActiveRun,
        change: impl FnOnce(&mut RunState) -> Result<(Changes, Vec<EventKind>, R), EngineError>,
    ) -> Result<R, EngineError> {
        let mut state = lock(&active.state);
        let (changes, events, result) = change(&mut state)?;
        if !changes.is_empty() || !events.is_empty() {
            self.commit(&state.run, &changes, events)?;
        }
        Ok(result)
    }

    /// Writes what changed in a run with its events, then publishes them.
    fn commit(
        &self,
        run: &RunRecord,
        changes: &Changes,
        events: Vec<EventKind>,
    ) -> Result<(), EngineError> {
        self.inner.metrics.observe_transition(run, changes, &events);
        let stored = self.inner.store.commit(run, changes, events)?;
        self.inner.publisher.publish(stored);
        Ok(())
    }

    /// The active state of a run, loaded from the store on first use; `None` once the run
    /// has ended (only [`Engine::retry_run`] makes an ended run active again).
    fn activate(&self, run_id: &str) -> Result<Result<Arc<ActiveRun>, RunRecord>, EngineError> {
        if let Some(active) = lock(&self.inner.active).get(run_id) {
            return Ok(Ok(active.clone()));
        }
        let run = self
            .inner
            .store
            .run(run_id)?
            .ok_or_else(|| EngineError::Store(StoreError::RunNotFound(run_id.to_owned())))?;
        if run.status.is_terminal() {
            return Ok(Err(run));
        }
        let runbook = self.pinned_runbook(&run)?;
        Ok(Ok(self.activate_with(run, runbook)))
    }

    /// [`Engine::activate`] for a change that an ended run refuses.
    fn activate_for_change(&self, run_id: &str) -> Result<Arc<ActiveRun>, EngineError> {
        self.activate(run_id)?.map_err(|run| ended(&run))
    }

    /// Makes `run` active with the plugins as they are now, unless it already is.
    fn activate_with(&self, run: RunRecord, runbook: Arc<Runbook>) -> Arc<ActiveRun> {
        let mut active_runs = lock(&self.inner.active);
        active_runs
            .entry(run.id.clone())
            .or_insert_with(|| self.new_active(run, runbook))
            .clone()
    }

    /// The active state of `run`, with the plugins as they are now.
    fn new_active(&self, run: RunRecord, runbook: Arc<Runbook>) -> Arc<ActiveRun> {
        Arc::new(ActiveRun {
            state: Mutex::new(RunState::new(run, &runbook)),
            cancel: CancellationToken::new(),
            runbook,
            plugins: self.inner.plugins.snapshot(),
        })
    }

    fn forget(&self, run_id: &str) {
        lock(&self.inner.active).remove(run_id);
    }

    /// The runbook version a run is pinned to, from memory or from the stored source.
    fn pinned_runbook(&self, run: &RunRecord) -> Result<Arc<Runbook>, EngineError> {
        if let Some(runbook) = lock(&self.inner.versions).get(&run.version) {
            return Ok(runbook.clone());
        }
        if let Some(runbook) = self
            .inner
            .catalog
            .get(&run.runbook)
            .and_then(|entry| entry.current)
            && runbook.version == run.version
        {
            lock(&self.inner.versions).insert(run.version.clone(), runbook.clone());
            return Ok(runbook);
        }
        let record = self
            .inner
            .store
            .version(&run.runbook, &run.version)?
            .ok_or_else(|| {
                EngineError::Internal(format!(
                    "version {} of runbook `{}` is missing from the store",
                    run.version, run.runbook
                ))
            })?;
        // The stored source was valid when stored; re-check only what parsing needs.
        let runbook =
            runbook::parse_stored(&record.path, &record.source).map_err(|diagnostics| {
                EngineError::Internal(format!(
                    "stored version {} no longer parses: {}",
                    run.version,
                    runbook::render_all(&diagnostics)
                ))
            })?;
        let runbook = Arc::new(runbook);
        lock(&self.inner.versions).insert(run.version.clone(), runbook.clone());
        Ok(runbook)
    }
}

/// A std mutex that recovers from poisoning: the maps it guards stay consistent because
/// every critical section is a single insert, remove or lookup.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Changes step `position` with `change` and says which records that touched: its record,
/// and its output when an attempt ended with one.
fn changed_step<R>(
    state: &mut RunState,
    position: usize,
    change: impl FnOnce(&mut StepRecord) -> R,
) -> (R, Changes) {
    let step = &state.run.steps[position];
    let (attempts_ended, was_terminal) = (step.history.len(), step.status.is_terminal());
    let result = state.update(position, change);
    let step = &state.run.steps[position];
    let attempt_ended =
        step.history.len() != attempts_ended || (!was_terminal && step.status.is_terminal());
    let changes = Changes {
        header: false,
        steps: vec![position],
        outputs: if attempt_ended && step.output.is_some() {
            vec![position]
        } else {
            Vec::new()
        },
        instance_outputs: Vec::new(),
    };
    (result, changes)
}

/// The refusal of a change to a run that has ended.
fn ended(run: &RunRecord) -> EngineError {
    EngineError::WrongState(format!(
        "run {} has already ended ({})",
        run.id,
        run_status_label(run.status)
    ))
}

/// Refuses a decision about a step that is not waiting for approval.
fn waiting_for_approval(step: &StepRecord, run_id: &str) -> Result<(), EngineError> {
    if !awaits_approval(step) {
        return Err(EngineError::WrongState(format!(
            "step `{}` of run {run_id} is {}, not waiting for approval",
            step.id,
            status_label(step.status)
        )));
    }
    Ok(())
}

/// Whether a step waits for an operator's decision about its plan.
fn awaits_approval(step: &StepRecord) -> bool {
    step.status == StepStatus::Waiting
        && step
            .approval
            .as_ref()
            .is_some_and(|approval| approval.decision.is_none())
}

/// The secrets that templates among `texts` read (`secrets.NAME`), sorted.
fn secret_names(texts: &[String]) -> std::collections::BTreeSet<String> {
    texts
        .iter()
        .filter(|text| crate::template::is_template(text))
        .filter_map(|text| crate::template::template_variables(text).ok())
        .flatten()
        .filter_map(|var| {
            var.strip_prefix("secrets.")
                .map(|rest| rest.split('.').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Every string inside a JSON value.
fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

/// The event announcing a step's current status.
fn step_event(step: &StepRecord) -> EventKind {
    let output = step.output.as_ref().filter(|_| step.status.is_terminal());
    let inline = output.filter(|output| crate::store::json_len(output) <= INLINE_OUTPUT_BYTES);
    EventKind::StepStatus {
        step_id: step.id.clone(),
        status: step.status,
        attempt: step.attempts,
        error: step.error.clone(),
        output: inline.cloned(),
        output_omitted: output.is_some() && inline.is_none(),
    }
}

/// The label of a run status, for example `timed_out`.
pub fn run_status_label(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether resuming `run` starts something: a step to run (or to run again), an async wait
/// to look at, or a retry due. A paused run, and one whose steps only wait for an approval
/// or an operator's decision, start nothing.
fn resumes_work(run: &RunRecord) -> bool {
    run.status != RunStatus::Paused
        && run.steps.iter().any(|step| match step.status {
            StepStatus::Pending | StepStatus::Running => true,
            StepStatus::Waiting => step
                .approval
                .as_ref()
                .is_none_or(|approval| approval.decision.is_some()),
            _ => false,
        })
}

//! The run state machine: starting runs, scheduling steps in dependency order, approvals,
//! operator decisions (approve, deny, resolve, cancel) and crash recovery. Every transition is
//! committed to the store before it is published or acted on. No tonic or sled types here.

mod connections;
mod context;
// Not wired into `Engine::output_sink` yet; the allow goes with that change.
#[allow(dead_code)]
mod output;
mod params;
mod schedule;
mod step;
mod wait;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::events::{DurablePublisher, EventBus};
use crate::plugins::{PluginHost, SecretSource};
use crate::runbook::{self, Diagnostic, Runbook};
use crate::store::{
    Decision, EventKind, RunRecord, RunStatus, StepRecord, StepStatus, Store, StoreError, now_ms,
};
use crate::targets::TargetGates;

pub use connections::ConnectionStatus;
pub use context::status_label;
pub use wait::Completion;

/// Whether steps of a kind wait for a human before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalPolicy {
    Required,
    Auto,
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Per step kind; kinds not listed follow their plugin's own default.
    pub approvals: HashMap<String, ApprovalPolicy>,
    /// Timeout of a step that sets none.
    pub step_timeout: Duration,
    /// Database connections every runbook may use, by name.
    pub connections: std::collections::BTreeMap<String, crate::plugins::ConnectionUrl>,
}

impl Policy {
    /// Whether the operator's policy makes steps of `kind` wait for approval; a kind the
    /// policy does not list follows its plugin's own default.
    pub fn requires_approval(&self, kind: &str, plugin_default: impl FnOnce(&str) -> bool) -> bool {
        match self.approvals.get(kind) {
            Some(policy) => *policy == ApprovalPolicy::Required,
            None => plugin_default(kind),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            approvals: HashMap::new(),
            step_timeout: Duration::from_secs(3600),
            connections: std::collections::BTreeMap::new(),
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
    /// Set by [`Engine::shutdown`]: no step starts after it, so none is left `running` (and
    /// found ambiguous at the next start) without ever having run.
    stopping: CancellationToken,
}

/// In-memory companion of a run that has work in progress.
struct ActiveRun {
    /// Serializes the run's transitions.
    lock: tokio::sync::Mutex<()>,
    /// Steps with a task working on them (planning or executing).
    in_flight: Mutex<HashSet<String>>,
    /// Waiting steps whose async invocation is being looked at.
    resuming: Mutex<HashSet<String>>,
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
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                publisher: DurablePublisher::spawn(store.clone(), bus.clone()),
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
                stopping: CancellationToken::new(),
            }),
        }
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

    /// Starts a run of a runbook's current version. Params are checked first: a run that
    /// could not start is never created.
    pub async fn start_run(
        &self,
        name: &str,
        raw_params: &HashMap<String, String>,
        dry_run: bool,
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
        let available = self.inner.plugins.kinds();
        let mut missing: Vec<String> = runbook
            .steps
            .iter()
            .filter(|step| !available.contains(&step.uses))
            .map(|step| step.uses.clone())
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            return Err(EngineError::MissingPlugins {
                name: name.to_owned(),
                kinds: missing,
            });
        }
        let params = params::resolve(&runbook, raw_params).map_err(EngineError::InvalidParams)?;
        self.check_secrets(&runbook)?;
        self.check_connections(&runbook)?;
        lock(&self.inner.versions).insert(runbook.version.clone(), runbook.clone());
        let now = now_ms();
        let run = RunRecord {
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
        };
        self.commit(
            &run,
            vec![EventKind::RunStatus {
                status: RunStatus::Pending,
                error: None,
            }],
        )?;
        self.inner.store.flush().await?;
        tracing::info!(run = %run.id, runbook = %run.runbook, version = %run.version, dry_run, "run started");
        // Take the run's plugin snapshot now, at creation, not when it is first scheduled.
        self.activate(&run.id)?;
        self.schedule(run.id.clone());
        Ok(run)
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

    /// Lets a step that waits for approval run the plan it showed.
    pub async fn approve(
        &self,
        run_id: &str,
        step_id: &str,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide(run_id, step_id, |run, step_id| {
            let step = waiting_for_approval(run, step_id)?;
            if let Some(approval) = &mut step.approval {
                approval.decision = Some(Decision {
                    approved: true,
                    by: by.to_owned(),
                    at: now_ms(),
                    reason: None,
                });
            }
            step.status = StepStatus::Pending;
            Ok(vec![step_event(step)])
        })
        .await
    }

    /// Refuses a step that waits for approval: it fails with the reason.
    pub async fn deny(
        &self,
        run_id: &str,
        step_id: &str,
        reason: &str,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide(run_id, step_id, |run, step_id| {
            let step = waiting_for_approval(run, step_id)?;
            let reason = if reason.is_empty() {
                "no reason given"
            } else {
                reason
            };
            if let Some(approval) = &mut step.approval {
                approval.decision = Some(Decision {
                    approved: false,
                    by: by.to_owned(),
                    at: now_ms(),
                    reason: Some(reason.to_owned()),
                });
            }
            step.status = StepStatus::Failed;
            step.error = Some(format!("denied by {by}: {reason}"));
            step.finished_at = now_ms();
            Ok(vec![step_event(step)])
        })
        .await
    }

    /// Decides what happens to an ambiguous step.
    pub async fn resolve(
        &self,
        run_id: &str,
        step_id: &str,
        resolution: Resolution,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide(run_id, step_id, |run, step_id| {
            let run_id = run.id.clone();
            let step = find_step(run, step_id)?;
            if step.status != StepStatus::Ambiguous {
                return Err(EngineError::WrongState(format!(
                    "step `{step_id}` of run {run_id} is {}, not ambiguous; only an ambiguous step can be resolved",
                    status_label(step.status)
                )));
            }
            match resolution {
                // The approval given before the crash stays valid: the plan is unchanged.
                Resolution::Retry => {
                    step.status = StepStatus::Pending;
                    step.error = None;
                }
                Resolution::Skip => {
                    step.status = StepStatus::Skipped;
                    step.error = Some(format!("skipped by {by} after an interrupted attempt"));
                    step.finished_at = now_ms();
                }
                Resolution::Fail => {
                    step.status = StepStatus::Failed;
                    step.error = Some(format!("marked failed by {by} after an interrupted attempt"));
                    step.finished_at = now_ms();
                }
            }
            Ok(vec![step_event(step)])
        })
        .await
    }

    /// Cancels a run: running steps are stopped, nothing else starts.
    pub async fn cancel(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        let run_id = self.inner.store.resolve_run_id(run_id)?;
        let active = self.activate(&run_id)?;
        let _guard = active.lock.lock().await;
        let mut run = self.load_run(&run_id)?;
        if run.status.is_terminal() {
            return Err(EngineError::WrongState(format!(
                "run {run_id} has already ended ({})",
                run_status_label(run.status)
            )));
        }
        active.cancel.cancel();
        let now = now_ms();
        let mut events = Vec::new();
        for step in run
            .steps
            .iter_mut()
            .filter(|step| !step.status.is_terminal())
        {
            step.status = StepStatus::Cancelled;
            step.finished_at = now;
            events.push(step_event(step));
        }
        run.status = RunStatus::Cancelled;
        run.finished_at = now;
        run.error = Some("cancelled by the operator".into());
        events.push(EventKind::RunStatus {
            status: run.status,
            error: run.error.clone(),
        });
        self.commit(&run, events)?;
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
        self.decide_run(run_id, |run| {
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
            Ok(vec![EventKind::RunStatus {
                status: run.status,
                error: run.error.clone(),
            }])
        })
        .await
    }

    /// Picks up every run that had not ended when the daemon stopped. A step that was running
    /// is re-run only if its plugin is idempotent; otherwise it becomes ambiguous.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let runs = self.inner.store.unfinished_runs()?;
        let count = runs.len();
        for mut run in runs {
            let mut events = Vec::new();
            for step in run
                .steps
                .iter_mut()
                .filter(|step| step.status == StepStatus::Running)
            {
                let idempotent = self
                    .inner
                    .plugins
                    .descriptor(&step.uses)
                    .is_ok_and(|descriptor| descriptor.idempotent);
                if idempotent {
                    step.status = StepStatus::Pending;
                } else {
                    step.status = StepStatus::Ambiguous;
                    step.error = Some(format!(
                        "the daemon stopped while attempt {} was running, so its result is unknown; \
                         decide with `runbook resolve {} {} retry|skip|fail`",
                        step.attempts, run.id, step.id
                    ));
                }
                events.push(step_event(step));
            }
            if !events.is_empty() {
                self.commit(&run, events)?;
            }
            tracing::info!(run = %run.id, "resuming run");
            self.schedule(run.id.clone());
        }
        self.inner.store.flush().await?;
        Ok(count)
    }

    /// Waits for in-flight work to stop after `shutdown` (steps are abandoned, and resumed or
    /// marked ambiguous at the next start).
    pub async fn shutdown(&self) {
        self.inner.stopping.cancel();
        for active in lock(&self.inner.active).values() {
            active.cancel.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn decide(
        &self,
        run_id: &str,
        step_id: &str,
        change: impl FnOnce(&mut RunRecord, &str) -> Result<Vec<EventKind>, EngineError>,
    ) -> Result<RunRecord, EngineError> {
        self.decide_run(run_id, |run| change(run, step_id)).await
    }

    /// Applies an operator's decision to a run that has not ended, durably, then lets the
    /// scheduler act on it.
    async fn decide_run(
        &self,
        run_id: &str,
        change: impl FnOnce(&mut RunRecord) -> Result<Vec<EventKind>, EngineError>,
    ) -> Result<RunRecord, EngineError> {
        let run_id = self.inner.store.resolve_run_id(run_id)?;
        let active = self.activate(&run_id)?;
        let run = {
            let _guard = active.lock.lock().await;
            let mut run = self.load_run(&run_id)?;
            if run.status.is_terminal() {
                return Err(EngineError::WrongState(format!(
                    "run {run_id} has already ended ({})",
                    run_status_label(run.status)
                )));
            }
            let events = change(&mut run)?;
            self.commit(&run, events)?;
            self.inner.store.flush().await?;
            run
        };
        self.schedule(run_id);
        Ok(run)
    }

    fn load_run(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        self.inner
            .store
            .run(run_id)?
            .ok_or_else(|| EngineError::Store(StoreError::RunNotFound(run_id.to_owned())))
    }

    /// Writes a run with its events, then publishes them.
    fn commit(&self, run: &RunRecord, events: Vec<EventKind>) -> Result<(), EngineError> {
        let stored = self.inner.store.commit(run, events)?;
        self.inner.publisher.publish(stored);
        Ok(())
    }

    /// The in-memory state of a run, created on first use.
    fn activate(&self, run_id: &str) -> Result<Arc<ActiveRun>, EngineError> {
        if let Some(active) = lock(&self.inner.active).get(run_id) {
            return Ok(active.clone());
        }
        let run = self.load_run(run_id)?;
        let runbook = self.pinned_runbook(&run)?;
        let mut active_runs = lock(&self.inner.active);
        Ok(active_runs
            .entry(run_id.to_owned())
            .or_insert_with(|| {
                Arc::new(ActiveRun {
                    lock: tokio::sync::Mutex::new(()),
                    in_flight: Mutex::new(HashSet::new()),
                    resuming: Mutex::new(HashSet::new()),
                    cancel: CancellationToken::new(),
                    runbook,
                    plugins: self.inner.plugins.snapshot(),
                })
            })
            .clone())
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

fn find_step<'a>(run: &'a mut RunRecord, step_id: &str) -> Result<&'a mut StepRecord, EngineError> {
    let run_id = run.id.clone();
    run.step_mut(step_id)
        .ok_or_else(|| EngineError::UnknownStep {
            run: run_id,
            step: step_id.to_owned(),
        })
}

fn waiting_for_approval<'a>(
    run: &'a mut RunRecord,
    step_id: &str,
) -> Result<&'a mut StepRecord, EngineError> {
    let run_id = run.id.clone();
    let step = find_step(run, step_id)?;
    let pending = step.status == StepStatus::Waiting
        && step
            .approval
            .as_ref()
            .is_some_and(|approval| approval.decision.is_none());
    if !pending {
        return Err(EngineError::WrongState(format!(
            "step `{step_id}` of run {run_id} is {}, not waiting for approval",
            status_label(step.status)
        )));
    }
    Ok(step)
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
    EventKind::StepStatus {
        step_id: step.id.clone(),
        status: step.status,
        attempt: step.attempts,
        error: step.error.clone(),
        output: if step.status.is_terminal() {
            step.output.clone()
        } else {
            None
        },
    }
}

/// The label of a run status, for example `timed_out`.
pub fn run_status_label(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

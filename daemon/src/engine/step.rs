//! One step's life: render its config, ask its plugin for a plan, wait for approval when
//! needed, then execute exactly that plan under its limits and record the result. A plugin
//! that answers `waiting` (an HTTP 202) hands over to `wait.rs`.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::context::render_step_config;
use super::output::{EmitBatch, OutputBatcher, OutputLimits};
use super::transition::Ending;
use super::{ActiveRun, Engine, EngineError, lock};
use crate::plugins::{
    ConnectionUrl, Effect, EventSink, Grant, Outcome, Plan, PluginError, PluginEvent, PluginHost,
    SecretScope, SqlGrant, StepContext, StepError, Waiting,
};
use crate::runbook::retry::FailureClass;
use crate::runbook::{RetryPolicy, Step};
use crate::store::{ApprovalRecord, AsyncWait, EventKind, StepStatus, now_ms};
use crate::targets::{Admission, Verdict};

impl Ending {
    /// What the outcome says about the target's health, for its circuit breaker: an answer,
    /// even a 4xx or a failed expectation, means it is up.
    pub(super) fn verdict(&self) -> Verdict {
        match self {
            Self::Failed {
                class: FailureClass::Transient | FailureClass::Timeout,
                ..
            } => Verdict::Unhealthy,
            _ => Verdict::Healthy,
        }
    }
}

/// A step's config rendered for one call, and what the call runs under.
pub(super) struct Prepared {
    pub config: String,
    pub timeout: Duration,
    /// The target the step calls, with its rendered base URL.
    pub target: Option<(crate::runbook::Target, String)>,
    /// The runbook's connection URLs, rendered (secrets as placeholders).
    pub connections: std::collections::BTreeMap<String, String>,
    /// The connection the step's config names (`connection`): the only one its plan may use.
    pub connection: Option<String>,
}

impl Engine {
    /// Renders a step's `with` against `values` (its [`super::context::step_values`]):
    /// targets resolved, secrets as placeholders.
    pub(super) fn prepare_call(
        &self,
        active: &ActiveRun,
        values: serde_json::Value,
        definition: &Step,
    ) -> Result<Prepared, String> {
        let (config, connections) = render_step_config(
            values,
            &active.runbook,
            definition,
            self.inner.secrets.as_deref(),
        )
        .map_err(|err| format!("cannot render `with`: {err}"))?;
        let target = definition
            .target
            .as_ref()
            .and_then(|name| active.runbook.target(name))
            .map(|target| {
                let url = config["target"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (target.clone(), url)
            });
        Ok(Prepared {
            connection: config["connection"].as_str().map(str::to_owned),
            config: config.to_string(),
            timeout: definition.timeout.unwrap_or(self.inner.policy.step_timeout),
            target,
            connections,
        })
    }

    /// What a plan's SQL effects may run: each named connection with its URL (the runbook's
    /// own definition first, then the daemon config's) and the planned statements. A plan may
    /// name only the connection of the step's own config: what a human reads in the runbook
    /// is what the step reaches.
    pub(super) fn sql_grants(
        &self,
        plugins: &PluginHost,
        kind: &str,
        plan: &Plan,
        prepared: &Prepared,
    ) -> Result<Vec<SqlGrant>, String> {
        // A user plugin reaches only the connections the operator granted it.
        let granted = plugins.user_grant(kind).map(|grant| grant.connections);
        crate::plugins::planned_sql(plan)
            .map(|spec| {
                if prepared.connection.as_deref() != Some(spec.connection.as_str()) {
                    return Err(match &prepared.connection {
                        Some(own) => format!(
                            "the plan names connection `{}`, but the step's connection is `{own}`",
                            spec.connection
                        ),
                        None => format!(
                            "the plan names connection `{}`, but the step names no `connection`",
                            spec.connection
                        ),
                    });
                }
                if let Some(granted) = &granted
                    && !granted.contains(&spec.connection)
                {
                    return Err(format!(
                        "plugin `{kind}` is not granted connection `{0}`; grant it with `runbook plugin grant {kind} --connection {0}`",
                        spec.connection
                    ));
                }
                let url = match prepared.connections.get(&spec.connection) {
                    Some(url) => ConnectionUrl::Text(url.clone()),
                    None => self
                        .inner
                        .policy
                        .connections
                        .get(&spec.connection)
                        .cloned()
                        .ok_or_else(|| {
                            format!(
                                "unknown connection `{}`; define it in the daemon config or in a [connections.{0}] table",
                                spec.connection
                            )
                        })?,
                };
                Ok(SqlGrant {
                    connection: spec.connection.clone(),
                    url,
                    statements: spec.statements.clone(),
                    read_only: !crate::plugins::host_judges_writes(spec),
                })
            })
            .collect()
    }

    /// Whether what a plan would do needs an approval, whatever its plugin says of itself:
    /// running a process, or SQL that writes (as the daemon judges the statements; a plugin's
    /// `writes` flag can only add to that), waits for a human unless the operator's policy
    /// says `auto` for the step's kind (for SQL writes, `database_writes = "auto"` too;
    /// `database_writes = "required"` holds whatever the kind's entry says).
    pub(super) fn plan_needs_approval(
        &self,
        plugins: &PluginHost,
        kind: &str,
        plan: &Plan,
    ) -> bool {
        use super::ApprovalPolicy::{Auto, Required};
        let approvals = &self.inner.policy.approvals;
        let kind_auto = self
            .inner
            .policy
            .approval_of(kind, granted_approval(plugins, kind))
            == Some(Auto);
        let runs_process = plan
            .effects
            .iter()
            .any(|effect| matches!(effect, Effect::Process(_)));
        let writes = plan.effects.iter().any(
            |effect| matches!(effect, Effect::Sql(spec) if spec.writes || crate::plugins::host_judges_writes(spec)),
        );
        let writes_policy = approvals.get("database_writes");
        (runs_process && !kind_auto)
            || (writes
                && (writes_policy == Some(&Required)
                    || !(kind_auto || writes_policy == Some(&Auto))))
    }

    /// A fresh secret scope for one step attempt's calls: the secrets its templates (and its
    /// target's) name, and no other.
    pub(super) fn secret_scope(
        &self,
        runbook: &crate::runbook::Runbook,
        step: &Step,
    ) -> SecretScope {
        let mut texts = Vec::new();
        super::collect_strings(&step.with, &mut texts);
        if let Some(target) = step.target.as_ref().and_then(|name| runbook.target(name)) {
            texts.push(target.url.clone());
            super::collect_strings(&target.headers, &mut texts);
            if let Some(auth) = &target.auth {
                super::collect_strings(auth, &mut texts);
            }
        }
        SecretScope::new(self.inner.secrets.clone(), super::secret_names(&texts))
    }

    /// Passes a step's target's gates: refused while its circuit is open, held until a
    /// rate-limit permit is there (recorded with the step, and said in its log). The admission
    /// carries the attempt's verdict back to the circuit breaker. `status` is the step's
    /// (running, or waiting while it looks at an async invocation again).
    pub(super) async fn pass_gates(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        status: StepStatus,
        sink: &EventSink,
        prepared: &Prepared,
    ) -> Result<Admission, Ending> {
        let Some((target, url)) = &prepared.target else {
            return Ok(Admission::untargeted());
        };
        let gates = &self.inner.targets;
        let admission = gates
            .admit(&active.runbook.name, target, url)
            .map_err(|open| Ending::Failed {
                error: open.message,
                output: None,
                class: FailureClass::Transient,
                retry_after: Some(open.retry_after),
            })?;
        if let Some(waiter) = gates.permit(&active.runbook.name, target) {
            // Only a step that waits pays for describing its wait.
            let limit = target
                .rate_limit
                .as_ref()
                .map(|limit| limit.text.clone())
                .unwrap_or_default();
            let wait_ms = u64::try_from(waiter.wait.as_millis()).unwrap_or(u64::MAX);
            let wait = crate::store::PermitWait {
                target: target.name.clone(),
                limit: limit.clone(),
                until: now_ms().saturating_add_unsigned(wait_ms),
            };
            // Not flushed: a wait lost in a crash changes nothing, the step is recovered by
            // its start. A failed write is the store's to report; the wait goes on.
            if let Err(err) = self
                .update_step(active, position, status, |step| step.hold_for_permit(wait))
                .await
            {
                tracing::warn!(error = %err, "cannot record a rate-limit wait");
            }
            sink(PluginEvent::Log {
                level: crate::plugins::Level::Info,
                message: format!(
                    "waiting {} for a rate-limit permit of target `{}` ({limit})",
                    humantime::format_duration(Duration::from_millis(wait_ms)),
                    target.name
                ),
            });
            waiter.ready().await;
        }
        Ok(admission)
    }

    pub(super) async fn run_step(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        position: usize,
    ) -> Result<(), EngineError> {
        // A stopping daemon starts no step, not even one whose task was spawned just before:
        // it stays pending and runs after the next start.
        if self.inner.stopping.is_cancelled() {
            return Ok(());
        }
        let definition = &active.runbook.steps[position];
        if definition.each.is_some() {
            return self.run_loop(active, run_id, position).await;
        }
        let step_id = definition.id.as_str();
        // What the step reads, copied out so that rendering runs without the run's lock.
        let (values, attempts, key_attempt, approval, dry_run, version) = {
            let state = lock(&active.state);
            let record = &state.run.steps[position];
            (
                super::context::step_values(&state, definition),
                record.attempts,
                record.key_attempt(record.attempts + 1),
                record.approval.clone(),
                state.run.dry_run,
                state.run.version.clone(),
            )
        };
        let prepared = match self.prepare_call(active, values.clone(), definition) {
            Ok(prepared) => prepared,
            Err(err) => return self.finish_early(active, position, err).await,
        };
        let attempt = attempts + 1;
        let ctx = step_context(run_id, step_id, attempt, key_attempt);
        let plugins = &active.plugins;
        let scope = self.secret_scope(&active.runbook, definition);
        let Planning {
            needs_approval,
            planned,
            idempotent,
        } = self.planning(plugins, definition, dry_run);
        let plan =
            match plan_call(plugins, definition, ctx.clone(), &prepared, &scope, planned).await {
                Ok(plan) => plan,
                Err(err) => return self.finish_early(active, position, err).await,
            };
        if dry_run {
            let output =
                serde_json::json!({ "dry_run": true, "plan": plan_for_humans(&plan, &scope) });
            return self.finish_dry(active, position, output).await;
        }

        let mut sql = match self.sql_grants(plugins, &definition.uses, &plan, &prepared) {
            Ok(sql) => sql,
            Err(err) => return self.finish_early(active, position, err).await,
        };
        if needs_approval || self.plan_needs_approval(plugins, &definition.uses, &plan) {
            let plan_hash = plan_hash(&version, &plan);
            if !approves(approval.as_ref(), &plan_hash) {
                let shown = plan_for_humans(&plan, &self.approval_scope());
                return self
                    .request_approval(
                        active,
                        position,
                        plan.summary.clone(),
                        shown,
                        (plan_hash, Vec::new()),
                    )
                    .await;
            }
            // A human read these statements and said yes: they run as written, even where
            // the daemon judged them read-only (`select f()` of a function that writes).
            for grant in &mut sql {
                grant.read_only = false;
            }
        }

        // Record the attempt and make it durable before the side effect starts: after a crash
        // the step is then known to have started.
        let started = self
            .update_step(active, position, StepStatus::Pending, |step| {
                step.start(attempt, now_ms())
            })
            .await?;
        if !started {
            return Ok(());
        }
        // Only a step that must not run twice needs its start on disk first; an idempotent
        // one lost in a crash is simply run again.
        if !idempotent {
            self.inner.store.flush().await?;
        }

        // Everything the attempt prints goes through one batcher, in order and within the
        // attempt's output budget.
        let output = self.output_batcher(run_id, step_id, None);
        // A plugin's inputs are the params and the steps its templates read, and what an
        // operator typed when confirming an instruction step.
        let mut inputs =
            serde_json::json!({ "params": values["params"], "steps": values["steps"] });
        if let Some(confirmed) = approval
            .as_ref()
            .and_then(|approval| approval.decision.as_ref())
            .and_then(|decision| decision.inputs.clone())
        {
            inputs["confirmed"] = serde_json::Value::Object(confirmed);
        }
        let call = Call {
            prepared: &prepared,
            plan: &plan,
            sql,
            scope: &scope,
            ctx,
            inputs: inputs.to_string(),
        };
        let ending = match self
            .call_execute(active, position, definition, call, &output, &active.cancel)
            .await
        {
            // Cancelling already recorded the step as cancelled.
            CallEnd::Cancelled => {
                output.finish();
                return Ok(());
            }
            CallEnd::Waiting(waiting) => {
                output.finish();
                return self
                    .start_wait(active, position, waiting, &prepared, &scope)
                    .await;
            }
            CallEnd::Unknown(why) => {
                output.finish();
                self.update_step(active, position, StepStatus::Running, |step| {
                    step.lose(&why, run_id, now_ms())
                })
                .await?;
                return Ok(());
            }
            CallEnd::Ended(ending) => ending,
        };
        // The output is stored before the result, so it comes first in the run's events.
        let summary = output.finish();
        self.finish_attempt(
            active,
            position,
            StepStatus::Running,
            ending,
            definition.retry.as_ref(),
            summary.omitted_bytes,
        )
        .await
    }

    /// Runs one `execute` call of a step's plugin under the grant its plan gives, past its
    /// target's gates, until it ends, waits for an async invocation, or `cancel` fires.
    pub(super) async fn call_execute(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        definition: &Step,
        call: Call<'_>,
        output: &OutputBatcher,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> CallEnd {
        let Call {
            prepared,
            plan,
            sql,
            scope,
            ctx,
            inputs,
        } = call;
        // A rate-limit permit may be far off: a cancel or a stop does not wait for it.
        let sink = output.sink();
        let gates = tokio::select! {
            gates = self.pass_gates(active, position, StepStatus::Running, &sink, prepared) => gates,
            () = cancel.cancelled() => return CallEnd::Cancelled,
        };
        let admission = match gates {
            Err(refused) => return CallEnd::Ended(refused),
            Ok(admission) => admission,
        };
        let deadline = tokio::time::Instant::now() + prepared.timeout;
        let grant = Grant {
            processes: crate::plugins::planned_processes(plan),
            sql,
            sink: output.sink(),
            network: true,
            insecure_redirects: definition.allow_insecure_redirects,
            on_spawn: Some(self.spawn_recorder(active, position)),
            deadline: Some(deadline),
            secrets: scope.clone(),
        };
        let remote = self
            .inner
            .dispatcher
            .get()
            .filter(|_| !definition.runs_on.is_empty());
        let execution = async {
            let Some(dispatcher) = remote else {
                let answer = active.plugins.execute(
                    &definition.uses,
                    ctx,
                    &prepared.config,
                    &inputs,
                    grant,
                    prepared.timeout,
                );
                return crate::cluster::RemoteAnswer::Answered(answer.await);
            };
            if !grant.sql.is_empty() {
                return crate::cluster::RemoteAnswer::Answered(Ok(Err(StepError {
                    message: "a step whose plan sends SQL cannot run on an agent (`runs_on`): agents have no database connections".into(),
                    output: None,
                    transient: false,
                    retry_after_ms: None,
                })));
            }
            let call = crate::cluster::RemoteCall {
                labels: &definition.runs_on,
                kind: &definition.uses,
                ctx,
                config: &prepared.config,
                call: crate::cluster::wire::Call::Execute { inputs },
                processes: grant.processes,
                insecure_redirects: grant.insecure_redirects,
                timeout: prepared.timeout,
                scope,
                sink: grant.sink,
                idempotent: active
                    .plugins
                    .descriptor(&definition.uses)
                    .is_ok_and(|descriptor| descriptor.idempotent),
                plugin: crate::cluster::RemotePlugin::of(&active.plugins, &definition.uses),
                on_dispatch: Some(self.dispatch_recorder(active, position)),
            };
            dispatcher.execute(call).await
        };
        let result = tokio::select! {
            result = execution => result,
            () = cancel.cancelled() => return CallEnd::Cancelled,
        };
        let result = match result {
            crate::cluster::RemoteAnswer::Answered(result) => result,
            crate::cluster::RemoteAnswer::Unknown(why) => return CallEnd::Unknown(why),
        };
        match result {
            Ok(Ok(Outcome::Waiting(waiting))) => {
                admission.record(Verdict::Healthy);
                CallEnd::Waiting(waiting)
            }
            other => {
                let ending = timed_out_if_late(
                    ending_of(other, prepared.timeout, scope),
                    deadline,
                    prepared.timeout,
                );
                admission.record(ending.verdict());
                CallEnd::Ended(ending)
            }
        }
    }

    /// Records how an attempt ended: completed, failed, or failed with another attempt due
    /// after the retry policy's delay. `expected` is the status the step must still be in.
    pub(super) async fn finish_attempt(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        expected: StepStatus,
        ending: Ending,
        retry: Option<&RetryPolicy>,
        output_omitted: u64,
    ) -> Result<(), EngineError> {
        self.update_step(active, position, expected, |step| {
            step.log_omitted_bytes = step.log_omitted_bytes.saturating_add(output_omitted);
            let mut ending = ending;
            // An operator's retry of the run gives the step its whole budget again.
            let attempts = step.attempts.saturating_sub(step.attempts_before_retry);
            let retry_delay = match (&mut ending, retry) {
                (
                    Ending::Failed {
                        class,
                        retry_after,
                        error,
                        output,
                    },
                    Some(policy),
                ) => match policy.retries(attempts, *class, error, output.as_ref()) {
                    Ok(true) => Some(policy.delay_after(attempts, *retry_after, fastrand::f64())),
                    Ok(false) => None,
                    // The attempt's own error stays first: it is what went wrong.
                    Err(problem) => {
                        error.push_str(&format!("; not retried: {problem}"));
                        None
                    }
                },
                _ => None,
            };
            step.finish(ending, retry_delay, now_ms())
        })
        .await?;
        Ok(())
    }

    /// Parks a step whose plugin answered `waiting`: the token is stored, so the wait
    /// survives a restart, and the scheduler resumes it when it is due.
    async fn start_wait(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        waiting: Waiting,
        prepared: &Prepared,
        scope: &SecretScope,
    ) -> Result<(), EngineError> {
        let now = now_ms();
        let limit = waiting
            .wait_timeout_ms
            .map_or(prepared.timeout, Duration::from_millis);
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let queue = active.runbook.steps[position].wait_queue.as_deref();
        // A step that waits on a queue is told, not asked: it is only looked at when its
        // time is up.
        let poll_ms = if queue.is_some() {
            limit_ms
        } else {
            waiting.poll_after_ms
        };
        let invocation = waiting.invocation_id.clone();
        if let (Some(queue), None) = (queue, &invocation) {
            let ending = Ending::Failed {
                error: format!(
                    "the step waits on queue {queue}, but its plugin gave no invocation id to match completions with"
                ),
                output: None,
                class: FailureClass::Permanent,
                retry_after: None,
            };
            return self
                .finish_attempt(active, position, StepStatus::Running, ending, None, 0)
                .await;
        }
        let what = invocation.as_deref().map_or_else(
            || "the async invocation".to_owned(),
            |id| format!("invocation {id}"),
        );
        let message = scope.mask(&match queue {
            Some(queue) => format!(
                "waiting for the completion of {what} on queue {queue}, for at most {}",
                humantime::format_duration(limit)
            ),
            None => format!(
                "waiting for {what}; checking every {}, for at most {}",
                humantime::format_duration(Duration::from_millis(poll_ms)),
                humantime::format_duration(limit)
            ),
        });
        let changed = self
            .update_step(active, position, StepStatus::Running, |step| {
                let wait = AsyncWait {
                    token: waiting.resume_token,
                    invocation_id: waiting.invocation_id,
                    resume_at: now.saturating_add_unsigned(poll_ms),
                    deadline: now.saturating_add_unsigned(limit_ms),
                    since: now,
                    poll_ms,
                };
                step.wait_for(wait, &message)
            })
            .await?;
        if changed {
            self.inner.store.flush().await?;
        }
        Ok(())
    }

    /// How a step's calls are planned, as the plugins in `plugins` (a run's snapshot) say.
    pub(super) fn planning(
        &self,
        plugins: &PluginHost,
        definition: &Step,
        dry_run: bool,
    ) -> Planning {
        let descriptor = plugins.descriptor(&definition.uses).ok();
        let needs_approval = self.needs_approval_by(plugins, definition);
        Planning {
            needs_approval,
            // A plan is asked for when someone is to see it (a dry run, an approval) or when
            // the call's grant comes from it; otherwise the step skips a whole plugin call.
            planned: dry_run
                || needs_approval
                || descriptor
                    .as_deref()
                    .is_none_or(crate::plugins::Descriptor::grants_come_from_plans),
            idempotent: descriptor.is_some_and(|d| d.idempotent),
        }
    }

    /// A runbook may ask for an approval the daemon's policy does not require, but never
    /// waive one it does: the policy belongs to the operator, the file to its author.
    pub fn needs_approval(&self, definition: &crate::runbook::Step) -> bool {
        self.needs_approval_by(&self.inner.plugins, definition)
    }

    /// [`Engine::needs_approval`] as the plugins in `plugins` (a run's snapshot) say.
    pub(super) fn needs_approval_by(
        &self,
        plugins: &PluginHost,
        definition: &crate::runbook::Step,
    ) -> bool {
        definition.approval == Some(true)
            || self.inner.policy.requires_approval(
                &definition.uses,
                granted_approval(plugins, &definition.uses),
                |kind| {
                    plugins
                        .descriptor(kind)
                        .map_or(true, |descriptor| descriptor.needs_approval)
                },
            )
    }

    /// Makes a step wait for a human to approve `plan` (as [`plan_for_humans`] shows it),
    /// durably: given for the plan hashed as `plan_hash` (and, for a loop, its instances'
    /// plans by index).
    pub(super) async fn request_approval(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        summary: String,
        plan: serde_json::Value,
        (plan_hash, instance_plans): (String, Vec<(usize, String)>),
    ) -> Result<(), EngineError> {
        let definition = &active.runbook.steps[position];
        let approval = ApprovalRecord {
            summary,
            plan,
            plan_hash,
            requested_at: now_ms(),
            decision: None,
            instruction: definition.uses == crate::runbook::INSTRUCTION_KIND,
            inputs: definition.inputs.clone(),
            instance_plans,
        };
        self.update_step(active, position, StepStatus::Pending, |step| {
            step.ask_approval(approval)
        })
        .await?;
        self.inner.store.flush().await?;
        Ok(())
    }

    /// What approvers see of secrets in a plan: none of their values.
    pub(super) fn approval_scope(&self) -> SecretScope {
        SecretScope::new(self.inner.secrets.clone(), Default::default())
    }

    /// Ends a step of a dry run with its plan, as approvers would see it, as its output.
    pub(super) async fn finish_dry(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        output: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.update_step(active, position, StepStatus::Pending, |step| {
            step.finish_dry(output, now_ms())
        })
        .await?;
        Ok(())
    }

    /// Fails a step that never got to run (its config or plan is broken).
    pub(super) async fn finish_early(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        error: String,
    ) -> Result<(), EngineError> {
        self.update_step(active, position, StepStatus::Pending, |step| {
            step.fail_before_start(error, now_ms())
        })
        .await?;
        Ok(())
    }

    /// Changes one step if it is still in `expected` (a cancel or an operator decision may
    /// have moved it meanwhile) and commits it. Returns whether it changed.
    pub(super) async fn update_step(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        expected: StepStatus,
        change: impl FnOnce(&mut crate::store::StepRecord) -> Vec<EventKind>,
    ) -> Result<bool, EngineError> {
        self.transition(active, |state| {
            if state.run.status.is_terminal() || state.run.steps[position].status != expected {
                return Ok((Default::default(), Vec::new(), false));
            }
            let (events, changes) = super::changed_step(state, position, change);
            Ok((changes, events, true))
        })
    }

    /// Records each process group a step's attempt starts with the step, durably, so that
    /// recovery after a crash can kill what is left of it.
    fn spawn_recorder(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
    ) -> crate::plugins::SpawnHook {
        let engine = self.clone();
        let active = Arc::clone(active);
        Arc::new(move |pgid, started| {
            let engine = engine.clone();
            let active = Arc::clone(&active);
            Box::pin(async move {
                let group = crate::store::ProcessGroup {
                    pgid,
                    started,
                    boot_id: crate::plugins::boot_id(),
                };
                if let Err(err) = engine
                    .record_durably(&active, position, |step| step.process_groups.push(group))
                    .await
                {
                    tracing::warn!(error = %err, pgid, "cannot record a step's process group");
                }
            })
        })
    }

    /// Records each dispatch of a step's attempt to an agent with the step, durably, so that
    /// recovery after a crash can withdraw it.
    fn dispatch_recorder(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
    ) -> crate::cluster::DispatchHook {
        let engine = self.clone();
        let active = Arc::clone(active);
        Arc::new(move |dispatch| {
            let engine = engine.clone();
            let active = Arc::clone(&active);
            Box::pin(async move {
                if let Err(err) = engine
                    .record_durably(&active, position, |step| step.dispatches.push(dispatch))
                    .await
                {
                    tracing::warn!(error = %err, "cannot record a step's dispatch");
                }
            })
        })
    }

    /// Changes the running step's record and makes it durable (what recovery after a crash
    /// must find: what the attempt started outside the daemon).
    async fn record_durably(
        &self,
        active: &Arc<ActiveRun>,
        position: usize,
        change: impl FnOnce(&mut crate::store::StepRecord),
    ) -> Result<(), EngineError> {
        self.update_step(active, position, StepStatus::Running, |step| {
            change(step);
            Vec::new()
        })
        .await?;
        Ok(self.inner.store.flush().await?)
    }

    /// The batcher of one attempt's (or one look's, or one loop instance's) output: batches
    /// of lines are stored in the run's event log and published, within the daemon's output
    /// budget. A loop instance's lines go to its step's log, each prefixed with `[index] `,
    /// so that the lines of instances running side by side are told apart.
    pub(super) fn output_batcher(
        &self,
        run_id: &str,
        step_id: &str,
        instance: Option<usize>,
    ) -> OutputBatcher {
        let store = self.inner.store.clone();
        let publisher = self.inner.publisher.clone();
        let run_id = run_id.to_owned();
        let step_id = step_id.to_owned();
        let emit: EmitBatch = Arc::new(move |stream, line| {
            let line = match instance {
                Some(index) => line
                    .split('\n')
                    .map(|line| format!("[{index}] {line}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => line,
            };
            match store.append(
                &run_id,
                vec![EventKind::StepOutput {
                    step_id: step_id.clone(),
                    stream,
                    line,
                }],
            ) {
                Ok(stored) => publisher.publish(stored),
                Err(err) => {
                    tracing::error!(run = %run_id, error = %err, "cannot store step output")
                }
            }
        });
        OutputBatcher::new(
            emit,
            OutputLimits::with_budget(self.inner.policy.output_budget),
        )
    }
}

/// How a step's calls are planned.
pub(super) struct Planning {
    /// It waits for an approval whatever its plan says.
    pub needs_approval: bool,
    /// Its plugin is asked for a plan (else the call runs under a plan that grants nothing).
    pub planned: bool,
    /// Its plugin may run twice: its start need not be on disk before its side effect.
    pub idempotent: bool,
}

/// What `runbook plugin grant --approval` set for a user plugin's kind.
fn granted_approval(plugins: &PluginHost, kind: &str) -> Option<super::ApprovalPolicy> {
    plugins
        .user_grant(kind)
        .and_then(|grant| grant.approval)
        .map(Into::into)
}

/// Whether an approval given earlier is for exactly the plan hashed as `plan_hash`, and
/// said yes.
pub(super) fn approves(approval: Option<&ApprovalRecord>, plan_hash: &str) -> bool {
    approval.is_some_and(|approval| {
        approval.plan_hash == plan_hash && approval.decision.as_ref().is_some_and(|d| d.approved)
    })
}

/// One `execute` call: the rendered config, the plan that grants it, and what it reads.
pub(super) struct Call<'a> {
    pub prepared: &'a Prepared,
    pub plan: &'a Plan,
    pub sql: Vec<SqlGrant>,
    pub scope: &'a SecretScope,
    pub ctx: StepContext,
    /// The plugin's `inputs` JSON.
    pub inputs: String,
}

/// How an `execute` call ended.
pub(super) enum CallEnd {
    Ended(Ending),
    /// The plugin started work elsewhere and waits for it.
    Waiting(Waiting),
    /// The run was cancelled (or the loop's `fail_fast` fired) while it ran.
    Cancelled,
    /// Whether the step ran is unknown: its agent fell silent mid-step, and it must not run
    /// twice.
    Unknown(String),
}

/// A step's plan for one call when it needs one (`planned`): someone is to see it, or the
/// call's grant comes from it. Otherwise a plan that grants nothing, saving a plugin call.
/// `Err` says why the step cannot run.
pub(super) async fn plan_call(
    plugins: &PluginHost,
    definition: &Step,
    ctx: StepContext,
    prepared: &Prepared,
    scope: &SecretScope,
    planned: bool,
) -> Result<Plan, String> {
    if !planned {
        return Ok(Plan::unplanned());
    }
    match plugins.plan(&definition.uses, ctx, &prepared.config).await {
        Ok(Ok(plan)) => Ok(mask_plan(plan, scope)),
        Ok(Err(err)) => Err(format!("cannot plan: {}", scope.mask(&err.message))),
        Err(err) => Err(err.to_string()),
    }
}

/// How much of a process's stdin an approval shows.
const STDIN_PREVIEW: usize = 64 * 1024;

/// What an approval is given for: the exact plan (env values and stdin included) of one
/// runbook version.
pub(super) fn plan_hash(version: &str, plan: &Plan) -> String {
    let mut hasher = Sha256::new();
    hasher.update(version.as_bytes());
    hasher.update(serde_json::to_vec(plan).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// The plan as shown to approvers: argv and cwd in full, env by name only (values may be
/// secrets), stdin as its size.
pub(super) fn plan_for_humans(plan: &Plan, scope: &SecretScope) -> serde_json::Value {
    let effects: Vec<serde_json::Value> = plan
        .effects
        .iter()
        .map(|effect| match effect {
            // Everything the process gets is shown, secrets masked: an approver who sees
            // only the argv could be shown `sh -s` and approve whatever stdin holds. A long
            // stdin is shown up to a preview (the approval travels in every `Run` message);
            // its size and hash cover all of it.
            Effect::Process(spec) => {
                let stdin = spec.stdin.as_deref().map(|stdin| scope.mask_placeholders(stdin));
                serde_json::json!({
                "process": {
                    "argv": spec.argv.iter().map(|arg| scope.mask_placeholders(arg)).collect::<Vec<_>>(),
                    "env": spec.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                    "env_values": spec
                        .env
                        .iter()
                        .map(|(name, value)| (name.clone(), serde_json::Value::String(scope.mask_placeholders(value))))
                        .collect::<serde_json::Map<_, _>>(),
                    "cwd": spec.cwd.as_deref().map(|cwd| scope.mask_placeholders(cwd)),
                    "stdin": stdin.as_deref().map(|stdin| &stdin[..stdin.floor_char_boundary(STDIN_PREVIEW)]),
                    "stdin_truncated": stdin.as_ref().is_some_and(|stdin| stdin.len() > STDIN_PREVIEW),
                    "stdin_bytes": stdin.as_ref().map(String::len),
                    "stdin_sha256": stdin
                        .as_ref()
                        .map(|stdin| hex::encode(Sha256::digest(stdin.as_bytes()))),
                }
            })
            }
            Effect::Sql(spec) => serde_json::json!({
                "sql": {
                    "connection": spec.connection,
                    "statements": spec.statements.iter().map(|sql| scope.mask_placeholders(sql)).collect::<Vec<_>>(),
                    "writes": spec.writes,
                }
            }),
            Effect::Note(note) => serde_json::json!({ "note": note }),
        })
        .collect();
    serde_json::json!({ "summary": plan.summary, "effects": effects })
}

fn parse_output(text: &str) -> Option<serde_json::Value> {
    Some(serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned())))
}

/// Identifies one attempt. The key is that of attempt `key_attempt` of (run, step): the
/// attempt's own, or that of an attempt a daemon stop interrupted (see
/// [`crate::store::StepRecord::key_of_attempt`]).
pub(super) fn step_context(
    run_id: &str,
    step_id: &str,
    attempt: u32,
    key_attempt: u32,
) -> StepContext {
    StepContext {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        attempt,
        idempotency_key: format!("{run_id}:{step_id}:{key_attempt}"),
    }
}

/// How a finished `execute` or `resume` call ended, with secrets masked in what it said.
pub(super) fn ending_of(
    result: Result<Result<Outcome, StepError>, PluginError>,
    timeout: Duration,
    scope: &SecretScope,
) -> Ending {
    match result {
        Ok(Ok(Outcome::Done(output))) => Ending::Completed(parse_output(&scope.mask(&output))),
        Ok(Ok(Outcome::Waiting(_))) => Ending::Failed {
            error: "the plugin answered `waiting` where it had to finish".into(),
            output: None,
            class: FailureClass::Permanent,
            retry_after: None,
        },
        Ok(Err(err)) => Ending::Failed {
            output: err
                .output
                .as_deref()
                .and_then(|output| parse_output(&scope.mask(output))),
            error: scope.mask(&err.message),
            class: if err.transient {
                FailureClass::Transient
            } else {
                FailureClass::Permanent
            },
            retry_after: err.retry_after_ms.map(Duration::from_millis),
        },
        Err(PluginError::Timeout { .. }) => Ending::Failed {
            error: format!("timed out after {}", humantime::format_duration(timeout)),
            output: None,
            class: FailureClass::Timeout,
            retry_after: None,
        },
        // A trap or an exhausted limit would happen again.
        Err(err) => Ending::Failed {
            error: scope.mask(&err.to_string()),
            output: None,
            class: FailureClass::Permanent,
            retry_after: None,
        },
    }
}

/// A call that failed once the step's deadline had passed failed because of it: the host
/// cuts its own calls (an HTTP request, a process) short at the deadline, so the plugin
/// usually reports that before the call's own timeout fires, and the step must still end
/// `timed_out`, not `failed`, whichever of the two came first.
fn timed_out_if_late(ending: Ending, deadline: tokio::time::Instant, timeout: Duration) -> Ending {
    match ending {
        Ending::Failed {
            error,
            output,
            class: FailureClass::Transient | FailureClass::Permanent,
            ..
        } if tokio::time::Instant::now() >= deadline => Ending::Failed {
            error: format!(
                "timed out after {}: {error}",
                humantime::format_duration(timeout)
            ),
            output,
            class: FailureClass::Timeout,
            retry_after: None,
        },
        other => other,
    }
}

/// A plan as approvers and the store see it: placeholders of secrets shown as `***`. The
/// process specs keep them: the host substitutes values only when the process starts.
fn mask_plan(mut plan: Plan, scope: &SecretScope) -> Plan {
    plan.summary = scope.mask_placeholders(&plan.summary);
    for effect in &mut plan.effects {
        if let Effect::Note(note) = effect {
            *note = scope.mask_placeholders(note);
        }
    }
    plan
}

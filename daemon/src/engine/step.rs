//! One step's life: render its config, ask its plugin for a plan, wait for approval when
//! needed, then execute exactly that plan under its limits and record the result.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::context::template_context;
use super::{ActiveRun, Engine, EngineError, step_event};
use crate::plugins::{
    Effect, EventSink, Grant, Outcome, Plan, PluginError, PluginEvent, PluginHost, StepContext,
    StreamKind,
};
use crate::runbook::retry::FailureClass;
use crate::store::{
    ApprovalRecord, AttemptRecord, EventKind, OutputStream, RunRecord, StepStatus, now_ms,
};
use crate::template;

/// How a step's execution ended.
enum Ending {
    Completed(Option<serde_json::Value>),
    Failed {
        error: String,
        output: Option<serde_json::Value>,
        class: FailureClass,
        /// The far end's own wait before another try (Retry-After).
        retry_after: Option<Duration>,
    },
}

impl Engine {
    pub(super) async fn run_step(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
    ) -> Result<(), EngineError> {
        let run = self.load_run(run_id)?;
        let (Some(record), Some(definition)) = (run.step(step_id), active.runbook.step(step_id))
        else {
            return Err(EngineError::UnknownStep {
                run: run_id.to_owned(),
                step: step_id.to_owned(),
            });
        };
        let context = template_context(&run);
        let config = match template::render_json(&definition.with, &template::context(&context)) {
            Ok(config) => config.to_string(),
            Err(err) => {
                return self
                    .finish_early(
                        active,
                        run_id,
                        step_id,
                        format!("cannot render `with`: {err}"),
                    )
                    .await;
            }
        };
        let attempt = record.attempts + 1;
        let ctx = StepContext {
            run_id: run_id.to_owned(),
            step_id: step_id.to_owned(),
            attempt,
            idempotency_key: format!("{run_id}:{step_id}:{attempt}"),
        };
        let plugins = &active.plugins;
        let plan = match plugins.plan(&definition.uses, ctx.clone(), &config).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(err)) => {
                return self
                    .finish_early(
                        active,
                        run_id,
                        step_id,
                        format!("cannot plan: {}", err.message),
                    )
                    .await;
            }
            Err(err) => {
                return self
                    .finish_early(active, run_id, step_id, err.to_string())
                    .await;
            }
        };
        let plan_hash = plan_hash(&run.version, &plan);

        if self.needs_approval_by(plugins, definition) {
            let approved = record.approval.as_ref().is_some_and(|approval| {
                approval.plan_hash == plan_hash
                    && approval.decision.as_ref().is_some_and(|d| d.approved)
            });
            if !approved {
                return self
                    .request_approval(active, run_id, step_id, &plan, plan_hash)
                    .await;
            }
        }

        // Record the attempt and make it durable before the side effect starts: after a crash
        // the step is then known to have started.
        let started = self
            .update_step(active, run_id, step_id, StepStatus::Pending, |step| {
                step.status = StepStatus::Running;
                step.attempts = attempt;
                step.retry_at = 0;
                step.started_at = now_ms();
                step.finished_at = 0;
                step.error = None;
                step.output = None;
                vec![step_event(step)]
            })
            .await?;
        if !started {
            return Ok(());
        }
        // Only a step that must not run twice needs its start on disk first; an idempotent
        // one lost in a crash is simply run again.
        let idempotent = plugins
            .descriptor(&definition.uses)
            .is_ok_and(|d| d.idempotent);
        if !idempotent {
            self.inner.store.flush().await?;
        }

        let grant = Grant {
            processes: plan
                .effects
                .iter()
                .filter_map(|effect| match effect {
                    Effect::Process(spec) => Some(spec.clone()),
                    Effect::Note(_) => None,
                })
                .collect(),
            sink: self.output_sink(run_id, step_id),
        };
        let inputs = serde_json::json!({ "params": context["params"], "steps": context["steps"] })
            .to_string();
        let timeout = definition.timeout.unwrap_or(self.inner.policy.step_timeout);
        let execution = async {
            let mut result = plugins
                .execute(
                    &definition.uses,
                    ctx.clone(),
                    &config,
                    &inputs,
                    grant.clone(),
                    timeout,
                )
                .await;
            // A plugin that waits (an HTTP 202, say) is polled until it is done.
            while let Ok(Ok(Outcome::Waiting(waiting))) = &result {
                tokio::time::sleep(std::time::Duration::from_millis(waiting.poll_after_ms)).await;
                let token = waiting.resume_token.clone();
                result = plugins
                    .resume(
                        &definition.uses,
                        ctx.clone(),
                        &config,
                        &token,
                        grant.clone(),
                        timeout,
                    )
                    .await;
            }
            result
        };
        let result = tokio::select! {
            result = execution => result,
            // Cancelling already recorded the step as cancelled.
            () = active.cancel.cancelled() => return Ok(()),
        };
        let ending = match result {
            Ok(Ok(Outcome::Done(output))) => Ending::Completed(parse_output(&output)),
            Ok(Ok(Outcome::Waiting(_))) => {
                unreachable!("the loop above resumes until the step is done")
            }
            Ok(Err(err)) => Ending::Failed {
                output: err.output.as_deref().and_then(parse_output),
                error: err.message,
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
                error: err.to_string(),
                output: None,
                class: FailureClass::Permanent,
                retry_after: None,
            },
        };
        let retry = definition.retry.clone();
        self.update_step(active, run_id, step_id, StepStatus::Running, |step| {
            let finished = now_ms();
            step.history.push(AttemptRecord {
                attempt: step.attempts,
                started_at: step.started_at,
                finished_at: finished,
                error: match &ending {
                    Ending::Completed(_) => None,
                    Ending::Failed { error, .. } => Some(error.clone()),
                },
            });
            let retry_delay = match (&ending, &retry) {
                (
                    Ending::Failed {
                        class, retry_after, ..
                    },
                    Some(policy),
                ) if policy.allows_another(step.attempts, *class) => {
                    Some(policy.delay_after(step.attempts, *retry_after, fastrand::f64()))
                }
                _ => None,
            };
            match (ending, retry_delay) {
                (Ending::Completed(output), _) => {
                    step.status = StepStatus::Completed;
                    step.output = output;
                }
                (Ending::Failed { error, output, .. }, Some(delay)) => {
                    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    step.status = StepStatus::Pending;
                    step.retry_at = finished.saturating_add_unsigned(delay_ms);
                    step.error = Some(error.clone());
                    step.output = output;
                    return vec![
                        EventKind::StepRetrying {
                            step_id: step.id.clone(),
                            attempt: step.attempts,
                            delay_ms,
                            error,
                        },
                        step_event(step),
                    ];
                }
                (
                    Ending::Failed {
                        error,
                        output,
                        class,
                        ..
                    },
                    None,
                ) => {
                    step.status = if class == FailureClass::Timeout {
                        StepStatus::TimedOut
                    } else {
                        StepStatus::Failed
                    };
                    step.error = Some(error);
                    step.output = output;
                }
            }
            step.finished_at = finished;
            vec![step_event(step)]
        })
        .await?;
        Ok(())
    }

    /// A runbook may ask for an approval the daemon's policy does not require, but never
    /// waive one it does: the policy belongs to the operator, the file to its author.
    pub fn needs_approval(&self, definition: &crate::runbook::Step) -> bool {
        self.needs_approval_by(&self.inner.plugins, definition)
    }

    /// [`Engine::needs_approval`] as the plugins in `plugins` (a run's snapshot) say.
    fn needs_approval_by(&self, plugins: &PluginHost, definition: &crate::runbook::Step) -> bool {
        definition.approval == Some(true)
            || self
                .inner
                .policy
                .requires_approval(&definition.uses, |kind| {
                    plugins
                        .descriptor(kind)
                        .map_or(true, |descriptor| descriptor.needs_approval)
                })
    }

    async fn request_approval(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
        plan: &Plan,
        plan_hash: String,
    ) -> Result<(), EngineError> {
        let approval = ApprovalRecord {
            summary: plan.summary.clone(),
            plan: plan_for_humans(plan),
            plan_hash,
            requested_at: now_ms(),
            decision: None,
        };
        self.update_step(active, run_id, step_id, StepStatus::Pending, |step| {
            step.status = StepStatus::Waiting;
            step.approval = Some(approval.clone());
            vec![
                step_event(step),
                EventKind::ApprovalRequested {
                    step_id: step.id.clone(),
                    approval,
                },
            ]
        })
        .await?;
        self.inner.store.flush().await?;
        Ok(())
    }

    /// Fails a step that never got to run (its config or plan is broken).
    async fn finish_early(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
        error: String,
    ) -> Result<(), EngineError> {
        self.update_step(active, run_id, step_id, StepStatus::Pending, |step| {
            step.status = StepStatus::Failed;
            step.error = Some(error);
            step.finished_at = now_ms();
            vec![step_event(step)]
        })
        .await?;
        Ok(())
    }

    /// Changes one step if it is still in `expected` (a cancel or an operator decision may
    /// have moved it meanwhile). Returns whether it changed.
    async fn update_step(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
        expected: StepStatus,
        change: impl FnOnce(&mut crate::store::StepRecord) -> Vec<EventKind>,
    ) -> Result<bool, EngineError> {
        let _guard = active.lock.lock().await;
        let mut run: RunRecord = self.load_run(run_id)?;
        if run.status.is_terminal() {
            return Ok(false);
        }
        let Some(step) = run.step_mut(step_id).filter(|step| step.status == expected) else {
            return Ok(false);
        };
        let events = change(step);
        self.commit(&run, events)?;
        Ok(true)
    }

    /// Streams a step's output lines into its run's event log as they come.
    fn output_sink(&self, run_id: &str, step_id: &str) -> EventSink {
        let store = self.inner.store.clone();
        let publisher = self.inner.publisher.clone();
        let run_id = run_id.to_owned();
        let step_id = step_id.to_owned();
        Arc::new(move |event| {
            let (stream, line) = match event {
                PluginEvent::Output {
                    stream: StreamKind::Stdout,
                    line,
                } => (OutputStream::Stdout, line),
                PluginEvent::Output {
                    stream: StreamKind::Stderr,
                    line,
                } => (OutputStream::Stderr, line),
                PluginEvent::Log { level, message } => (
                    OutputStream::Log,
                    format!("{}: {message}", level_label(level)),
                ),
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
        })
    }
}

/// What an approval is given for: the exact plan (env values and stdin included) of one
/// runbook version.
fn plan_hash(version: &str, plan: &Plan) -> String {
    let mut hasher = Sha256::new();
    hasher.update(version.as_bytes());
    hasher.update(serde_json::to_vec(plan).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// The plan as shown to approvers: argv and cwd in full, env by name only (values may be
/// secrets), stdin as its size.
fn plan_for_humans(plan: &Plan) -> serde_json::Value {
    let effects: Vec<serde_json::Value> = plan
        .effects
        .iter()
        .map(|effect| match effect {
            Effect::Process(spec) => serde_json::json!({
                "process": {
                    "argv": spec.argv,
                    "env": spec.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                    "cwd": spec.cwd,
                    "stdin_bytes": spec.stdin.as_ref().map(String::len),
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

/// The label of a plugin's log level, as shown before the message.
fn level_label(level: crate::plugins::Level) -> &'static str {
    use crate::plugins::Level;
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

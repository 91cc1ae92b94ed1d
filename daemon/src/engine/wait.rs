//! Steps that wait for work they started elsewhere (an HTTP 202 with an invocation id): the
//! scheduler resumes them on a fresh plugin instance when their poll is due, until they are
//! done, failed, or past their wait's deadline; an operator or a callback may also complete
//! them from outside. The wait is stored with the run, so it survives a restart.

use std::sync::Arc;
use std::time::Duration;

use super::step::{Ending, ending_of, step_context};
use super::{ActiveRun, Engine, EngineError, find_step, status_label, step_event};
use crate::plugins::{Grant, Outcome, PluginError};
use crate::runbook::retry::FailureClass;
use crate::store::{AttemptRecord, EventKind, OutputStream, RunRecord, StepStatus, now_ms};

/// How a step is ended from outside.
#[derive(Debug, Clone)]
pub enum Completion {
    Completed(Option<serde_json::Value>),
    Failed(String),
}

impl Engine {
    /// Looks once at a waiting step: calls its plugin's `resume`, and records the answer.
    pub(super) async fn resume_step(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
    ) -> Result<(), EngineError> {
        let run = self.load_run(run_id)?;
        let (Some(record), Some(definition)) = (run.step(step_id), active.runbook.step(step_id))
        else {
            return Ok(());
        };
        let Some(wait) = record
            .wait
            .clone()
            .filter(|_| record.status == StepStatus::Waiting)
        else {
            return Ok(());
        };
        let now = now_ms();
        if wait.deadline > 0 && now >= wait.deadline {
            let waited =
                Duration::from_millis(u64::try_from(wait.deadline - wait.since).unwrap_or(0));
            let ending = Ending::Failed {
                error: format!(
                    "no completion within {}{}",
                    humantime::format_duration(waited),
                    wait.invocation_id
                        .as_deref()
                        .map(|id| format!(" (invocation {id})"))
                        .unwrap_or_default()
                ),
                output: None,
                class: FailureClass::Timeout,
                retry_after: None,
            };
            // The far side may still be working: starting it again is not ours to decide.
            return self
                .finish_attempt(active, run_id, step_id, StepStatus::Waiting, ending, None)
                .await;
        }
        let prepared = match self.prepare_call(active, &run, definition) {
            Ok(prepared) => prepared,
            Err(err) => {
                let ending = Ending::Failed {
                    error: err,
                    output: None,
                    class: FailureClass::Permanent,
                    retry_after: None,
                };
                return self
                    .finish_attempt(active, run_id, step_id, StepStatus::Waiting, ending, None)
                    .await;
            }
        };
        let scope = self.secret_scope(&active.runbook, definition);
        let left = Duration::from_millis(u64::try_from(wait.deadline - now).unwrap_or(0));
        let timeout = if wait.deadline > 0 {
            prepared.timeout.min(left)
        } else {
            prepared.timeout
        };
        if let Err(refused) = self.pass_gates(active, run_id, step_id, &prepared).await {
            // An open circuit postpones the look; it does not end the wait.
            let Ending::Failed { error, .. } = refused else {
                return Ok(());
            };
            return self
                .look_again(active, run_id, step_id, None, Some(error))
                .await;
        }
        let grant = Grant {
            processes: Vec::new(),
            sql: Vec::new(),
            sink: self.output_sink(run_id, step_id),
            network: true,
            deadline: Some(tokio::time::Instant::now() + timeout),
            secrets: scope.clone(),
        };
        let call = active.plugins.resume(
            &definition.uses,
            step_context(run_id, step_id, record.attempts),
            &prepared.config,
            &wait.token,
            grant,
            timeout,
        );
        let result = tokio::select! {
            result = call => result,
            () = active.cancel.cancelled() => return Ok(()),
        };
        match result {
            Ok(Ok(Outcome::Waiting(waiting))) => {
                self.record_verdict(active, &prepared, &Ending::Completed(None));
                self.look_again(active, run_id, step_id, Some(waiting), None)
                    .await
            }
            // A look that failed on the way (a refused connection, a timeout) says nothing
            // about the work: look again at the next poll.
            Ok(Err(err)) if err.transient => {
                let ending = ending_of(Ok(Err(err)), timeout, &scope);
                self.record_verdict(active, &prepared, &ending);
                let Ending::Failed { error, .. } = ending else {
                    return Ok(());
                };
                self.look_again(active, run_id, step_id, None, Some(error))
                    .await
            }
            Err(PluginError::Timeout { .. }) => {
                self.look_again(
                    active,
                    run_id,
                    step_id,
                    None,
                    Some(format!(
                        "the check did not answer within {}",
                        humantime::format_duration(timeout)
                    )),
                )
                .await
            }
            other => {
                let ending = ending_of(other, timeout, &scope);
                self.record_verdict(active, &prepared, &ending);
                self.finish_attempt(
                    active,
                    run_id,
                    step_id,
                    StepStatus::Waiting,
                    ending,
                    definition.retry.as_ref(),
                )
                .await
            }
        }
    }

    /// Keeps a step waiting and sets its next look: with the plugin's new token when it
    /// answered, else after its usual interval, saying why when a look failed.
    async fn look_again(
        &self,
        active: &Arc<ActiveRun>,
        run_id: &str,
        step_id: &str,
        waiting: Option<crate::plugins::Waiting>,
        problem: Option<String>,
    ) -> Result<(), EngineError> {
        self.update_step(active, run_id, step_id, StepStatus::Waiting, |step| {
            let Some(wait) = &mut step.wait else {
                return Vec::new();
            };
            let mut poll = wait.poll_ms;
            if let Some(waiting) = waiting {
                wait.token = waiting.resume_token;
                poll = waiting.poll_after_ms;
                wait.poll_ms = poll;
            }
            wait.resume_at = now_ms().saturating_add_unsigned(poll);
            problem
                .map(|problem| EventKind::StepOutput {
                    step_id: step.id.clone(),
                    stream: OutputStream::Log,
                    line: format!(
                        "warn: {problem}; looking again in {}",
                        humantime::format_duration(Duration::from_millis(poll))
                    ),
                })
                .into_iter()
                .collect()
        })
        .await?;
        Ok(())
    }

    /// Ends a step that waits for an async invocation, from outside. `step` is the step's
    /// id or the invocation id it waits for.
    pub async fn complete_step(
        &self,
        run_id: &str,
        step: &str,
        completion: Completion,
        by: &str,
    ) -> Result<RunRecord, EngineError> {
        self.decide(run_id, step, |run, step| {
            let run_id = run.id.clone();
            let step_id = run
                .steps
                .iter()
                .find(|record| {
                    record.id == step
                        || record
                            .wait
                            .as_ref()
                            .and_then(|wait| wait.invocation_id.as_deref())
                            == Some(step)
                })
                .map(|record| record.id.clone())
                .unwrap_or_else(|| step.to_owned());
            let record = find_step(run, &step_id)?;
            if record.status != StepStatus::Waiting || record.wait.is_none() {
                return Err(EngineError::WrongState(format!(
                    "step `{step_id}` of run {run_id} is {}, not waiting for an async invocation",
                    status_label(record.status)
                )));
            }
            let now = now_ms();
            let error = match &completion {
                Completion::Completed(_) => None,
                Completion::Failed(reason) => Some(format!(
                    "failed by {by}: {}",
                    if reason.is_empty() {
                        "no reason given"
                    } else {
                        reason
                    }
                )),
            };
            record.history.push(AttemptRecord {
                attempt: record.attempts,
                started_at: record.started_at,
                finished_at: now,
                error: error.clone(),
            });
            record.wait = None;
            record.finished_at = now;
            match completion {
                Completion::Completed(output) => {
                    record.status = StepStatus::Completed;
                    record.output = output;
                    record.error = None;
                }
                Completion::Failed(_) => {
                    record.status = StepStatus::Failed;
                    record.error = error;
                }
            }
            Ok(vec![
                EventKind::StepOutput {
                    step_id: record.id.clone(),
                    stream: OutputStream::Log,
                    line: format!("info: {} from outside by {by}", status_label(record.status)),
                },
                step_event(record),
            ])
        })
        .await
    }
}

/// The next moment a run's waiting steps need a look: a poll or a deadline.
pub(super) fn next_look(run: &RunRecord) -> Option<i64> {
    run.steps
        .iter()
        .filter(|step| step.status == StepStatus::Waiting)
        .filter_map(|step| step.wait.as_ref())
        .map(|wait| {
            if wait.deadline > 0 {
                wait.resume_at.min(wait.deadline)
            } else {
                wait.resume_at
            }
        })
        .min()
}

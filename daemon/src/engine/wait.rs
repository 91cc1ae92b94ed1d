//! Steps that wait for work they started elsewhere (an HTTP 202 with an invocation id): the
//! scheduler resumes them on a fresh plugin instance when their poll is due, until they are
//! done, failed, or past their wait's deadline; an operator or a callback may also complete
//! them from outside. The wait is stored with the run, so it survives a restart.

use std::sync::Arc;
use std::time::Duration;

use super::step::{ending_of, step_context};
use super::transition::Ending;
use super::{ActiveRun, Engine, EngineError, lock, status_label};
use crate::plugins::{Grant, Outcome, PluginError};
use crate::runbook::retry::FailureClass;
use crate::store::{RunRecord, StepStatus, now_ms};
use crate::targets::Verdict;

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
        position: usize,
    ) -> Result<(), EngineError> {
        let definition = &active.runbook.steps[position];
        let step_id = definition.id.as_str();
        let (values, attempts, key_attempt, wait) = {
            let state = lock(&active.state);
            let record = &state.run.steps[position];
            let wait = record
                .wait
                .clone()
                .filter(|_| record.status == StepStatus::Waiting);
            (
                super::context::step_values(&state, definition),
                record.attempts,
                record.key_attempt(record.attempts),
                wait,
            )
        };
        let Some(wait) = wait else {
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
                .finish_attempt(active, position, StepStatus::Waiting, ending, None, 0)
                .await;
        }
        let prepared = match self.prepare_call(active, values, definition) {
            Ok(prepared) => prepared,
            Err(err) => {
                let ending = Ending::Failed {
                    error: err,
                    output: None,
                    class: FailureClass::Permanent,
                    retry_after: None,
                };
                return self
                    .finish_attempt(active, position, StepStatus::Waiting, ending, None, 0)
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
        let output = self.output_batcher(run_id, step_id, None);
        let sink = output.sink();
        let gates = self.pass_gates(active, position, StepStatus::Waiting, &sink, &prepared);
        let admission = match gates.await {
            Ok(admission) => admission,
            // An open circuit postpones the look; it does not end the wait.
            Err(Ending::Failed { error, .. }) => {
                return self.look_again(active, position, None, Some(error)).await;
            }
            Err(Ending::Completed(_)) => return Ok(()),
        };
        let grant = Grant {
            processes: Vec::new(),
            sql: Vec::new(),
            sink: output.sink(),
            network: true,
            insecure_redirects: definition.allow_insecure_redirects,
            on_spawn: None,
            deadline: Some(tokio::time::Instant::now() + timeout),
            secrets: scope.clone(),
        };
        let ctx = step_context(run_id, step_id, attempts, key_attempt);
        // A step that runs on agents is polled there too: the far end it waits on may be
        // reachable only from the agents' hosts.
        let remote = self
            .inner
            .dispatcher
            .get()
            .filter(|_| !definition.runs_on.is_empty());
        let call = async {
            let Some(dispatcher) = remote else {
                return active
                    .plugins
                    .resume(
                        &definition.uses,
                        ctx,
                        &prepared.config,
                        &wait.token,
                        grant,
                        timeout,
                    )
                    .await;
            };
            let call = crate::cluster::RemoteCall {
                labels: &definition.runs_on,
                kind: &definition.uses,
                ctx,
                config: &prepared.config,
                call: crate::cluster::wire::Call::Resume {
                    token: wait.token.clone(),
                },
                processes: grant.processes,
                insecure_redirects: grant.insecure_redirects,
                timeout,
                scope: &scope,
                sink: grant.sink,
                // A poll asks and changes nothing: a lost agent's poll is simply sent again.
                idempotent: true,
                plugin: crate::cluster::RemotePlugin::of(&active.plugins, &definition.uses),
                // A poll left behind by a crash asks once more and changes nothing.
                on_dispatch: None,
            };
            dispatcher.execute(call).await.answered(&definition.uses)
        };
        let result = tokio::select! {
            result = call => result,
            () = active.cancel.cancelled() => {
                output.finish();
                return Ok(());
            }
        };
        // What the look printed is stored before what it found.
        let summary = output.finish();
        match result {
            Ok(Ok(Outcome::Waiting(waiting))) => {
                admission.record(Verdict::Healthy);
                self.look_again(active, position, Some(waiting), None).await
            }
            // A look that failed on the way (a refused connection, a timeout) says nothing
            // about the work: look again at the next poll.
            Ok(Err(err)) if err.transient => {
                let ending = ending_of(Ok(Err(err)), timeout, &scope);
                admission.record(ending.verdict());
                let Ending::Failed { error, .. } = ending else {
                    return Ok(());
                };
                self.look_again(active, position, None, Some(error)).await
            }
            Err(PluginError::Timeout { .. }) => {
                self.look_again(
                    active,
                    position,
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
                admission.record(ending.verdict());
                self.finish_attempt(
                    active,
                    position,
                    StepStatus::Waiting,
                    ending,
                    definition.retry.as_ref(),
                    summary.omitted_bytes,
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
        position: usize,
        waiting: Option<crate::plugins::Waiting>,
        problem: Option<String>,
    ) -> Result<(), EngineError> {
        self.update_step(active, position, StepStatus::Waiting, |step| {
            let answer = waiting.map(|waiting| (waiting.resume_token, waiting.poll_after_ms));
            step.look_again(answer, problem, now_ms())
        })
        .await?;
        Ok(())
    }

    /// The active run with a step waiting on queue `stream` for `invocation_id` (a step whose
    /// runbook says `wait = { queue = stream }`), if any. Looks through the active runs'
    /// top-level steps.
    pub fn run_waiting_on(&self, stream: &str, invocation_id: &str) -> Option<String> {
        let runs: Vec<Arc<ActiveRun>> = lock(&self.inner.active).values().cloned().collect();
        runs.iter().find_map(|active| {
            let state = lock(&active.state);
            let waits = state
                .run
                .steps
                .iter()
                .zip(&active.runbook.steps)
                .any(|(record, step)| {
                    step.wait_queue.as_deref() == Some(stream)
                        && record.status == StepStatus::Waiting
                        && record
                            .wait
                            .as_ref()
                            .and_then(|wait| wait.invocation_id.as_deref())
                            == Some(invocation_id)
                });
            waits.then(|| state.run.id.clone())
        })
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
        self.decide_run(run_id, |state, _| {
            let run_id = state.run.id.clone();
            let position = state
                .run
                .steps
                .iter()
                .position(|record| {
                    record.id == step
                        || record
                            .wait
                            .as_ref()
                            .and_then(|wait| wait.invocation_id.as_deref())
                            == Some(step)
                })
                .ok_or_else(|| EngineError::UnknownStep {
                    run: run_id.clone(),
                    step: step.to_owned(),
                })?;
            let record = &state.run.steps[position];
            let step_id = record.id.clone();
            if record.status != StepStatus::Waiting || record.wait.is_none() {
                return Err(EngineError::WrongState(format!(
                    "step `{step_id}` of run {run_id} is {}, not waiting for an async invocation",
                    status_label(record.status)
                )));
            }
            let completion = match completion {
                Completion::Completed(output) => Ok(output),
                Completion::Failed(reason) => Err(reason),
            };
            let (events, changes) = super::changed_step(state, position, |record| {
                record.complete_from_outside(completion, by, now_ms())
            });
            Ok((changes, events))
        })
        .await
    }
}

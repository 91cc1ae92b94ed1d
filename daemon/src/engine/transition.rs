//! A step's transitions, as methods on its record: each changes the record and returns the
//! events it implies. Pure: the time and every decision (a retry's delay, who decided) are
//! given, so each transition is tested on its own. Whether a transition is allowed from the
//! step's current status is checked by the caller (the engine knows what it expected).

use std::time::Duration;

use super::{Resolution, status_label, step_event};
use crate::runbook::retry::FailureClass;
use crate::store::{
    ApprovalRecord, AsyncWait, AttemptRecord, Decision, EventKind, InstanceRecord, OutputStream,
    PermitWait, StepRecord, StepStatus,
};

/// How a step's execution ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    Completed(Option<serde_json::Value>),
    Failed {
        error: String,
        output: Option<serde_json::Value>,
        class: FailureClass,
        /// The far end's own wait before another try (Retry-After).
        retry_after: Option<Duration>,
    },
}

/// The event announcing a loop instance's status.
fn instance_event(step_id: &str, index: usize, instance: &InstanceRecord) -> EventKind {
    EventKind::InstanceStatus {
        step_id: step_id.to_owned(),
        index: u32::try_from(index).unwrap_or(u32::MAX),
        status: instance.status,
        attempts: instance.attempts,
        error: instance.error.clone(),
    }
}

/// A log line of the daemon's about a step, in the step's output.
fn log_line(step: &StepRecord, line: String) -> EventKind {
    EventKind::StepOutput {
        step_id: step.id.clone(),
        stream: OutputStream::Log,
        line,
    }
}

impl StepRecord {
    /// Starts attempt `attempt`: its start is recorded before any side effect.
    pub(super) fn start(&mut self, attempt: u32, now: i64) -> Vec<EventKind> {
        self.status = StepStatus::Running;
        self.attempts = attempt;
        self.retry_at = 0;
        self.started_at = now;
        self.finished_at = 0;
        self.error = None;
        self.output = None;
        self.wait = None;
        self.permit_wait = None;
        self.process_groups.clear();
        self.dispatches.clear();
        vec![step_event(self)]
    }

    /// Holds the running attempt until its target's rate limit gives it a permit.
    pub(super) fn hold_for_permit(&mut self, wait: PermitWait) -> Vec<EventKind> {
        self.permit_wait = Some(wait.clone());
        vec![EventKind::StepPermitWait {
            step_id: self.id.clone(),
            wait,
        }]
    }

    /// Ends the current attempt. With `retry_delay` (the retry policy allows another attempt
    /// after it) a failure makes the step pending again until then.
    pub(super) fn finish(
        &mut self,
        ending: Ending,
        retry_delay: Option<Duration>,
        now: i64,
    ) -> Vec<EventKind> {
        self.wait = None;
        self.permit_wait = None;
        self.key_of_attempt = None;
        self.process_groups.clear();
        self.dispatches.clear();
        self.history.push(AttemptRecord {
            attempt: self.attempts,
            started_at: self.started_at,
            finished_at: now,
            error: match &ending {
                Ending::Completed(_) => None,
                Ending::Failed { error, .. } => Some(error.clone()),
            },
        });
        match (ending, retry_delay) {
            (Ending::Completed(output), _) => {
                self.status = StepStatus::Completed;
                self.output = output;
            }
            (Ending::Failed { error, output, .. }, Some(delay)) => {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                self.status = StepStatus::Pending;
                self.retry_at = now.saturating_add_unsigned(delay_ms).max(1);
                self.error = Some(error.clone());
                self.output = output;
                return vec![
                    EventKind::StepRetrying {
                        step_id: self.id.clone(),
                        attempt: self.attempts,
                        delay_ms,
                        error,
                    },
                    step_event(self),
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
                self.status = if class == FailureClass::Timeout {
                    StepStatus::TimedOut
                } else {
                    StepStatus::Failed
                };
                self.error = Some(error);
                self.output = output;
            }
        }
        self.finished_at = now;
        vec![step_event(self)]
    }

    /// Parks a running step on an async invocation; `message` says what it waits for.
    pub(super) fn wait_for(&mut self, wait: AsyncWait, message: &str) -> Vec<EventKind> {
        self.status = StepStatus::Waiting;
        self.wait = Some(wait);
        vec![step_event(self), log_line(self, format!("info: {message}"))]
    }

    /// Sets a waiting step's next look, `poll_ms` from `now`: with the plugin's new token
    /// and interval when it answered, saying why when a look failed.
    pub(super) fn look_again(
        &mut self,
        answer: Option<(String, u64)>,
        problem: Option<String>,
        now: i64,
    ) -> Vec<EventKind> {
        let Some(wait) = &mut self.wait else {
            return Vec::new();
        };
        if let Some((token, poll_ms)) = answer {
            wait.token = token;
            wait.poll_ms = poll_ms;
        }
        let poll = wait.poll_ms;
        wait.resume_at = now.saturating_add_unsigned(poll);
        problem
            .map(|problem| {
                log_line(
                    self,
                    format!(
                        "warn: {problem}; looking again in {}",
                        humantime::format_duration(Duration::from_millis(poll))
                    ),
                )
            })
            .into_iter()
            .collect()
    }

    /// Makes a pending step wait for a human to approve its plan.
    pub(super) fn ask_approval(&mut self, approval: ApprovalRecord) -> Vec<EventKind> {
        self.status = StepStatus::Waiting;
        self.approval = Some(approval.clone());
        vec![
            step_event(self),
            EventKind::ApprovalRequested {
                step_id: self.id.clone(),
                approval,
            },
        ]
    }

    /// Lets a step that waits for approval run the plan it showed.
    /// `inputs`: what the operator typed confirming an instruction step.
    pub(super) fn approve(
        &mut self,
        by: &str,
        inputs: Option<serde_json::Map<String, serde_json::Value>>,
        now: i64,
    ) -> Vec<EventKind> {
        if let Some(approval) = &mut self.approval {
            approval.decision = Some(Decision {
                approved: true,
                by: by.to_owned(),
                at: now,
                reason: None,
                inputs,
            });
        }
        self.status = StepStatus::Pending;
        vec![step_event(self)]
    }

    /// Refuses a step that waits for approval: it fails with the reason.
    pub(super) fn deny(&mut self, by: &str, reason: &str, now: i64) -> Vec<EventKind> {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        if let Some(approval) = &mut self.approval {
            approval.decision = Some(Decision {
                approved: false,
                by: by.to_owned(),
                at: now,
                reason: Some(reason.to_owned()),
                inputs: None,
            });
        }
        self.status = StepStatus::Failed;
        self.error = Some(format!("denied by {by}: {reason}"));
        self.finished_at = now;
        vec![step_event(self)]
    }

    /// Carries out an operator's decision about an ambiguous step.
    pub(super) fn resolve(&mut self, resolution: Resolution, by: &str, now: i64) -> Vec<EventKind> {
        match resolution {
            // The approval given before the crash stays valid: the plan is unchanged. Retrying
            // is a new decision, so the next attempt sends a key of its own.
            Resolution::Retry => {
                self.status = StepStatus::Pending;
                self.error = None;
                self.key_of_attempt = None;
                for instance in &mut self.instances {
                    instance.reuse_key = false;
                }
            }
            Resolution::Skip => {
                self.status = StepStatus::Skipped;
                self.error = Some(format!("skipped by {by} after an interrupted attempt"));
                self.finished_at = now;
            }
            Resolution::Fail => {
                self.status = StepStatus::Failed;
                self.error = Some(format!(
                    "marked failed by {by} after an interrupted attempt"
                ));
                self.finished_at = now;
            }
        }
        let mut events = vec![step_event(self)];
        if resolution != Resolution::Retry {
            // Nothing of the loop runs any more.
            let reason = self.error.clone();
            events.extend(self.change_instances(
                |instance| !instance.status.is_terminal(),
                |instance| {
                    instance.status = StepStatus::Cancelled;
                    instance.error = reason.clone();
                    instance.finished_at = now;
                },
            ));
        }
        events
    }

    /// Makes an ended step pending again for an operator's retry of its run: its next attempt
    /// is a new one (with a key of its own), its retry policy's budget counts afresh, and its
    /// past attempts stay in its history and in the store.
    pub(super) fn reopen(&mut self) -> Vec<EventKind> {
        let was_completed = self.status == StepStatus::Completed;
        self.status = StepStatus::Pending;
        self.error = None;
        self.output = None;
        self.retry_at = 0;
        self.finished_at = 0;
        self.upstream_failed = false;
        self.wait = None;
        self.permit_wait = None;
        self.key_of_attempt = None;
        self.process_groups.clear();
        self.dispatches.clear();
        self.attempts_before_retry = self.attempts;
        self.unselected = false;
        let mut events = vec![step_event(self)];
        // A loop that had failed runs its instances that did not complete, and keeps the
        // others' outputs; one that had completed runs again as a whole, over its items as
        // they are then (as does one the retry forces to run again: see `restart_loop`).
        if was_completed {
            self.instances.clear();
        }
        events.extend(self.change_instances(
            |instance| instance.status != StepStatus::Completed,
            |instance| {
                instance.status = StepStatus::Pending;
                instance.error = None;
                instance.reuse_key = false;
            },
        ));
        events
    }

    /// Forgets a loop's items and its instances' results: its next attempt evaluates
    /// `for_each` again and runs every item.
    pub(super) fn restart_loop(&mut self) {
        self.instances.clear();
    }

    /// Changes the loop instances `which` selects with `change`, and announces each.
    fn change_instances(
        &mut self,
        which: impl Fn(&InstanceRecord) -> bool,
        mut change: impl FnMut(&mut InstanceRecord),
    ) -> Vec<EventKind> {
        let mut events = Vec::new();
        for (index, instance) in self.instances.iter_mut().enumerate() {
            if which(instance) {
                change(instance);
                events.push(instance_event(&self.id, index, instance));
            }
        }
        events
    }

    /// Records a loop's items, one pending instance each, before any of them runs: an
    /// approval, a crash or a retry then finds the same items.
    pub(super) fn set_instances(&mut self, items: Vec<serde_json::Value>) -> Vec<EventKind> {
        let count = items.len();
        self.instances = items.into_iter().map(InstanceRecord::pending).collect();
        let mut events = vec![log_line(
            self,
            format!(
                "info: loop over {count} item{}",
                if count == 1 { "" } else { "s" }
            ),
        )];
        events.extend(self.change_instances(|_| true, |_| {}));
        events
    }

    /// Starts instance `index` of a loop within the step's current attempt; its idempotency
    /// key carries attempt number `key_attempt`.
    pub(super) fn start_instance(
        &mut self,
        index: usize,
        key_attempt: u32,
        now: i64,
    ) -> Vec<EventKind> {
        let attempt = self.attempts;
        let Some(instance) = self.instances.get_mut(index) else {
            return Vec::new();
        };
        instance.status = StepStatus::Running;
        instance.attempts += 1;
        instance.step_attempt = attempt;
        instance.key_attempt = key_attempt;
        instance.reuse_key = false;
        instance.started_at = now;
        instance.finished_at = 0;
        instance.error = None;
        instance.output = None;
        vec![instance_event(&self.id, index, instance)]
    }

    /// Ends instance `index` of a loop: completed, failed, timed out, or cancelled (by the
    /// loop's `fail_fast`) with `error`.
    pub(super) fn finish_instance(
        &mut self,
        index: usize,
        status: StepStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        now: i64,
    ) -> Vec<EventKind> {
        let Some(instance) = self.instances.get_mut(index) else {
            return Vec::new();
        };
        instance.status = status;
        instance.output = output;
        instance.error = error;
        instance.finished_at = now;
        vec![instance_event(&self.id, index, instance)]
    }

    /// Skips a step that will not run: `blocker` names the need that did not complete, else
    /// its `if` was false.
    pub(super) fn skip(&mut self, blocker: Option<&str>, now: i64) -> Vec<EventKind> {
        self.status = StepStatus::Skipped;
        self.upstream_failed = blocker.is_some();
        self.error = blocker.map(|blocker| format!("skipped because `{blocker}` did not complete"));
        self.finished_at = now;
        vec![step_event(self)]
    }

    /// Fails a step that never got to run (its `if`, config or plan is broken).
    pub(super) fn fail_before_start(&mut self, error: String, now: i64) -> Vec<EventKind> {
        self.status = StepStatus::Failed;
        self.error = Some(error);
        self.finished_at = now;
        self.wait = None;
        vec![step_event(self)]
    }

    /// Ends a step of a dry run with its plan as its output.
    pub(super) fn finish_dry(&mut self, output: serde_json::Value, now: i64) -> Vec<EventKind> {
        self.status = StepStatus::Completed;
        self.started_at = now;
        self.finished_at = now;
        self.output = Some(output);
        vec![step_event(self)]
    }

    /// Cancels a step that has not ended, with the instances of its loop that had not.
    pub(super) fn cancel(&mut self, now: i64) -> Vec<EventKind> {
        self.status = StepStatus::Cancelled;
        self.finished_at = now;
        let mut events = vec![step_event(self)];
        events.extend(self.change_instances(
            |instance| !instance.status.is_terminal(),
            |instance| {
                instance.status = StepStatus::Cancelled;
                instance.finished_at = now;
            },
        ));
        events
    }

    /// Ends a step that waits for an async invocation from outside: completed with an
    /// output, or failed with `Err(reason)`.
    pub(super) fn complete_from_outside(
        &mut self,
        completion: Result<Option<serde_json::Value>, String>,
        by: &str,
        now: i64,
    ) -> Vec<EventKind> {
        let error = completion.as_ref().err().map(|reason| {
            let reason = if reason.is_empty() {
                "no reason given"
            } else {
                reason
            };
            format!("failed by {by}: {reason}")
        });
        self.history.push(AttemptRecord {
            attempt: self.attempts,
            started_at: self.started_at,
            finished_at: now,
            error: error.clone(),
        });
        self.wait = None;
        self.finished_at = now;
        match completion {
            Ok(output) => {
                self.status = StepStatus::Completed;
                self.output = output;
                self.error = None;
            }
            Err(_) => {
                self.status = StepStatus::Failed;
                self.error = error;
            }
        }
        vec![
            log_line(
                self,
                format!("info: {} from outside by {by}", status_label(self.status)),
            ),
            step_event(self),
        ]
    }

    /// Ends the running attempt with its result unknown (the agent running it fell silent,
    /// and the step must not run twice): the step waits for an operator's decision, as after
    /// a crash, and a retry sends the same idempotency key.
    pub(super) fn lose(&mut self, reason: &str, run_id: &str, now: i64) -> Vec<EventKind> {
        self.history.push(AttemptRecord {
            attempt: self.attempts,
            started_at: self.started_at,
            finished_at: now,
            error: Some(reason.to_owned()),
        });
        self.key_of_attempt = Some(self.key_attempt(self.attempts));
        self.wait = None;
        self.permit_wait = None;
        self.process_groups.clear();
        self.dispatches.clear();
        self.status = StepStatus::Ambiguous;
        self.error = Some(format!(
            "{reason}, so whether attempt {} ran is unknown; decide with `runbook resolve {run_id} {} retry|skip|fail`",
            self.attempts, self.id
        ));
        vec![step_event(self)]
    }

    /// What a restart makes of a step that was running when the daemon stopped: run again
    /// if its plugin is idempotent, else ambiguous until an operator decides. The interrupted
    /// attempt goes into the history, and the next attempt sends its idempotency key again:
    /// the far side may have seen it, and nobody decided anything new.
    pub(super) fn interrupt(&mut self, idempotent: bool, run_id: &str, now: i64) -> Vec<EventKind> {
        self.history.push(AttemptRecord {
            attempt: self.attempts,
            started_at: self.started_at,
            finished_at: now,
            error: Some("interrupted: the daemon stopped while this attempt ran".into()),
        });
        self.key_of_attempt = Some(self.key_attempt(self.attempts));
        self.wait = None;
        // Recovery killed what was left of them before this.
        self.process_groups.clear();
        self.dispatches.clear();
        // A loop's result is unknown only where an instance was running: one stopped
        // between its instances (or after the last) just goes on.
        let idempotent = idempotent
            || (!self.instances.is_empty()
                && !self
                    .instances
                    .iter()
                    .any(|instance| instance.status == StepStatus::Running));
        // An interrupted instance sends its key again, as an interrupted step does.
        let instance_events = self.change_instances(
            |instance| instance.status == StepStatus::Running,
            |instance| {
                instance.reuse_key = true;
                instance.status = if idempotent {
                    StepStatus::Pending
                } else {
                    StepStatus::Ambiguous
                };
            },
        );
        if idempotent {
            self.status = StepStatus::Pending;
        } else {
            self.status = StepStatus::Ambiguous;
            self.error = Some(format!(
                "the daemon stopped while attempt {} was running, so its result is unknown; \
                 decide with `runbook resolve {run_id} {} retry|skip|fail`",
                self.attempts, self.id
            ));
        }
        let mut events = vec![step_event(self)];
        events.extend(instance_events);
        events
    }
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;

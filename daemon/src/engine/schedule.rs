//! Deciding what happens next in a run: which pending steps start, which are skipped (an `if`
//! that is false, or a step they need that did not complete), and the run's own status.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::context::template_context;
use super::{ActiveRun, Engine, EngineError, lock, step_event};
use crate::store::{EventKind, RunRecord, RunStatus, StepStatus, now_ms};
use crate::template;

impl Engine {
    /// Advances a run in the background.
    pub(super) fn schedule(&self, run_id: String) {
        let engine = self.clone();
        // Boxed: a step task schedules its run again when it ends, and the two future types
        // would otherwise contain each other.
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(err) = engine.advance(&run_id).await {
                tracing::error!(run = %run_id, error = %err, "cannot advance run");
            }
        });
        self.inner.tasks.spawn(task);
    }

    /// Looks at a run's state and makes every decision that is due now.
    async fn advance(&self, run_id: &str) -> Result<(), EngineError> {
        let active = self.activate(run_id)?;
        let _guard = active.lock.lock().await;
        if self.inner.stopping.is_cancelled() {
            return Ok(());
        }
        let mut run = self.load_run(run_id)?;
        if run.status.is_terminal() {
            self.forget(run_id);
            return Ok(());
        }
        let in_flight = lock(&active.in_flight).clone();
        // One clock reading for every decision below: a back-off judged "not yet due" here
        // must also be judged so when the wake-up timer is set, or the step would be left
        // with neither a start nor a timer.
        let now = now_ms();
        let mut events = Vec::new();
        let mut to_start: Vec<String> = Vec::new();

        // Skips can cascade (a skipped step blocks the ones that need it), so repeat until
        // nothing changes.
        loop {
            let mut changed = false;
            let context = template::context(&template_context(&run));
            let busy = run
                .steps
                .iter()
                .filter(|step| step.status == StepStatus::Running)
                .count()
                + in_flight.len()
                + to_start.len();
            let mut free = active.runbook.max_parallel.saturating_sub(busy);
            for index in 0..run.steps.len() {
                let step = &run.steps[index];
                // A step waiting out its retry back-off is not ready before its time.
                let ready = step.status == StepStatus::Pending
                    && step.retry_at <= now
                    && !in_flight.contains(&step.id)
                    && !to_start.contains(&step.id);
                let Some(definition) = active.runbook.step(&step.id).filter(|_| ready) else {
                    continue;
                };
                let needs: Vec<_> = definition
                    .needs
                    .iter()
                    .filter_map(|need| run.step(need))
                    .collect();
                if needs.iter().any(|need| !need.status.is_terminal()) {
                    continue;
                }
                let blocker = needs
                    .iter()
                    .find(|need| need.status.is_failure() || need.upstream_failed)
                    .map(|need| need.id.clone());
                let condition = definition
                    .condition
                    .as_ref()
                    .map(|expr| template::evaluate(expr, &context));
                let step = &mut run.steps[index];
                match (blocker, condition) {
                    (Some(blocker), _) => {
                        step.status = StepStatus::Skipped;
                        step.upstream_failed = true;
                        step.error = Some(format!("skipped because `{blocker}` did not complete"));
                    }
                    (None, Some(Ok(false))) => step.status = StepStatus::Skipped,
                    (None, Some(Err(err))) => {
                        step.status = StepStatus::Failed;
                        step.error = Some(format!("cannot evaluate `if`: {err}"));
                    }
                    (None, _) => {
                        // A paused run starts nothing; skips have no side effects and still
                        // happen.
                        if free > 0 && run.status != RunStatus::Paused {
                            free -= 1;
                            to_start.push(step.id.clone());
                        }
                        continue;
                    }
                }
                step.finished_at = now_ms();
                events.push(step_event(step));
                changed = true;
            }
            if !changed {
                break;
            }
        }

        let busy = !in_flight.is_empty() || !to_start.is_empty();
        let (status, error) = match derive_status(&run, busy) {
            // Only the operator ends a pause, unless every step has ended anyway.
            (status, _) if run.status == RunStatus::Paused && !status.is_terminal() => {
                (RunStatus::Paused, run.error.clone())
            }
            derived => derived,
        };
        if status != run.status {
            if run.started_at == 0 {
                run.started_at = now_ms();
            }
            if status.is_terminal() {
                run.finished_at = now_ms();
            }
            run.status = status;
            run.error = error.clone();
            events.push(EventKind::RunStatus { status, error });
        }
        if !events.is_empty() {
            self.commit(&run, events)?;
        }
        if run.status.is_terminal() {
            self.inner.store.flush().await?;
            self.forget(run_id);
            tracing::info!(run = %run_id, status = ?run.status, "run ended");
            return Ok(());
        }
        for step_id in to_start {
            lock(&active.in_flight).insert(step_id.clone());
            self.spawn_step(Arc::clone(&active), run_id.to_owned(), step_id);
        }
        self.resume_due(&active, &run, now);
        self.wake_when_due(&active, &run, now);
        Ok(())
    }

    /// Looks at every waiting step whose poll (or deadline) is due. A look holds no slot of
    /// `max_parallel` and does not make the run `running`: the step is still waiting.
    fn resume_due(&self, active: &Arc<ActiveRun>, run: &RunRecord, now: i64) {
        for step in &run.steps {
            let Some(wait) = step
                .wait
                .as_ref()
                .filter(|_| step.status == StepStatus::Waiting)
            else {
                continue;
            };
            let due = wait.resume_at <= now || (wait.deadline > 0 && wait.deadline <= now);
            if !due || !lock(&active.resuming).insert(step.id.clone()) {
                continue;
            }
            let engine = self.clone();
            let active = Arc::clone(active);
            let run_id = run.id.clone();
            let step_id = step.id.clone();
            let task: BoxFuture<'static, ()> = Box::pin(async move {
                if let Err(err) = engine.resume_step(&active, &run_id, &step_id).await {
                    tracing::error!(run = %run_id, step = %step_id, error = %err, "cannot resume step");
                }
                lock(&active.resuming).remove(&step_id);
                engine.schedule(run_id);
            });
            self.inner.tasks.spawn(task);
        }
    }

    /// Looks at the run again when its earliest retry back-off ends or a waiting step's next
    /// poll is due. Extra wake-ups are harmless: `advance` only starts what is due. A
    /// back-off already over at `now` needs no timer: `advance` started the step, or it waits
    /// for a busy slot to free up (a step that ends re-schedules its run).
    fn wake_when_due(&self, active: &Arc<ActiveRun>, run: &RunRecord, now: i64) {
        let retry = run
            .steps
            .iter()
            .filter(|step| step.status == StepStatus::Pending && step.retry_at > now)
            .map(|step| step.retry_at)
            .min();
        // A look in progress re-schedules the run when it ends.
        let look = super::wait::next_look(run).filter(|due| *due > now);
        let Some(due) = retry.into_iter().chain(look).min() else {
            return;
        };
        let wait = std::time::Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
        let engine = self.clone();
        let cancel = active.cancel.clone();
        let run_id = run.id.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => engine.schedule(run_id),
                () = cancel.cancelled() => {}
            }
        });
    }

    fn spawn_step(&self, active: Arc<ActiveRun>, run_id: String, step_id: String) {
        let engine = self.clone();
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(err) = engine.run_step(&active, &run_id, &step_id).await {
                tracing::error!(run = %run_id, step = %step_id, error = %err, "step task failed");
            }
            lock(&active.in_flight).remove(&step_id);
            engine.schedule(run_id);
        });
        self.inner.tasks.spawn(task);
    }
}

/// A run's status from its steps' statuses.
fn derive_status(run: &RunRecord, busy: bool) -> (RunStatus, Option<String>) {
    if run.steps.iter().all(|step| step.status.is_terminal()) {
        let failed = run
            .steps
            .iter()
            .find(|step| step.status.is_failure() && !step.upstream_failed);
        return match failed {
            Some(step) => (
                RunStatus::Failed,
                Some(format!(
                    "step `{}` {}: {}",
                    step.id,
                    super::status_label(step.status).replace('_', " "),
                    step.error.as_deref().unwrap_or("no error message")
                )),
            ),
            None => (RunStatus::Completed, None),
        };
    }
    let running = busy
        || run
            .steps
            .iter()
            .any(|step| step.status == StepStatus::Running);
    let waiting = run.steps.iter().any(|step| {
        matches!(step.status, StepStatus::Waiting | StepStatus::Ambiguous)
            || (step.status == StepStatus::Pending && step.retry_at > 0)
    });
    if !running && waiting {
        (RunStatus::Waiting, None)
    } else {
        (RunStatus::Running, None)
    }
}

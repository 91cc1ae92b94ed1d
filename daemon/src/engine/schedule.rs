//! Applying the scheduler's decisions: [`super::decide::decide`] says what is due; this file
//! commits it, starts the steps, looks at waiting ones and sets the wake-up timer.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::decide::decide;
use super::{ActiveRun, Engine, EngineError, lock};
use crate::store::now_ms;

impl Engine {
    /// Advances a run in the background.
    pub(super) fn schedule(&self, run_id: String) {
        let engine = self.clone();
        // Boxed: a step task schedules its run again when it ends, and the two future types
        // would otherwise contain each other.
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(err) = engine.advance(&run_id, false).await {
                tracing::error!(run = %run_id, error = %err, "cannot advance run");
            }
        });
        self.inner.tasks.spawn(task);
    }

    /// Makes every decision that is due now about a run, and acts on it. With `keep_one`, the
    /// first step to start is not spawned but returned, for the caller (a step task that just
    /// ended) to run itself: a chain of steps then runs in one task, without a spawn and a
    /// wake-up between every two steps.
    async fn advance(
        &self,
        run_id: &str,
        keep_one: bool,
    ) -> Result<Option<(Arc<ActiveRun>, usize)>, EngineError> {
        if self.inner.stopping.is_cancelled() {
            return Ok(None);
        }
        let Ok(active) = self.activate(run_id)? else {
            return Ok(None);
        };
        // One clock reading for every decision: a back-off judged "not yet due" must also be
        // judged so when the wake-up timer is set, or the step would have neither.
        let now = now_ms();
        let (decision, ended) = self.transition(&active, |state| {
            let mut decision = decide(state, &active.runbook, now);
            let events = std::mem::take(&mut decision.events);
            let changes = std::mem::take(&mut decision.changes);
            Ok((changes, events, (decision, state.run.status.is_terminal())))
        })?;
        if ended {
            self.inner.store.flush().await?;
            self.forget(run_id);
            tracing::info!(run = %run_id, "run ended");
            return Ok(None);
        }
        let mut starts = decision.start.into_iter();
        let kept = if keep_one { starts.next() } else { None };
        for position in starts {
            self.spawn_step(Arc::clone(&active), run_id.to_owned(), position);
        }
        for position in decision.look {
            self.spawn_look(Arc::clone(&active), run_id.to_owned(), position);
        }
        if let Some(due) = decision.wake_at {
            self.wake_at(&active, run_id, due - now);
        }
        Ok(kept.map(|position| (active, position)))
    }

    /// Looks at the run again in `after_ms`, unless it is cancelled first. Extra wake-ups are
    /// harmless: deciding only starts what is due.
    fn wake_at(&self, active: &ActiveRun, run_id: &str, after_ms: i64) {
        let wait = std::time::Duration::from_millis(u64::try_from(after_ms).unwrap_or(0));
        let engine = self.clone();
        let cancel = active.cancel.clone();
        let stopping = self.inner.stopping.clone();
        let run_id = run_id.to_owned();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => engine.schedule(run_id),
                () = cancel.cancelled() => {}
                // A stopping daemon starts nothing: a wake-up must not hold its grace period.
                () = stopping.cancelled() => {}
            }
        });
    }

    /// Runs a step in a task of its own; when it ends, the task advances the run and runs
    /// the next step it may start itself, for as long as there is one.
    fn spawn_step(&self, active: Arc<ActiveRun>, run_id: String, position: usize) {
        let engine = self.clone();
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            let mut next = Some((active, position));
            while let Some((active, position)) = next.take() {
                if let Err(err) = engine.run_step(&active, &run_id, position).await {
                    let step = &active.runbook.steps[position].id;
                    tracing::error!(run = %run_id, step = %step, error = %err, "step task failed");
                }
                lock(&active.state).in_flight.remove(&position);
                next = engine.advance(&run_id, true).await.unwrap_or_else(|err| {
                    tracing::error!(run = %run_id, error = %err, "cannot advance run");
                    None
                });
            }
        });
        self.inner.tasks.spawn(task);
    }

    fn spawn_look(&self, active: Arc<ActiveRun>, run_id: String, position: usize) {
        let engine = self.clone();
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(err) = engine.resume_step(&active, &run_id, position).await {
                let step = &active.runbook.steps[position].id;
                tracing::error!(run = %run_id, step = %step, error = %err, "cannot resume step");
            }
            lock(&active.state).looking.remove(&position);
            engine.schedule(run_id);
        });
        self.inner.tasks.spawn(task);
    }
}

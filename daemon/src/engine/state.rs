//! A run's state while it is active: its record in memory (the store is the write-ahead
//! record of it) and the indices that keep every decision proportional to what changed, never
//! to the length of the run: which steps are ready, which wait out a back-off, which wait for
//! a poll, and how many are running.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::runbook::Runbook;
use crate::store::{RunRecord, StepRecord, StepStatus};

/// The in-memory state of one active run. Every change to a step goes through
/// [`RunState::update`], which keeps the indices right.
#[derive(Debug)]
pub struct RunState {
    pub run: RunRecord,
    /// Step index by id.
    index: HashMap<String, usize>,
    /// Per step, the indices of the steps it needs.
    needs: Vec<Vec<usize>>,
    /// Per step, the indices of the steps that need it.
    dependents: Vec<Vec<usize>>,
    /// Per step, how many of its needs have not ended.
    open_needs: Vec<usize>,
    /// Pending steps whose needs have all ended and that were not judged since (a failed
    /// need skips them, an `if` may skip them).
    pub(super) unjudged: BTreeSet<usize>,
    /// Pending steps judged runnable, in runbook order; some may wait out a retry back-off.
    pub(super) runnable: BTreeSet<usize>,
    /// Pending steps waiting out a retry back-off, by when it ends.
    pub(super) backoff: BTreeSet<(i64, usize)>,
    /// Steps in `waiting` (for an approval or an async invocation).
    pub(super) waiting: BTreeSet<usize>,
    running: usize,
    ambiguous: usize,
    unfinished: usize,
    /// Steps with a task working on them (planning or executing): each holds a slot of
    /// `max_parallel`.
    pub in_flight: HashSet<usize>,
    /// Waiting steps whose async invocation is being looked at (no slot held).
    pub looking: HashSet<usize>,
}

/// What of a step the indices depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    status: StepStatus,
    /// When a back-off ends, for a pending step that waits one out.
    backoff: Option<i64>,
}

impl Shape {
    fn of(step: &StepRecord) -> Self {
        Self {
            status: step.status,
            backoff: (step.status == StepStatus::Pending && step.retry_at > 0)
                .then_some(step.retry_at),
        }
    }
}

impl RunState {
    /// Builds the state of `run`, whose steps are `runbook`'s steps in the same order (a run
    /// is pinned to the version it was created from).
    pub fn new(run: RunRecord, runbook: &Runbook) -> Self {
        let count = run.steps.len();
        let index: HashMap<String, usize> = run
            .steps
            .iter()
            .enumerate()
            .map(|(position, step)| (step.id.clone(), position))
            .collect();
        let mut needs = vec![Vec::new(); count];
        let mut dependents = vec![Vec::new(); count];
        for (position, step) in run.steps.iter().enumerate() {
            // The run's steps are the runbook's, in order: look there first.
            let definition = runbook
                .steps
                .get(position)
                .filter(|definition| definition.id == step.id)
                .or_else(|| runbook.step(&step.id));
            let Some(definition) = definition else {
                continue;
            };
            for need in &definition.needs {
                if let Some(&need) = index.get(need) {
                    needs[position].push(need);
                    dependents[need].push(position);
                }
            }
        }
        let mut state = Self {
            open_needs: needs
                .iter()
                .map(|needs| {
                    needs
                        .iter()
                        .filter(|&&need| !run.steps[need].status.is_terminal())
                        .count()
                })
                .collect(),
            run,
            index,
            needs,
            dependents,
            unjudged: BTreeSet::new(),
            runnable: BTreeSet::new(),
            backoff: BTreeSet::new(),
            waiting: BTreeSet::new(),
            running: 0,
            ambiguous: 0,
            unfinished: 0,
            in_flight: HashSet::new(),
            looking: HashSet::new(),
        };
        for position in 0..count {
            state.enter(position, Shape::of(&state.run.steps[position]));
        }
        state
    }

    /// The index of the step with this id.
    pub fn position(&self, step_id: &str) -> Option<usize> {
        self.index.get(step_id).copied()
    }

    /// The step with this id.
    pub fn step(&self, step_id: &str) -> Option<&StepRecord> {
        self.position(step_id)
            .map(|position| &self.run.steps[position])
    }

    /// The indices of the steps that step `position` needs.
    pub fn needs(&self, position: usize) -> &[usize] {
        &self.needs[position]
    }

    /// Changes step `position` and keeps the indices right.
    pub fn update<R>(&mut self, position: usize, change: impl FnOnce(&mut StepRecord) -> R) -> R {
        let before = Shape::of(&self.run.steps[position]);
        let result = change(&mut self.run.steps[position]);
        let after = Shape::of(&self.run.steps[position]);
        if before != after {
            self.leave(position, before);
            self.enter(position, after);
            self.propagate(position, before.status, after.status);
        }
        result
    }

    /// Whether every step has ended.
    pub fn all_ended(&self) -> bool {
        self.unfinished == 0
    }

    /// Whether a step is running in this process or was recorded running.
    pub fn any_running(&self) -> bool {
        self.running > 0 || !self.in_flight.is_empty()
    }

    /// Whether a step waits for something other than a free slot: an approval, an async
    /// invocation, an operator's decision or a retry back-off.
    pub fn any_waiting(&self) -> bool {
        !self.waiting.is_empty() || self.ambiguous > 0 || !self.backoff.is_empty()
    }

    /// Adds a step of shape `shape` to the indices.
    fn enter(&mut self, position: usize, shape: Shape) {
        match shape.status {
            StepStatus::Running => self.running += 1,
            StepStatus::Ambiguous => self.ambiguous += 1,
            StepStatus::Waiting => {
                self.waiting.insert(position);
            }
            StepStatus::Pending if self.open_needs[position] == 0 => {
                self.unjudged.insert(position);
            }
            _ => {}
        }
        if !shape.status.is_terminal() {
            self.unfinished += 1;
        }
        if let Some(at) = shape.backoff {
            self.backoff.insert((at, position));
        }
    }

    /// Removes a step of shape `shape` from the indices.
    fn leave(&mut self, position: usize, shape: Shape) {
        match shape.status {
            StepStatus::Running => self.running -= 1,
            StepStatus::Ambiguous => self.ambiguous -= 1,
            StepStatus::Waiting => {
                self.waiting.remove(&position);
            }
            StepStatus::Pending => {
                self.unjudged.remove(&position);
                self.runnable.remove(&position);
            }
            _ => {}
        }
        if !shape.status.is_terminal() {
            self.unfinished -= 1;
        }
        if let Some(at) = shape.backoff {
            self.backoff.remove(&(at, position));
        }
    }

    /// Tells the steps that need `position` that it ended (or, when an operator takes an
    /// ended step back, that it has not).
    fn propagate(&mut self, position: usize, before: StepStatus, after: StepStatus) {
        let dependents = std::mem::take(&mut self.dependents[position]);
        match (before.is_terminal(), after.is_terminal()) {
            (false, true) => {
                for &dependent in &dependents {
                    self.open_needs[dependent] -= 1;
                    if self.open_needs[dependent] == 0
                        && self.run.steps[dependent].status == StepStatus::Pending
                    {
                        self.unjudged.insert(dependent);
                    }
                }
            }
            (true, false) => {
                for &dependent in &dependents {
                    if self.open_needs[dependent] == 0 {
                        self.unjudged.remove(&dependent);
                        self.runnable.remove(&dependent);
                    }
                    self.open_needs[dependent] += 1;
                }
            }
            _ => {}
        }
        self.dependents[position] = dependents;
    }
}

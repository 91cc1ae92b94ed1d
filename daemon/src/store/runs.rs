//! Runs in the store: a header per run, a record per step, an output per step attempt, and
//! each run's event log with gap-free sequence numbers. A transition writes only what it
//! changed ([`Changes`]); reading a whole run assembles it from its records. A run whose
//! records cannot be read at start-up is quarantined, not fatal.

use super::writer::{Entry, Write};
use super::{
    EventKind, EventRecord, Quarantined, RunFilter, RunRecord, StepRecord, Store, StoreError,
    guard, now_ms,
};

/// What one transition changed in a run: only these records are written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The run's own fields (status, timestamps, error).
    pub header: bool,
    /// Indices of the steps whose records changed.
    pub steps: Vec<usize>,
    /// Indices of the steps whose newest attempt has a new output to store.
    pub outputs: Vec<usize>,
    /// Loop instances (step index, instance index) with a new output to store.
    pub instance_outputs: Vec<(usize, usize)>,
}

impl Changes {
    /// Every record of a run: what creating it writes.
    pub fn all(run: &RunRecord) -> Self {
        Self {
            header: true,
            steps: (0..run.steps.len()).collect(),
            outputs: (0..run.steps.len())
                .filter(|&index| run.steps[index].output.is_some())
                .collect(),
            instance_outputs: Vec::new(),
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.header
            && self.steps.is_empty()
            && self.outputs.is_empty()
            && self.instance_outputs.is_empty()
    }

    /// Adds another transition's changes.
    pub fn merge(&mut self, other: Changes) {
        self.header |= other.header;
        self.steps.extend(other.steps);
        self.outputs.extend(other.outputs);
        self.instance_outputs.extend(other.instance_outputs);
    }
}

/// Which step outputs to read when assembling a run.
#[derive(Debug, Clone, Copy)]
enum Outputs {
    All,
    /// Only those whose JSON is at most this many bytes.
    Inline(usize),
}

impl Store {
    /// Writes what `changes` names of `run` and appends `events` to its log: atomically when
    /// it changes several records, in a crash-safe order when it changes one (see `write`).
    /// Returns the stored events with their sequence numbers, ready to publish.
    pub fn commit(
        &self,
        run: &RunRecord,
        changes: &Changes,
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let header = if changes.header {
            vec![(run.id.as_bytes().to_vec(), serde_json::to_vec(run)?)]
        } else {
            Vec::new()
        };
        let steps = changes
            .steps
            .iter()
            .filter_map(|&index| run.steps.get(index).map(|step| (index, step)))
            .map(|(index, step)| Ok((step_key(&run.id, index), serde_json::to_vec(step)?)))
            .collect::<Result<Vec<Entry>, serde_json::Error>>()?;
        let outputs = changes
            .outputs
            .iter()
            .filter_map(|&index| {
                let step = run.steps.get(index)?;
                Some((index, step.attempts, step.output.as_ref()?))
            })
            .map(|(index, attempt, output)| {
                Ok((
                    output_key(&run.id, index, attempt),
                    serde_json::to_vec(output)?,
                ))
            })
            .collect::<Result<Vec<Entry>, serde_json::Error>>()?;
        let mut outputs = outputs;
        for &(index, instance) in &changes.instance_outputs {
            let Some(record) = run
                .steps
                .get(index)
                .and_then(|step| step.instances.get(instance))
            else {
                continue;
            };
            if let Some(output) = &record.output {
                outputs.push((
                    instance_output_key(&run.id, index, record.step_attempt, instance),
                    serde_json::to_vec(output)?,
                ));
            }
        }
        self.write(&run.id, [header, steps, outputs], events)
    }

    /// Appends events to a run's log without changing the run (output lines, say).
    pub fn append(
        &self,
        run_id: &str,
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.write(run_id, Default::default(), events)
    }

    /// Hands records of the runs, steps and outputs trees (in that order in `records`) and
    /// events to the writer thread, which writes them in one transaction when more than one
    /// run or step record changes, else key by key in an order that a crash can only cut
    /// harmlessly. Readers see them from then on (see `Store::settle`); a flush makes them
    /// durable.
    fn write(
        &self,
        run_id: &str,
        records: [Vec<Entry>; 3],
        events: Vec<EventKind>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // Sled would refuse too, with a bare I/O error; this one says what to do.
        if let Some(refusal) = self.inner.health.refusal() {
            return Err(refusal);
        }
        let mut counters = guard(&self.inner.last_seq);
        let last = match counters.get(run_id) {
            Some(last) => *last,
            None => {
                // First write of this run by this process: what is on disk was written by an
                // earlier process and survived it, so it is durable.
                let stored = self.stored_last_seq(run_id)?;
                guard(&self.inner.durable_seq).insert(run_id.to_owned(), stored);
                stored
            }
        };
        let at = now_ms();
        let stored: Vec<EventRecord> = events
            .into_iter()
            .zip(last + 1..)
            .map(|(kind, seq)| EventRecord {
                run_id: run_id.to_owned(),
                seq,
                at,
                kind,
            })
            .collect();
        let events = stored
            .iter()
            .map(|event| Ok((event_key(run_id, event.seq), serde_json::to_vec(event)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let [runs, steps, outputs] = records;
        // Applied by the writer thread, in the order written (see `writer`); the sequence
        // numbers are taken here, so they are gap-free and in order all the same.
        self.inner.writer.write(Write {
            runs,
            steps,
            outputs,
            events,
        })?;
        counters.insert(run_id.to_owned(), last + stored.len() as u64);
        Ok(stored)
    }

    fn stored_last_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        let prefix = run_prefix(run_id);
        match self.inner.events.scan_prefix(&prefix).next_back() {
            Some(entry) => {
                let (key, _) = entry?;
                Ok(decode_u64(&key[prefix.len()..]))
            }
            None => Ok(0),
        }
    }

    /// Records that `events` are on disk (called after a flush that followed their write).
    pub fn mark_durable(&self, events: &[EventRecord]) {
        self.mark_durable_seqs(
            events
                .iter()
                .map(|event| (event.run_id.as_str(), event.seq)),
        );
    }

    /// Records that runs' events up to these sequence numbers are on disk (called after a
    /// flush that followed their write).
    pub fn mark_durable_seqs<'a>(&self, marks: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut durable = guard(&self.inner.durable_seq);
        for (run_id, seq) in marks {
            match durable.get_mut(run_id) {
                Some(durable) => *durable = (*durable).max(seq),
                None => {
                    durable.insert(run_id.to_owned(), seq);
                }
            }
        }
        drop(durable);
        self.inner
            .durable_changed
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A run summary (outputs of at most [`super::INLINE_OUTPUT_BYTES`] inline, every step's
    /// `output_bytes` set) with the sequence number of its newest event, once every event
    /// already written for it is durable: what the record shows can then be read back as events. Waits at most
    /// `patience` (the group commit takes milliseconds), then answers with what is durable.
    pub async fn settled_run(
        &self,
        id: &str,
        patience: std::time::Duration,
    ) -> Result<Option<(RunRecord, u64)>, StoreError> {
        let mut changed = self.inner.durable_changed.subscribe();
        let Some(run) = self.assemble(id, Outputs::Inline(super::INLINE_OUTPUT_BYTES))? else {
            return Ok(None);
        };
        let written = match guard(&self.inner.last_seq).get(id) {
            Some(last) => *last,
            None => self.stored_last_seq(id)?,
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let durable = self.last_seq(id)?;
            if durable >= written {
                return Ok(Some((run, durable)));
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Ok(Some((run, durable)));
            }
        }
    }

    /// The sequence number of a run's newest durable event (0 when it has none).
    pub fn last_seq(&self, run_id: &str) -> Result<u64, StoreError> {
        match guard(&self.inner.durable_seq).get(run_id) {
            Some(last) => Ok(*last),
            None => self.stored_last_seq(run_id),
        }
    }

    /// A whole run by its full id: header, steps, and each step's newest output.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.assemble(id, Outputs::All)
    }

    fn assemble(&self, id: &str, outputs: Outputs) -> Result<Option<RunRecord>, StoreError> {
        self.settle();
        let Some(raw) = self.inner.runs.get(id.as_bytes())? else {
            return Ok(None);
        };
        let mut run: RunRecord = serde_json::from_slice(&raw)?;
        run.steps = self.steps_of(id)?;
        for (index, step) in run.steps.iter_mut().enumerate() {
            let Some(raw) = self
                .inner
                .outputs
                .get(output_key(id, index, step.attempts))?
            else {
                continue;
            };
            step.output_bytes = raw.len() as u64;
            if match outputs {
                Outputs::All => true,
                Outputs::Inline(limit) => raw.len() <= limit,
            } {
                step.output = Some(serde_json::from_slice(&raw)?);
            }
        }
        Ok(Some(run))
    }

    fn steps_of(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        self.settle();
        self.inner
            .steps
            .scan_prefix(run_prefix(run_id))
            .values()
            .map(|raw| Ok(serde_json::from_slice(&raw?)?))
            .collect()
    }

    /// The stored output of one attempt of a run's step (`None` for the newest attempt), as
    /// JSON text. `Ok(None)` when the step has no output for that attempt. `hint` is where the
    /// caller believes the step is: checked, it saves searching the run's steps (a client
    /// reading every output of a long run would otherwise search once per step).
    pub fn step_output(
        &self,
        run_id: &str,
        step_id: &str,
        hint: Option<usize>,
        attempt: Option<u32>,
    ) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        let Some((index, attempts)) = self.find_step(run_id, step_id, hint)? else {
            return Ok(None);
        };
        let attempt = attempt.unwrap_or(attempts);
        Ok(self
            .inner
            .outputs
            .get(output_key(run_id, index, attempt))?
            .map(|raw| (attempt, raw.to_vec())))
    }

    /// The stored output of instance `instance` of the loop step at `index`, from the step
    /// attempt it ran in.
    pub fn instance_output(
        &self,
        run_id: &str,
        index: usize,
        step_attempt: u32,
        instance: usize,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.settle();
        self.inner
            .outputs
            .get(instance_output_key(run_id, index, step_attempt, instance))?
            .map(|raw| serde_json::from_slice(&raw))
            .transpose()
            .map_err(StoreError::from)
    }

    /// The index and attempts of step `step_id` of a run: at `hint` when it is there, else by
    /// a search that reads only each step's id.
    fn find_step(
        &self,
        run_id: &str,
        step_id: &str,
        hint: Option<usize>,
    ) -> Result<Option<(usize, u32)>, StoreError> {
        self.settle();
        /// The part of a step record a search needs.
        #[derive(serde::Deserialize)]
        struct Identity {
            id: String,
            attempts: u32,
        }
        if let Some(index) = hint
            && let Some(raw) = self.inner.steps.get(step_key(run_id, index))?
        {
            let step: Identity = serde_json::from_slice(&raw)?;
            if step.id == step_id {
                return Ok(Some((index, step.attempts)));
            }
        }
        for item in self.inner.steps.scan_prefix(run_prefix(run_id)) {
            let (key, raw) = item?;
            let step: Identity = serde_json::from_slice(&raw)?;
            if step.id == step_id {
                // The key ends with the step's index (see `step_key`).
                let index = key
                    .len()
                    .checked_sub(4)
                    .and_then(|start| <[u8; 4]>::try_from(&key[start..]).ok())
                    .map_or(0, u32::from_be_bytes);
                return Ok(Some((index as usize, step.attempts)));
            }
        }
        Ok(None)
    }

    /// The full id of the one run whose id starts with `prefix`.
    pub fn resolve_run_id(&self, prefix: &str) -> Result<String, StoreError> {
        self.settle();
        let not_found = || StoreError::RunNotFound(prefix.to_owned());
        if prefix.is_empty() {
            return Err(not_found());
        }
        let mut matches = self.inner.runs.scan_prefix(prefix.as_bytes()).keys();
        let first = matches.next().ok_or_else(not_found)??;
        let others: Vec<String> = matches
            .take(3)
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect::<Result<_, sled::Error>>()?;
        if others.is_empty() {
            return Ok(String::from_utf8_lossy(&first).into_owned());
        }
        let mut examples = vec![String::from_utf8_lossy(&first).into_owned()];
        examples.extend(others);
        Err(StoreError::AmbiguousRunId {
            prefix: prefix.to_owned(),
            examples: examples.join(", "),
        })
    }

    /// Runs newest first (ids sort by creation time), starting after `after` when given, with
    /// their steps but without outputs.
    pub fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.settle();
        let range = match after {
            Some(after) => self.inner.runs.range(..after.as_bytes()),
            None => self.inner.runs.iter(),
        };
        let mut runs = Vec::new();
        for entry in range.rev() {
            let (_, raw) = entry?;
            let mut run: RunRecord = serde_json::from_slice(&raw)?;
            let wanted = filter
                .runbook
                .as_ref()
                .is_none_or(|name| *name == run.runbook)
                && filter.status.is_none_or(|status| status == run.status);
            if wanted {
                run.steps = self.steps_of(&run.id)?;
                runs.push(run);
                if runs.len() == limit {
                    break;
                }
            }
        }
        Ok(runs)
    }

    /// Runs that had not ended when the daemon last stopped, whole. A run whose records
    /// cannot be read is quarantined instead (see [`Store::quarantine`]) and listed second:
    /// one corrupt record never stops the other runs from recovering.
    pub fn unfinished_runs(&self) -> Result<(Vec<RunRecord>, Vec<Quarantined>), StoreError> {
        self.settle();
        let mut runs = Vec::new();
        let mut quarantined = Vec::new();
        let ids: Vec<String> = self
            .inner
            .runs
            .iter()
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect::<Result<_, StoreError>>()?;
        for id in ids {
            let Some(raw) = self.inner.runs.get(id.as_bytes())? else {
                continue;
            };
            let header = match serde_json::from_slice::<RunRecord>(&raw) {
                Ok(header) => header,
                Err(err) => {
                    let reason = format!("its run record cannot be read: {err}");
                    quarantined.push(self.quarantine(&id, &reason)?);
                    continue;
                }
            };
            if header.status.is_terminal() {
                continue;
            }
            match self.run(&id) {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => {}
                Err(StoreError::Corrupt(err)) => {
                    let reason = format!("a step or output record cannot be read: {err}");
                    quarantined.push(self.quarantine(&id, &reason)?);
                }
                Err(err) => return Err(err),
            }
        }
        Ok((runs, quarantined))
    }

    /// Moves run `run_id` aside: its header goes to the `quarantine` tree with `reason`
    /// (its step, output and event records stay where they are, for inspection), and nothing
    /// lists, resumes or reads it again. Idempotent: a crash halfway quarantines it again at
    /// the next start.
    pub fn quarantine(&self, run_id: &str, reason: &str) -> Result<Quarantined, StoreError> {
        self.settle();
        let header = self.inner.runs.get(run_id.as_bytes())?;
        let record = Quarantined {
            run_id: run_id.to_owned(),
            reason: reason.to_owned(),
            quarantined_at: now_ms(),
            header_hex: header.map(|raw| hex::encode(&raw)).unwrap_or_default(),
        };
        if let Some(refusal) = self.inner.health.refusal() {
            return Err(refusal);
        }
        self.inner
            .quarantine
            .insert(run_id.as_bytes(), serde_json::to_vec(&record)?)
            .map_err(|err| self.write_failed(err))?;
        self.inner
            .runs
            .remove(run_id.as_bytes())
            .map_err(|err| self.write_failed(err))?;
        Ok(record)
    }

    /// Every quarantined run, by id. A quarantine record that cannot be read itself is
    /// logged and left out: `status` must answer whatever the database holds.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, StoreError> {
        let mut found = Vec::new();
        for entry in self.inner.quarantine.iter() {
            let (key, raw) = entry?;
            match serde_json::from_slice(&raw) {
                Ok(record) => found.push(record),
                Err(err) => tracing::warn!(
                    run = %String::from_utf8_lossy(&key),
                    error = %err,
                    "a quarantine record cannot be read"
                ),
            }
        }
        Ok(found)
    }

    /// A run's durable events with a sequence number above `after`, in order.
    pub fn events_after(&self, run_id: &str, after: u64) -> Result<Vec<EventRecord>, StoreError> {
        self.events_page(run_id, after, usize::MAX)
    }

    /// The first `limit` of a run's durable events with a sequence number above `after`, in
    /// order: how a watcher reads a long run without holding all of it.
    pub fn events_page(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let durable = self.last_seq(run_id)?;
        if durable <= after {
            return Ok(Vec::new());
        }
        let start = event_key(run_id, after.saturating_add(1));
        let end = event_key(run_id, durable);
        self.inner
            .events
            .range(start..=end)
            .take(limit)
            .map(|entry| Ok(serde_json::from_slice(&entry?.1)?))
            .collect()
    }
}

/// Run ids never contain `/`, so `<run id>/` prefixes exactly one run's records in the
/// steps, outputs and events trees.
pub(super) fn run_prefix(run_id: &str) -> Vec<u8> {
    [run_id.as_bytes(), b"/"].concat()
}

/// Big-endian numbers so that sled's byte order is numeric order.
pub(super) fn event_key(run_id: &str, seq: u64) -> Vec<u8> {
    [run_prefix(run_id).as_slice(), &seq.to_be_bytes()].concat()
}

/// Steps in runbook order.
pub(super) fn step_key(run_id: &str, index: usize) -> Vec<u8> {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    [run_prefix(run_id).as_slice(), &index.to_be_bytes()].concat()
}

/// A step's attempts in order after its index.
pub(super) fn output_key(run_id: &str, index: usize, attempt: u32) -> Vec<u8> {
    [step_key(run_id, index).as_slice(), &attempt.to_be_bytes()].concat()
}

/// A loop instance's output, after its step attempt's own.
pub(super) fn instance_output_key(
    run_id: &str,
    index: usize,
    step_attempt: u32,
    instance: usize,
) -> Vec<u8> {
    let instance = u32::try_from(instance).unwrap_or(u32::MAX);
    [
        output_key(run_id, index, step_attempt).as_slice(),
        &instance.to_be_bytes(),
    ]
    .concat()
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

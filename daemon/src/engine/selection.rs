//! Running part of a runbook: which steps a run's selection (`--only`, `--from`, `--to`)
//! keeps, and the check, before the run exists, that no kept step reads a step left out
//! (unless an earlier run of the same version lends that step's output).

use std::collections::BTreeSet;

use crate::runbook::Runbook;
use crate::store::{RunRecord, StepStatus};

/// The steps a run is to execute; the default selects them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these steps.
    pub only: Vec<String>,
    /// This step and every step downstream of it (through `needs`).
    pub from: Option<String>,
    /// This step and every step it needs, directly or not.
    pub to: Option<String>,
    /// An earlier run of the same version whose outputs the steps left out lend to the kept
    /// steps that read them.
    pub outputs_from: Option<String>,
}

impl Selection {
    /// Whether it keeps every step (no `only`, `from` or `to`).
    pub fn is_all(&self) -> bool {
        self.only.is_empty() && self.from.is_none() && self.to.is_none()
    }

    /// Which steps of `runbook` it keeps, by position: every constraint given must hold.
    pub fn keeps(&self, runbook: &Runbook) -> Result<Vec<bool>, String> {
        let count = runbook.steps.len();
        let position = |id: &str, flag: &str| {
            runbook.step_index(id).ok_or_else(|| {
                format!(
                    "{flag} names `{id}`, which is not a step of `{}`",
                    runbook.name
                )
            })
        };
        let mut kept = vec![true; count];
        if !self.only.is_empty() {
            let mut only = vec![false; count];
            for id in &self.only {
                only[position(id, "--only")?] = true;
            }
            intersect(&mut kept, &only);
        }
        if let Some(from) = &self.from {
            let start = position(from, "--from")?;
            intersect(
                &mut kept,
                &closure(count, start, |p| runbook.dependents(p).to_vec()),
            );
        }
        if let Some(to) = &self.to {
            let end = position(to, "--to")?;
            let needs = |p: usize| {
                runbook.steps[p]
                    .needs
                    .iter()
                    .filter_map(|need| runbook.step_index(need))
                    .collect::<Vec<_>>()
            };
            intersect(&mut kept, &closure(count, end, needs));
        }
        if !kept.contains(&true) {
            return Err(format!(
                "the selection keeps no step of `{}`: --from and --to must be on one path, and --only must name steps between them",
                runbook.name
            ));
        }
        Ok(kept)
    }
}

fn intersect(kept: &mut [bool], other: &[bool]) {
    for (keep, other) in kept.iter_mut().zip(other) {
        *keep &= *other;
    }
}

/// `start` and every position reachable from it through `next`.
fn closure(count: usize, start: usize, next: impl Fn(usize) -> Vec<usize>) -> Vec<bool> {
    let mut reached = vec![false; count];
    reached[start] = true;
    let mut queue = vec![start];
    while let Some(position) = queue.pop() {
        for following in next(position) {
            if following < count && !reached[following] {
                reached[following] = true;
                queue.push(following);
            }
        }
    }
    reached
}

/// The steps left out that kept steps read (their `with` templates or their `if`), in
/// runbook order: (reader, read).
pub fn unselected_reads(runbook: &Runbook, kept: &[bool]) -> Vec<(String, String)> {
    let mut reads = Vec::new();
    for (position, step) in runbook.steps.iter().enumerate() {
        if !kept[position] {
            continue;
        }
        for read in &step.reads {
            if runbook.step_index(read).is_some_and(|p| !kept[p]) {
                reads.push((step.id.clone(), read.clone()));
            }
        }
    }
    reads
}

/// The refusal of a selection whose kept steps read steps left out, without a run to lend
/// their outputs.
pub fn refuse_reads(reads: &[(String, String)]) -> String {
    let pairs: Vec<String> = reads
        .iter()
        .map(|(reader, read)| format!("`{reader}` reads `{read}`"))
        .collect();
    format!(
        "selected steps read the output of steps left out: {}; select those too, or name an earlier run of this version with --outputs-from RUN",
        pairs.join(", ")
    )
}

/// Checks that `lender` can lend the outputs the kept steps read: a run of the same runbook
/// version in which every read step completed. Returns the read steps' positions.
pub fn check_lender(
    lender: &RunRecord,
    runbook: &Runbook,
    reads: &[(String, String)],
) -> Result<BTreeSet<usize>, String> {
    if lender.runbook != runbook.name || lender.version != runbook.version {
        return Err(format!(
            "--outputs-from run {} ran version {} of `{}`, not the current version {} of `{}`; its outputs may not be what these steps expect",
            lender.id,
            short(&lender.version),
            lender.runbook,
            short(&runbook.version),
            runbook.name
        ));
    }
    let mut lent = BTreeSet::new();
    for (_, read) in reads {
        let Some(position) = runbook.step_index(read) else {
            continue;
        };
        let completed = lender
            .steps
            .get(position)
            .is_some_and(|step| step.id == *read && step.status == StepStatus::Completed);
        if !completed {
            return Err(format!(
                "step `{read}` did not complete in run {}, so it has no output to lend",
                lender.id
            ));
        }
        lent.insert(position);
    }
    Ok(lent)
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// A checked selection of one runbook version's steps, with the outputs lent to it.
#[derive(Debug)]
pub struct Part {
    kept: Vec<bool>,
    /// Where the lent outputs come from, and the steps whose outputs it lends.
    lender: Option<(RunRecord, BTreeSet<usize>)>,
}

impl Part {
    /// Checks `selection` against `runbook`, and `lender` (the `--outputs-from` run) against
    /// what the kept steps read.
    pub fn new(
        runbook: &Runbook,
        selection: &Selection,
        lender: Option<RunRecord>,
    ) -> Result<Self, String> {
        let kept = selection.keeps(runbook)?;
        let reads = unselected_reads(runbook, &kept);
        let lender = match lender {
            None if reads.is_empty() => None,
            None => return Err(refuse_reads(&reads)),
            Some(run) => {
                let lent = check_lender(&run, runbook, &reads)?;
                Some((run, lent))
            }
        };
        Ok(Self { kept, lender })
    }

    /// Marks the steps left out of a new run `skipped` ("not selected"), each with the output
    /// lent to it, if any.
    pub fn leave_out(self, run: &mut RunRecord, now: i64) {
        for (position, step) in run.steps.iter_mut().enumerate() {
            if self.kept[position] {
                continue;
            }
            step.status = StepStatus::Skipped;
            step.unselected = true;
            step.finished_at = now;
            step.error = Some("not selected".to_owned());
            if let Some((lender, lent)) = &self.lender
                && lent.contains(&position)
            {
                step.output = lender.steps[position].output.clone();
                step.error = Some(format!("not selected; its output is run {}'s", lender.id));
            }
        }
    }
}

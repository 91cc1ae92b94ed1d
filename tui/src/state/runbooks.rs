//! The runbooks the daemon knows: the list screen (filter, selection), each runbook's health,
//! and the detail screen of one runbook (steps, params, versions).

use runbook_protocol::v1::{Run, RunbookDetail, RunbookSummary, RunbookVersion, StepSpec};

/// Whether a runbook can run, as the STATE column shows it. An invalid save keeps the last good
/// version runnable, so "invalid" alone would not tell the user whether runs still work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The file on disk is valid.
    Valid,
    /// The file is invalid, but its last good version still runs.
    RunsLastGood,
    /// The file is invalid and never was valid: the runbook cannot run.
    Invalid,
}

impl Health {
    /// The health of `runbook`.
    pub fn of(runbook: &RunbookSummary) -> Self {
        match (runbook.valid, runbook.version.is_empty()) {
            (true, _) => Self::Valid,
            (false, false) => Self::RunsLastGood,
            (false, true) => Self::Invalid,
        }
    }

    /// The STATE cell: short, since the column is narrow; the `*` is explained in the
    /// diagnostics panel.
    pub fn label(self) -> &'static str {
        match self {
            Self::Valid => "ok",
            Self::RunsLastGood => "invalid*",
            Self::Invalid => "invalid",
        }
    }
}

/// The runbook list screen: what the filter holds and which row is selected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunbookList {
    /// Only runbooks whose name or description contains this (ignoring case) are listed.
    pub filter: String,
    /// Index into the filtered list.
    pub selected: usize,
}

impl RunbookList {
    /// The runbooks that pass the filter, in list order.
    pub fn visible<'a>(&self, runbooks: &'a [RunbookSummary]) -> Vec<&'a RunbookSummary> {
        let needle = self.filter.to_lowercase();
        runbooks
            .iter()
            .filter(|rb| {
                needle.is_empty()
                    || rb.name.to_lowercase().contains(&needle)
                    || rb.description.to_lowercase().contains(&needle)
            })
            .collect()
    }

    /// The selected runbook, if any passes the filter.
    pub fn current<'a>(&self, runbooks: &'a [RunbookSummary]) -> Option<&'a RunbookSummary> {
        self.visible(runbooks).get(self.selected).copied()
    }
}

/// The newest run of `runbook` among `runs` (newest first), for the LAST RUN column.
pub fn last_run<'a>(runs: &'a [Run], runbook: &str) -> Option<&'a Run> {
    runs.iter().find(|run| run.runbook == runbook)
}

/// The screen of one runbook: loaded on demand, so every part may still be missing.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailState {
    /// The runbook's name.
    pub name: String,
    /// Steps, params and source, once loaded.
    pub detail: Option<RunbookDetail>,
    /// Its versions, oldest first, once loaded.
    pub versions: Option<Vec<RunbookVersion>>,
    /// Why loading failed, if it did.
    pub error: Option<String>,
    /// The selected row of the step tree.
    pub selected: usize,
}

impl DetailState {
    /// A detail screen waiting for the daemon's answer.
    pub fn loading(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            detail: None,
            versions: None,
            error: None,
            selected: 0,
        }
    }
}

/// One row of the step tree: a step and how deep it sits below the steps it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRow<'a> {
    /// The step.
    pub step: &'a StepSpec,
    /// 0 for steps that need nothing; else one more than the deepest step it needs.
    pub depth: usize,
}

/// The steps in an order where each comes after every step it needs (file order among
/// equals), with their depth: the tree (a DAG, really) the detail screen draws. Steps whose
/// needs are unknown or cyclic, which a valid runbook never has, are placed at the end.
pub fn step_tree(steps: &[StepSpec]) -> Vec<TreeRow<'_>> {
    let mut depth: Vec<Option<usize>> = vec![None; steps.len()];
    let index = |id: &str| steps.iter().position(|s| s.id == id);
    // Relaxation: a DAG of n steps settles in at most n rounds.
    for _ in 0..steps.len() {
        let mut changed = false;
        for (i, step) in steps.iter().enumerate() {
            let needs: Option<Vec<usize>> = step
                .needs
                .iter()
                .map(|need| index(need).and_then(|j| depth[j]))
                .collect();
            if let Some(needs) = needs {
                let d = needs.iter().map(|d| d + 1).max().unwrap_or(0);
                if depth[i] != Some(d) {
                    depth[i] = Some(d);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| (depth[i].unwrap_or(usize::MAX), i));
    order
        .into_iter()
        .map(|i| TreeRow {
            step: &steps[i],
            depth: depth[i].unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_tells_whether_an_invalid_runbook_still_runs() {
        let runbook = |valid: bool, version: &str| RunbookSummary {
            valid,
            version: version.into(),
            ..Default::default()
        };
        assert_eq!(Health::of(&runbook(true, "abc")), Health::Valid);
        assert_eq!(Health::of(&runbook(false, "abc")), Health::RunsLastGood);
        assert_eq!(Health::of(&runbook(false, "")), Health::Invalid);
        assert_eq!(Health::RunsLastGood.label(), "invalid*");
    }

    #[test]
    fn the_filter_matches_names_and_descriptions_ignoring_case() {
        let runbooks = vec![
            RunbookSummary {
                name: "deploy-api".into(),
                ..Default::default()
            },
            RunbookSummary {
                name: "backup".into(),
                description: "Dump the DB".into(),
                ..Default::default()
            },
        ];
        let list = RunbookList {
            filter: "db".into(),
            selected: 0,
        };
        let names: Vec<_> = list.visible(&runbooks).iter().map(|r| &r.name).collect();
        assert_eq!(names, ["backup"]);
    }

    #[test]
    fn steps_come_after_what_they_need() {
        let step = |id: &str, needs: &[&str]| StepSpec {
            id: id.into(),
            needs: needs.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        };
        let steps = vec![
            step("verify", &["deploy", "migrate"]),
            step("build", &[]),
            step("migrate", &["build"]),
            step("deploy", &["migrate"]),
            step("orphan", &["missing"]),
        ];
        let tree: Vec<_> = step_tree(&steps)
            .into_iter()
            .map(|row| (row.step.id.as_str(), row.depth))
            .collect();
        assert_eq!(
            tree,
            [
                ("build", 0),
                ("migrate", 1),
                ("deploy", 2),
                ("verify", 3),
                ("orphan", 0)
            ]
        );
    }
}

//! Table-driven tests of [`steps_to_reopen`]: which steps a retry runs again, with and
//! without `from`, over a chain and a fork.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::{StepRecord, StepStatus};

/// a -> b -> c, and d beside them needing a (a fork at a).
const FORK: &str = r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }
[[steps]]
id = "b"
uses = "shell"
needs = ["a"]
with = { command = ["true"] }
[[steps]]
id = "c"
uses = "shell"
needs = ["b"]
with = { command = ["true"] }
[[steps]]
id = "d"
uses = "shell"
needs = ["a"]
with = { command = ["true"] }
"#;

fn reopened(statuses: &[StepStatus], from: Option<&str>) -> Vec<String> {
    let runbook = crate::runbook::parse_stored("t.toml", FORK).unwrap();
    let steps: Vec<StepRecord> = runbook
        .steps
        .iter()
        .zip(statuses)
        .map(|(step, &status)| StepRecord {
            status,
            ..StepRecord::pending(&step.id, &step.uses)
        })
        .collect();
    let from = from.map(|id| runbook.step_index(id).unwrap());
    steps_to_reopen(&steps, &runbook, from)
        .into_iter()
        .map(|position| runbook.steps[position].id.clone())
        .collect()
}

#[test]
fn a_retry_reopens_what_did_not_complete_and_what_it_held_back() {
    use StepStatus::{Cancelled, Completed, Failed, Skipped, TimedOut};
    let cases: &[(&[StepStatus], Option<&str>, &[&str])] = &[
        // b failed, c was skipped for it; d completed beside them and stays.
        (&[Completed, Failed, Skipped, Completed], None, &["b", "c"]),
        // A timed-out and a cancelled step both run again, with what they held back.
        (
            &[Completed, TimedOut, Skipped, Cancelled],
            None,
            &["b", "c", "d"],
        ),
        // The first step failed: everything after it was skipped.
        (
            &[Failed, Skipped, Skipped, Skipped],
            None,
            &["a", "b", "c", "d"],
        ),
        // A step skipped by its own `if`, downstream of nothing that runs again, stays.
        (&[Completed, Completed, Completed, Skipped], None, &[]),
        // `from` runs completed steps again, but only downstream of it.
        (
            &[Completed, Completed, Completed, Completed],
            Some("b"),
            &["b", "c"],
        ),
        (
            &[Completed, Completed, Completed, Completed],
            Some("a"),
            &["a", "b", "c", "d"],
        ),
        // `from` adds to the failures, it does not replace them.
        (
            &[Completed, Completed, Completed, Failed],
            Some("c"),
            &["c", "d"],
        ),
    ];
    for (statuses, from, expected) in cases {
        assert_eq!(
            reopened(statuses, *from),
            *expected,
            "statuses {statuses:?}, from {from:?}"
        );
    }
}

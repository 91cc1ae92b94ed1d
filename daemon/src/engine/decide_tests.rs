//! Table-driven tests of [`decide`]: dependency order, cascading skips, `if`, pause, cancel,
//! retry back-off due and not due, async polls due, `max_parallel`, and the run's status
//! from every step status.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::store::{AsyncWait, RunRecord, StepRecord, StepStatus};

const NOW: i64 = 1_000_000;

/// A runbook from TOML steps, parsed as stored versions are (no plugin checks).
fn runbook(source: &str) -> Runbook {
    crate::runbook::parse_stored("t.toml", source).unwrap()
}

/// Three steps in a chain: a -> b -> c.
const CHAIN: &str = r#"
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
"#;

fn state_of(runbook: &Runbook, status: RunStatus, steps: &[StepStatus]) -> RunState {
    let run = RunRecord {
        id: "r".into(),
        runbook: runbook.name.clone(),
        version: "v".into(),
        status,
        params: serde_json::Map::from_iter([("env".to_owned(), "staging".into())]),
        steps: runbook
            .steps
            .iter()
            .zip(steps)
            .map(|(step, &status)| StepRecord {
                status,
                ..StepRecord::pending(&step.id, &step.uses)
            })
            .collect(),
        created_at: 1,
        started_at: 0,
        finished_at: 0,
        error: None,
        dry_run: false,
        retries: Vec::new(),
    };
    RunState::new(run, runbook)
}

fn statuses(state: &RunState) -> Vec<StepStatus> {
    state.run.steps.iter().map(|step| step.status).collect()
}

use StepStatus as S;

#[test]
fn steps_start_in_dependency_order() {
    let runbook = runbook(CHAIN);
    let cases: &[(&[StepStatus], &[usize], RunStatus)] = &[
        (
            &[S::Pending, S::Pending, S::Pending],
            &[0],
            RunStatus::Running,
        ),
        (
            &[S::Completed, S::Pending, S::Pending],
            &[1],
            RunStatus::Running,
        ),
        (
            &[S::Completed, S::Skipped, S::Pending],
            &[2],
            RunStatus::Running,
        ),
        (
            &[S::Running, S::Pending, S::Pending],
            &[],
            RunStatus::Running,
        ),
        (
            &[S::Waiting, S::Pending, S::Pending],
            &[],
            RunStatus::Waiting,
        ),
        (
            &[S::Ambiguous, S::Pending, S::Pending],
            &[],
            RunStatus::Waiting,
        ),
        (
            &[S::Completed, S::Completed, S::Completed],
            &[],
            RunStatus::Completed,
        ),
    ];
    for (steps, start, status) in cases {
        let mut state = state_of(&runbook, RunStatus::Pending, steps);
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(decision.start, *start, "steps {steps:?}");
        assert_eq!(state.run.status, *status, "steps {steps:?}");
        assert_eq!(
            decision.changes.header,
            *status != RunStatus::Pending,
            "the header changes with the status"
        );
    }
}

#[test]
fn a_need_that_did_not_complete_skips_everything_downstream() {
    let runbook = runbook(CHAIN);
    for failed in [S::Failed, S::Cancelled, S::TimedOut] {
        let mut state = state_of(
            &runbook,
            RunStatus::Running,
            &[failed, S::Pending, S::Pending],
        );
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(statuses(&state), [failed, S::Skipped, S::Skipped]);
        assert!(state.run.steps[1].upstream_failed && state.run.steps[2].upstream_failed);
        assert_eq!(
            state.run.steps[2].error.as_deref(),
            Some("skipped because `b` did not complete")
        );
        assert_eq!(decision.changes.steps, [1, 2]);
        assert_eq!(state.run.status, RunStatus::Failed);
        assert!(
            state.run.error.as_deref().unwrap().starts_with("step `a` "),
            "the run names the step that failed, not the skipped ones: {:?}",
            state.run.error
        );
        assert!(decision.start.is_empty());
    }
}

#[test]
fn a_skipped_need_does_not_block() {
    let runbook = runbook(CHAIN);
    let mut state = state_of(
        &runbook,
        RunStatus::Running,
        &[S::Skipped, S::Pending, S::Pending],
    );
    let decision = decide(&mut state, &runbook, NOW);
    assert_eq!(decision.start, [1]);
}

#[test]
fn if_conditions_skip_or_fail_a_step() {
    let cases = [
        ("params.env == 'staging'", S::Pending, Some(0)),
        ("params.env == 'prod'", S::Skipped, None),
        ("params.missing.deeper", S::Failed, None),
    ];
    for (condition, status, started) in cases {
        let runbook = runbook(&format!(
            "[[steps]]\nid = \"a\"\nuses = \"shell\"\nif = \"{condition}\"\nwith = {{ command = [\"true\"] }}\n"
        ));
        let mut state = state_of(&runbook, RunStatus::Running, &[S::Pending]);
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(statuses(&state), [status], "if = {condition}");
        assert_eq!(decision.start.first().copied(), started, "if = {condition}");
        if status == S::Failed {
            assert!(
                state.run.steps[0]
                    .error
                    .as_deref()
                    .unwrap()
                    .starts_with("cannot evaluate `if`"),
                "{:?}",
                state.run.steps[0].error
            );
        }
    }
}

#[test]
fn an_if_reads_the_status_and_output_of_the_steps_it_names() {
    let runbook = runbook(
        r#"
[[steps]]
id = "a"
uses = "shell"
with = { command = ["true"] }
[[steps]]
id = "b"
uses = "shell"
needs = ["a"]
if = "steps.a.status == 'completed' and steps.a.output.n == 2"
with = { command = ["true"] }
"#,
    );
    let mut state = state_of(&runbook, RunStatus::Running, &[S::Completed, S::Pending]);
    state.run.steps[0].output = Some(serde_json::json!({ "n": 2 }));
    assert_eq!(decide(&mut state, &runbook, NOW).start, [1]);
    let mut state = state_of(&runbook, RunStatus::Running, &[S::Completed, S::Pending]);
    state.run.steps[0].output = Some(serde_json::json!({ "n": 3 }));
    decide(&mut state, &runbook, NOW);
    assert_eq!(statuses(&state), [S::Completed, S::Skipped]);
}

#[test]
fn a_paused_run_starts_nothing_but_still_skips() {
    let runbook = runbook(CHAIN);
    let mut state = state_of(
        &runbook,
        RunStatus::Paused,
        &[S::Pending, S::Pending, S::Pending],
    );
    let decision = decide(&mut state, &runbook, NOW);
    assert!(decision.start.is_empty());
    assert_eq!(state.run.status, RunStatus::Paused);
    assert!(decision.events.is_empty());

    let mut state = state_of(
        &runbook,
        RunStatus::Paused,
        &[S::Failed, S::Pending, S::Pending],
    );
    decide(&mut state, &runbook, NOW);
    assert_eq!(statuses(&state), [S::Failed, S::Skipped, S::Skipped]);
    assert_eq!(
        state.run.status,
        RunStatus::Failed,
        "a pause ends when every step has ended anyway"
    );
}

#[test]
fn an_ended_run_decides_nothing() {
    let runbook = runbook(CHAIN);
    for status in [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
    ] {
        let mut state = state_of(&runbook, status, &[S::Pending, S::Pending, S::Pending]);
        assert_eq!(decide(&mut state, &runbook, NOW), Decision::default());
        assert_eq!(state.run.status, status);
    }
}

#[test]
fn a_retry_back_off_starts_the_step_only_once_due() {
    let runbook = runbook(CHAIN);
    for (retry_at, started, wake_at) in [
        (NOW + 500, false, Some(NOW + 500)),
        (NOW, true, None),
        (NOW - 1, true, None),
    ] {
        let mut state = state_of(
            &runbook,
            RunStatus::Running,
            &[S::Pending, S::Pending, S::Pending],
        );
        state.update(0, |step| {
            step.retry_at = retry_at;
            step.attempts = 1;
        });
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(!decision.start.is_empty(), started, "retry at {retry_at}");
        assert_eq!(decision.wake_at, wake_at, "retry at {retry_at}");
        let expected = if started {
            RunStatus::Running
        } else {
            RunStatus::Waiting
        };
        assert_eq!(state.run.status, expected, "retry at {retry_at}");
    }
}

#[test]
fn async_waits_are_looked_at_when_their_poll_or_deadline_is_due() {
    let runbook = runbook(CHAIN);
    let wait = |resume_at, deadline| AsyncWait {
        token: "t".into(),
        invocation_id: None,
        resume_at,
        deadline,
        since: NOW - 1000,
        poll_ms: 100,
    };
    for (resume_at, deadline, look, wake_at) in [
        (NOW + 100, 0, false, Some(NOW + 100)),
        (NOW + 100, NOW + 50, false, Some(NOW + 50)),
        (NOW, 0, true, None),
        (NOW + 100, NOW - 1, true, None),
    ] {
        let mut state = state_of(
            &runbook,
            RunStatus::Running,
            &[S::Pending, S::Pending, S::Pending],
        );
        state.update(0, |step| {
            step.status = S::Waiting;
            step.wait = Some(wait(resume_at, deadline));
        });
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(
            decision.look == [0],
            look,
            "poll {resume_at}, deadline {deadline}"
        );
        assert_eq!(decision.wake_at, wake_at);
        assert_eq!(state.run.status, RunStatus::Waiting, "a look holds no slot");
        // A look in progress is not started twice.
        assert!(decide(&mut state, &runbook, NOW).look.is_empty());
    }
}

#[test]
fn max_parallel_bounds_the_steps_in_flight() {
    let mut source = String::from("max_parallel = 2\n");
    for id in ["a", "b", "c", "d", "e"] {
        source.push_str(&format!(
            "[[steps]]\nid = \"{id}\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n"
        ));
    }
    let runbook = runbook(&source);
    let mut state = state_of(&runbook, RunStatus::Running, &[S::Pending; 5]);
    assert_eq!(decide(&mut state, &runbook, NOW).start, [0, 1]);
    assert!(
        decide(&mut state, &runbook, NOW).start.is_empty(),
        "both slots are held"
    );
    state.update(0, |step| step.status = S::Completed);
    state.in_flight.remove(&0);
    assert_eq!(decide(&mut state, &runbook, NOW).start, [2]);
}

#[test]
fn the_run_status_follows_from_every_step_status() {
    let one = runbook("[[steps]]\nid = \"a\"\nuses = \"shell\"\nwith = { command = [\"true\"] }\n");
    let cases = [
        (S::Pending, RunStatus::Running),
        (S::Running, RunStatus::Running),
        (S::Waiting, RunStatus::Waiting),
        (S::Paused, RunStatus::Running),
        (S::Completed, RunStatus::Completed),
        (S::Failed, RunStatus::Failed),
        (S::Cancelled, RunStatus::Failed),
        (S::TimedOut, RunStatus::Failed),
        (S::Skipped, RunStatus::Completed),
        (S::Ambiguous, RunStatus::Waiting),
    ];
    for (step, run) in cases {
        let mut state = state_of(&one, RunStatus::Running, &[step]);
        let decision = decide(&mut state, &one, NOW);
        assert_eq!(state.run.status, run, "one step {step:?}");
        if run.is_terminal() {
            assert_eq!(state.run.finished_at, NOW);
        }
        assert_eq!(
            decision.changes.header,
            run != RunStatus::Running,
            "the header is written only when the status changes"
        );
    }
}

#[test]
fn judging_is_incremental() {
    // A 10,000-step chain: each decision looks only at what changed.
    let mut source = String::new();
    for i in 0..10_000 {
        source.push_str(&format!(
            "[[steps]]\nid = \"s{i}\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n"
        ));
        if i > 0 {
            source.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    let runbook = runbook(&source);
    let mut state = state_of(&runbook, RunStatus::Running, &vec![S::Pending; 10_000]);
    for i in 0..10_000 {
        let decision = decide(&mut state, &runbook, NOW);
        assert_eq!(decision.start, [i]);
        assert!(decision.changes.steps.is_empty());
        state.update(i, |step| step.status = S::Completed);
        state.in_flight.remove(&i);
    }
    decide(&mut state, &runbook, NOW);
    assert_eq!(state.run.status, RunStatus::Completed);
}

//! Table-driven tests of the step record's transitions: what each leaves in the record and
//! which events it implies.
#![allow(clippy::unwrap_used)]

use super::*;

const NOW: i64 = 5_000;

fn step(status: StepStatus) -> StepRecord {
    StepRecord {
        status,
        attempts: 1,
        started_at: 1_000,
        ..StepRecord::pending("deploy", "shell")
    }
}

/// The statuses of the `StepStatus` events among `events`.
fn announced(events: &[EventKind]) -> Vec<StepStatus> {
    events
        .iter()
        .filter_map(|event| match event {
            EventKind::StepStatus { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

fn failed(class: FailureClass) -> Ending {
    Ending::Failed {
        error: "boom".into(),
        output: Some(serde_json::json!({ "code": 1 })),
        class,
        retry_after: None,
    }
}

#[test]
fn a_rate_limit_wait_is_recorded_and_ends_with_its_attempt() {
    let wait = PermitWait {
        target: "api".into(),
        limit: "50/s".into(),
        until: NOW + 20,
    };
    let mut record = step(StepStatus::Running);
    let events = record.hold_for_permit(wait.clone());
    assert_eq!(
        record.status,
        StepStatus::Running,
        "still running: held, not parked"
    );
    assert_eq!(record.permit_wait.as_ref(), Some(&wait));
    assert_eq!(
        events,
        [EventKind::StepPermitWait {
            step_id: "deploy".into(),
            wait: wait.clone(),
        }]
    );
    record.finish(Ending::Completed(None), None, NOW + 30);
    assert_eq!(
        record.permit_wait, None,
        "an ended attempt waits for nothing"
    );
    record.hold_for_permit(wait);
    record.start(2, NOW + 40);
    assert_eq!(record.permit_wait, None, "a new attempt starts without one");
}

#[test]
fn starting_an_attempt_clears_the_last_one() {
    let mut record = StepRecord {
        retry_at: 4_000,
        error: Some("old".into()),
        output: Some(serde_json::json!(1)),
        ..step(StepStatus::Pending)
    };
    let events = record.start(2, NOW);
    assert_eq!(announced(&events), [StepStatus::Running]);
    assert_eq!(
        (
            record.attempts,
            record.retry_at,
            record.started_at,
            record.finished_at
        ),
        (2, 0, NOW, 0)
    );
    assert_eq!((record.error, record.output), (None, None));
}

#[test]
fn an_attempt_ends_completed_failed_timed_out_or_retrying() {
    let cases = [
        (
            Ending::Completed(Some(serde_json::json!({ "ok": true }))),
            None,
            StepStatus::Completed,
            0,
        ),
        (failed(FailureClass::Permanent), None, StepStatus::Failed, 0),
        (failed(FailureClass::Transient), None, StepStatus::Failed, 0),
        (failed(FailureClass::Timeout), None, StepStatus::TimedOut, 0),
        (
            failed(FailureClass::Transient),
            Some(Duration::from_millis(250)),
            StepStatus::Pending,
            NOW + 250,
        ),
    ];
    for (ending, delay, status, retry_at) in cases {
        let mut record = step(StepStatus::Running);
        let events = record.finish(ending.clone(), delay, NOW);
        assert_eq!(record.status, status, "{ending:?}");
        assert_eq!(record.retry_at, retry_at, "{ending:?}");
        assert_eq!(announced(&events), [status]);
        assert_eq!(record.history.len(), 1, "every attempt is in the history");
        assert_eq!(record.history[0].finished_at, NOW);
        match ending {
            Ending::Completed(output) => {
                assert_eq!(record.output, output);
                assert_eq!(record.history[0].error, None);
                assert_eq!(record.finished_at, NOW);
            }
            Ending::Failed { error, output, .. } => {
                assert_eq!(record.error.as_deref(), Some(error.as_str()));
                assert_eq!(record.output, output, "a failure keeps what the step said");
                assert_eq!(record.history[0].error.as_deref(), Some("boom"));
                let retrying = events
                    .iter()
                    .any(|event| matches!(event, EventKind::StepRetrying { delay_ms: 250, .. }));
                assert_eq!(retrying, delay.is_some());
                assert_eq!(record.finished_at, if delay.is_some() { 0 } else { NOW });
            }
        }
    }
}

#[test]
fn approvals_are_asked_given_and_refused() {
    let approval = ApprovalRecord {
        summary: "run ./deploy".into(),
        plan: serde_json::json!({}),
        plan_hash: "h".into(),
        requested_at: NOW,
        decision: None,
        instruction: false,
        inputs: Vec::new(),
        instance_plans: Vec::new(),
    };
    let mut record = step(StepStatus::Pending);
    let events = record.ask_approval(approval.clone());
    assert_eq!(record.status, StepStatus::Waiting);
    assert!(matches!(events[1], EventKind::ApprovalRequested { .. }));

    let mut approved = record.clone();
    assert_eq!(
        announced(&approved.approve("ann", None, NOW)),
        [StepStatus::Pending]
    );
    let decision = approved.approval.unwrap().decision.unwrap();
    assert!(decision.approved && decision.by == "ann" && decision.at == NOW);

    for (reason, shown) in [("not now", "not now"), ("", "no reason given")] {
        let mut denied = record.clone();
        assert_eq!(
            announced(&denied.deny("bob", reason, NOW)),
            [StepStatus::Failed]
        );
        assert_eq!(
            denied.error.as_deref(),
            Some(format!("denied by bob: {shown}").as_str())
        );
        let decision = denied.approval.unwrap().decision.unwrap();
        assert!(!decision.approved);
        assert_eq!(decision.reason.as_deref(), Some(shown));
    }
}

#[test]
fn an_ambiguous_step_is_resolved_as_the_operator_says() {
    for (resolution, status, error) in [
        (Resolution::Retry, StepStatus::Pending, None),
        (
            Resolution::Skip,
            StepStatus::Skipped,
            Some("skipped by ann after an interrupted attempt"),
        ),
        (
            Resolution::Fail,
            StepStatus::Failed,
            Some("marked failed by ann after an interrupted attempt"),
        ),
    ] {
        let mut record = StepRecord {
            error: Some("interrupted".into()),
            ..step(StepStatus::Ambiguous)
        };
        assert_eq!(announced(&record.resolve(resolution, "ann", NOW)), [status]);
        assert_eq!(record.error.as_deref(), error);
    }
}

#[test]
fn an_interrupted_step_runs_again_only_when_idempotent() {
    let mut record = step(StepStatus::Running);
    record.interrupt(true, "r1", NOW);
    assert_eq!(record.status, StepStatus::Pending);
    let mut record = step(StepStatus::Running);
    record.interrupt(false, "r1", NOW);
    assert_eq!(record.status, StepStatus::Ambiguous);
    assert!(
        record
            .error
            .unwrap()
            .contains("runbook resolve r1 deploy retry|skip|fail")
    );
}

#[test]
fn a_step_whose_agent_fell_silent_waits_for_a_decision_and_keeps_its_key() {
    let mut record = step(StepStatus::Running);
    let key = record.key_attempt(record.attempts);
    let events = record.lose(
        "agent db-1 stopped heartbeating before the step ended",
        "r1",
        NOW,
    );
    assert_eq!(announced(&events), [StepStatus::Ambiguous]);
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.key_of_attempt, Some(key));
    let error = record.error.unwrap();
    assert!(error.contains("agent db-1 stopped heartbeating"), "{error}");
    assert!(
        error.contains("runbook resolve r1 deploy retry|skip|fail"),
        "{error}"
    );
}

#[test]
fn skips_say_why() {
    let mut record = step(StepStatus::Pending);
    record.skip(Some("build"), NOW);
    assert!(record.upstream_failed);
    assert_eq!(
        record.error.as_deref(),
        Some("skipped because `build` did not complete")
    );
    let mut record = step(StepStatus::Pending);
    record.skip(None, NOW);
    assert!(!record.upstream_failed && record.error.is_none());
    assert_eq!(
        (record.status, record.finished_at),
        (StepStatus::Skipped, NOW)
    );
}

#[test]
fn async_waits_park_look_again_and_end_from_outside() {
    let wait = AsyncWait {
        token: "t1".into(),
        invocation_id: Some("inv-1".into()),
        resume_at: NOW + 100,
        deadline: 0,
        since: NOW,
        poll_ms: 100,
    };
    let mut record = step(StepStatus::Running);
    let events = record.wait_for(wait, "waiting for invocation inv-1");
    assert_eq!(record.status, StepStatus::Waiting);
    assert!(
        matches!(&events[1], EventKind::StepOutput { line, .. } if line == "info: waiting for invocation inv-1")
    );

    assert!(record.look_again(None, None, NOW + 100).is_empty());
    assert_eq!(record.wait.as_ref().unwrap().resume_at, NOW + 200);
    let events = record.look_again(Some(("t2".into(), 500)), Some("refused".into()), NOW + 200);
    let wait = record.wait.as_ref().unwrap();
    assert_eq!(
        (wait.token.as_str(), wait.poll_ms, wait.resume_at),
        ("t2", 500, NOW + 700)
    );
    assert!(
        matches!(&events[0], EventKind::StepOutput { line, .. } if line.starts_with("warn: refused; looking again in 500ms"))
    );

    let mut completed = record.clone();
    completed.complete_from_outside(Ok(Some(serde_json::json!({ "done": true }))), "ci", NOW);
    assert_eq!(completed.status, StepStatus::Completed);
    assert_eq!(completed.output, Some(serde_json::json!({ "done": true })));
    assert!(completed.wait.is_none());
    let mut failed = record;
    failed.complete_from_outside(Err(String::new()), "ci", NOW);
    assert_eq!(failed.status, StepStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("failed by ci: no reason given")
    );
    assert_eq!(failed.history.last().unwrap().error, failed.error);
}

#[test]
fn dry_runs_cancels_and_early_failures_end_the_step() {
    let mut record = step(StepStatus::Pending);
    record.finish_dry(serde_json::json!({ "dry_run": true }), NOW);
    assert_eq!(
        (record.status, record.started_at),
        (StepStatus::Completed, NOW)
    );
    for status in [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Waiting,
    ] {
        let mut record = step(status);
        assert_eq!(announced(&record.cancel(NOW)), [StepStatus::Cancelled]);
    }
    let mut record = step(StepStatus::Pending);
    record.fail_before_start("cannot render `with`".into(), NOW);
    assert_eq!(record.status, StepStatus::Failed);
}

#[test]
fn large_outputs_are_left_out_of_events() {
    let mut record = step(StepStatus::Running);
    let big = "x".repeat(crate::store::INLINE_OUTPUT_BYTES + 1);
    let events = record.finish(Ending::Completed(Some(serde_json::json!(big))), None, NOW);
    assert!(matches!(
        &events[0],
        EventKind::StepStatus {
            output: None,
            output_omitted: true,
            ..
        }
    ));
    let mut record = step(StepStatus::Running);
    let events = record.finish(
        Ending::Completed(Some(serde_json::json!("small"))),
        None,
        NOW,
    );
    assert!(matches!(
        &events[0],
        EventKind::StepStatus {
            output: Some(_),
            output_omitted: false,
            ..
        }
    ));
}

#[test]
fn an_interrupted_attempt_is_in_the_history_and_its_key_is_sent_again_until_a_new_decision() {
    // Attempt 1 is interrupted twice in a row: attempts 2 and 3 send attempt 1's key.
    let mut record = step(StepStatus::Running);
    record.interrupt(true, "r1", NOW);
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].attempt, 1);
    assert!(
        record.history[0]
            .error
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
    assert_eq!(record.key_attempt(2), 1);
    record.start(2, NOW);
    record.interrupt(true, "r1", NOW);
    assert_eq!(
        record.key_attempt(3),
        1,
        "still the key the far side saw first"
    );
    record.start(3, NOW);
    // The attempt ends: a retry policy's next attempt is a new decision with its own key.
    record.finish(
        failed(FailureClass::Transient),
        Some(Duration::from_millis(10)),
        NOW,
    );
    assert_eq!(record.key_attempt(4), 4);
    assert_eq!(record.history.len(), 3);

    // An ambiguous step resolved `retry` by an operator gets a new key.
    let mut record = step(StepStatus::Running);
    record.interrupt(false, "r1", NOW);
    assert_eq!(
        record.history.len(),
        1,
        "skip or fail still shows the attempt"
    );
    record.resolve(Resolution::Retry, "ann", NOW);
    assert_eq!(record.key_attempt(2), 2);
}

#[test]
fn reopening_an_ended_step_makes_it_pending_with_its_history_and_a_fresh_retry_budget() {
    for status in [
        StepStatus::Failed,
        StepStatus::Cancelled,
        StepStatus::TimedOut,
        StepStatus::Skipped,
        StepStatus::Completed,
    ] {
        let mut record = step(status);
        record.attempts = 3;
        record.error = Some("boom".into());
        record.output = Some(serde_json::json!({ "code": 1 }));
        record.finished_at = NOW;
        record.retry_at = NOW;
        record.upstream_failed = true;
        record.unselected = true;
        record.key_of_attempt = Some(3);
        record.history = vec![AttemptRecord {
            attempt: 3,
            started_at: 1_000,
            finished_at: NOW,
            error: Some("boom".into()),
        }];
        let events = record.reopen();
        assert_eq!(announced(&events), [StepStatus::Pending], "{status:?}");
        assert_eq!(record.status, StepStatus::Pending);
        assert_eq!(record.attempts, 3, "the next attempt is number 4");
        assert_eq!(record.attempts_before_retry, 3, "its budget starts again");
        assert_eq!(record.history.len(), 1, "past attempts stay");
        assert!(record.error.is_none() && record.output.is_none());
        assert_eq!((record.finished_at, record.retry_at), (0, 0));
        assert!(!record.upstream_failed && !record.unselected);
        assert_eq!(record.key_of_attempt, None, "a new decision, a new key");
    }
}

/// A loop step of three items whose instances are in `statuses`.
fn looping(status: StepStatus, statuses: [StepStatus; 3]) -> StepRecord {
    let mut record = step(status);
    record.set_instances(vec![
        serde_json::json!("a"),
        serde_json::json!("b"),
        serde_json::json!("c"),
    ]);
    for (instance, status) in record.instances.iter_mut().zip(statuses) {
        instance.status = status;
    }
    record
}

fn instance_statuses(record: &StepRecord) -> Vec<StepStatus> {
    record
        .instances
        .iter()
        .map(|instance| instance.status)
        .collect()
}

#[test]
fn loop_instances_start_and_end_within_the_step_attempt_and_announce_it() {
    use StepStatus::{Completed, Failed, Pending, Running};
    let mut record = looping(Running, [Pending; 3]);
    record.attempts = 2;
    let events = record.start_instance(1, 2, NOW);
    let instance = &record.instances[1];
    assert_eq!(
        (
            instance.status,
            instance.attempts,
            instance.step_attempt,
            instance.key_attempt
        ),
        (Running, 1, 2, 2)
    );
    assert_eq!(
        events,
        [EventKind::InstanceStatus {
            step_id: "deploy".into(),
            index: 1,
            status: Running,
            attempts: 1,
            error: None,
        }]
    );
    let cases = [
        (Completed, Some(serde_json::json!({ "ok": true })), None),
        (Failed, None, Some("exit 3".to_owned())),
        (StepStatus::TimedOut, None, Some("timed out".to_owned())),
        (StepStatus::Cancelled, None, Some("fail_fast".to_owned())),
    ];
    for (status, output, error) in cases {
        let mut record = record.clone();
        let events = record.finish_instance(1, status, output.clone(), error.clone(), NOW + 5);
        let instance = &record.instances[1];
        assert_eq!(instance.status, status);
        assert_eq!(instance.output, output);
        assert_eq!(instance.error, error);
        assert_eq!(instance.finished_at, NOW + 5);
        assert_eq!(
            events,
            [EventKind::InstanceStatus {
                step_id: "deploy".into(),
                index: 1,
                status,
                attempts: 1,
                error,
            }]
        );
        // The step itself does not move: the engine ends it once every instance has.
        assert_eq!(record.status, Running);
    }
    // An index past the items changes nothing.
    assert!(record.start_instance(7, 2, NOW).is_empty());
    assert!(
        record
            .finish_instance(7, Failed, None, None, NOW)
            .is_empty()
    );
}

#[test]
fn a_crash_cancel_or_reopen_moves_the_instances_that_had_not_completed() {
    use StepStatus::{Ambiguous, Cancelled, Completed, Failed, Pending, Running};
    let during = [Completed, Running, Pending];
    // (what, the step's status, its instances before, the transition, its instances after)
    type Change = fn(&mut StepRecord) -> Vec<EventKind>;
    type Case = (
        &'static str,
        StepStatus,
        [StepStatus; 3],
        Change,
        Vec<StepStatus>,
    );
    let cases: [Case; 5] = [
        (
            "interrupted, idempotent",
            Running,
            during,
            |r| r.interrupt(true, "R", NOW),
            vec![Completed, Pending, Pending],
        ),
        (
            "interrupted, not idempotent",
            Running,
            during,
            |r| r.interrupt(false, "R", NOW),
            vec![Completed, Ambiguous, Pending],
        ),
        (
            "cancelled",
            Running,
            during,
            |r| r.cancel(NOW),
            vec![Completed, Cancelled, Cancelled],
        ),
        (
            "reopened after failing: completed instances keep their result",
            Failed,
            [Completed, Failed, Cancelled],
            |r| r.reopen(),
            vec![Completed, Pending, Pending],
        ),
        (
            "reopened after completing: every item runs again",
            Completed,
            [Completed; 3],
            |r| r.reopen(),
            vec![],
        ),
    ];
    for (what, status, instances, change, expected) in cases {
        let mut record = looping(status, instances);
        change(&mut record);
        assert_eq!(instance_statuses(&record), expected, "{what}");
    }
}

#[test]
fn a_loop_stopped_between_instances_goes_on_and_one_stopped_mid_instance_resends_its_key() {
    use StepStatus::{Ambiguous, Completed, Pending, Running};
    let mut between = looping(Running, [Completed, Pending, Pending]);
    between.interrupt(false, "R", NOW);
    assert_eq!(between.status, Pending, "nothing ran: nothing is unknown");

    let mut during = looping(Running, [Completed, Running, Pending]);
    during.instances[1].key_attempt = 1;
    let events = during.interrupt(false, "R", NOW);
    assert_eq!(during.status, Ambiguous);
    assert!(during.instances[1].reuse_key);
    assert!(!during.instances[2].reuse_key);
    assert_eq!(
        events.last(),
        Some(&EventKind::InstanceStatus {
            step_id: "deploy".into(),
            index: 1,
            status: Ambiguous,
            attempts: 0,
            error: None,
        })
    );
    // Retrying is a new decision: a new key. Skipping ends what is left of the loop.
    let mut retried = during.clone();
    retried.resolve(Resolution::Retry, "ops", NOW);
    assert!(!retried.instances[1].reuse_key);
    let mut skipped = during;
    skipped.resolve(Resolution::Skip, "ops", NOW);
    assert_eq!(
        instance_statuses(&skipped),
        [Completed, StepStatus::Cancelled, StepStatus::Cancelled]
    );
}

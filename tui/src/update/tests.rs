//! Unit tests of `update`: keys on every screen, daemon answers and run events, including
//! duplicate and out-of-order events (ignored by sequence number).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use runbook_protocol::v1::{
    Approval, AuditLogEntry, Diagnostic, ParamSpec, ResolveAction, Run, RunEvent, RunStatus,
    RunbookDetail, RunbookSummary, RunbookVersion, SaveRunbookResponse, StepOutput, StepRun,
    StepSpec, StepStatus, StepStatusChanged, ValidateRunbookResponse, run_event::Kind,
};

use super::update;
use crate::action::Action;
use crate::command::Command;
use crate::state::editor::Validity;
use crate::state::{AuditFilter, Connection, DaemonView, PromptKind, RunsFilter, Screen, State};

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Action {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Applies every action; returns the commands of all of them.
fn apply(state: &mut State, actions: impl IntoIterator<Item = Action>) -> Vec<Command> {
    actions
        .into_iter()
        .flat_map(|action| update(state, action))
        .collect()
}

fn typed(text: &str) -> Vec<Action> {
    text.chars().map(ch).collect()
}

fn summary(name: &str) -> RunbookSummary {
    RunbookSummary {
        name: name.into(),
        path: format!("/rb/{name}.toml"),
        version: "abc123".into(),
        valid: true,
        ..Default::default()
    }
}

fn detail(name: &str) -> RunbookDetail {
    RunbookDetail {
        summary: Some(summary(name)),
        params: vec![ParamSpec {
            name: "env".into(),
            r#type: "string".into(),
            default_json: "\"staging\"".into(),
            allowed_json: vec!["\"staging\"".into(), "\"prod\"".into()],
            ..Default::default()
        }],
        steps: vec![StepSpec {
            id: "hello".into(),
            uses: "shell".into(),
            ..Default::default()
        }],
        source: "name = \"x\"\n".into(),
        file_source: "name = \"x\"\n".into(),
        file_hash: "hash-1".into(),
    }
}

/// A state connected to a daemon that lists `names`.
fn with_runbooks(names: &[&str]) -> State {
    let mut state = State::new("s", 1_000);
    apply(
        &mut state,
        [
            Action::Connected {
                daemon: DaemonView {
                    version: "0.1.0".into(),
                    ..DaemonView::default()
                },
                protocol_version: runbook_protocol::PROTOCOL_VERSION,
            },
            Action::Runbooks(names.iter().map(|n| summary(n)).collect()),
        ],
    );
    state
}

fn output(run_id: &str, seq: u64, line: &str) -> Action {
    Action::RunEvent(RunEvent {
        run_id: run_id.into(),
        seq,
        at: 0,
        kind: Some(Kind::StepOutput(StepOutput {
            step_id: "hello".into(),
            stream: 1,
            line: line.into(),
        })),
    })
}

fn waiting_run(id: &str) -> Run {
    Run {
        id: id.into(),
        runbook: "deploy".into(),
        status: RunStatus::Waiting as i32,
        steps: vec![StepRun {
            id: "migrate".into(),
            status: StepStatus::Waiting as i32,
            approval: Some(Approval {
                summary: "run ./migrate.sh".into(),
                requested_at: 5,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A state showing the view of run `R1` with one step `hello`.
fn watching(status: RunStatus) -> State {
    let mut state = with_runbooks(&["deploy"]);
    state
        .stack
        .push(Screen::Run(Box::new(crate::state::RunView::new("R1"))));
    update(
        &mut state,
        Action::RunSnapshot(Run {
            id: "R1".into(),
            runbook: "deploy".into(),
            status: status as i32,
            params_json: r#"{"env":"prod","n":3}"#.into(),
            steps: vec![StepRun {
                id: "hello".into(),
                status: StepStatus::Running as i32,
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    state
}

fn view(state: &State) -> &crate::state::RunView {
    match state.screen() {
        Screen::Run(view) => view,
        other => panic!("not a run view: {other:?}"),
    }
}

fn editor(state: &State) -> &crate::state::EditorState {
    match state.screen() {
        Screen::Editor(editor) => editor,
        other => panic!("not the editor: {other:?}"),
    }
}

#[test]
fn list_keys_move_filter_and_open() {
    let mut state = with_runbooks(&["b-deploy", "a-backup", "c-clean"]);
    assert_eq!(state.runbooks[0].name, "a-backup", "sorted by name");
    apply(&mut state, [ch('j'), ch('j'), ch('j')]);
    assert_eq!(state.list.selected, 2, "stays within the list");
    apply(&mut state, [ch('k'), key(KeyCode::Home)]);
    assert_eq!(state.list.selected, 0);

    apply(&mut state, [ch('/')]);
    assert!(matches!(
        state.prompt.as_ref().map(|p| &p.kind),
        Some(PromptKind::FilterRunbooks)
    ));
    apply(&mut state, typed("dep"));
    assert_eq!(state.list.filter, "dep", "the list narrows while typing");
    assert_eq!(
        state.current_runbook().map(|r| r.name.as_str()),
        Some("b-deploy")
    );
    apply(&mut state, [key(KeyCode::Enter)]);
    assert!(state.prompt.is_none());
    assert_eq!(state.list.filter, "dep", "Enter keeps the filter");

    let commands = apply(&mut state, [key(KeyCode::Enter)]);
    assert_eq!(
        commands,
        [
            Command::LoadRunbook("b-deploy".into()),
            Command::LoadVersions("b-deploy".into())
        ]
    );
    assert!(matches!(state.screen(), Screen::Detail(d) if d.name == "b-deploy"));
    update(
        &mut state,
        Action::RunbookLoaded {
            name: "b-deploy".into(),
            result: Ok(detail("b-deploy")),
        },
    );
    assert!(matches!(state.screen(), Screen::Detail(d) if d.detail.is_some()));
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(matches!(state.screen(), Screen::Runbooks));
    apply(&mut state, [key(KeyCode::Esc)]);
    assert_eq!(state.list.filter, "", "Esc on the list clears the filter");
}

#[test]
fn the_same_runbook_stays_selected_when_the_list_changes() {
    let mut state = with_runbooks(&["a", "b", "c"]);
    apply(&mut state, [ch('j')]);
    update(
        &mut state,
        Action::Runbooks(vec![summary("0"), summary("b"), summary("c")]),
    );
    assert_eq!(state.current_runbook().map(|r| r.name.as_str()), Some("b"));
}

#[test]
fn the_editor_validates_after_a_pause_and_drops_stale_verdicts() {
    let mut state = with_runbooks(&["deploy"]);
    let commands = apply(&mut state, [ch('e')]);
    assert_eq!(commands, [Command::LoadRunbook("deploy".into())]);
    assert!(state.pending.is_some(), "waits for the detail");
    apply(
        &mut state,
        [Action::RunbookLoaded {
            name: "deploy".into(),
            result: Ok(detail("deploy")),
        }],
    );
    assert!(state.pending.is_none());
    assert_eq!(editor(&state).buffer.text(), "name = \"x\"\n");
    // The text is checked at once on opening.
    let commands = update(&mut state, Action::Tick(1_000));
    assert!(matches!(
        &commands[..],
        [Command::Validate { generation: 0, .. }]
    ));

    apply(&mut state, typed("q?A"));
    assert!(!state.should_quit, "letters are text in the editor");
    assert!(state.help.is_none());
    assert!(editor(&state).dirty());
    assert_eq!(editor(&state).buffer.lines()[0], "q?Aname = \"x\"");
    assert!(
        update(&mut state, Action::Tick(1_100)).is_empty(),
        "still typing"
    );
    let commands = update(&mut state, Action::Tick(1_400));
    let generation = editor(&state).generation;
    assert_eq!(
        commands,
        [Command::Validate {
            generation,
            path: "/rb/deploy.toml".into(),
            source: "q?Aname = \"x\"\n".into(),
        }]
    );
    assert_eq!(editor(&state).validity, Validity::Checking);

    let verdict = |line| {
        Ok(ValidateRunbookResponse {
            valid: false,
            diagnostics: vec![Diagnostic {
                line,
                column: 1,
                message: "bad".into(),
                ..Default::default()
            }],
            name: String::new(),
        })
    };
    // An answer about an older text would point at lines that moved.
    update(
        &mut state,
        Action::Validated {
            generation: generation - 1,
            result: verdict(9),
        },
    );
    assert!(editor(&state).diagnostics.is_empty());
    update(
        &mut state,
        Action::Validated {
            generation,
            result: verdict(1),
        },
    );
    assert_eq!(editor(&state).validity, Validity::Invalid);
    assert_eq!(editor(&state).diagnostics_at(0).count(), 1);
}

#[test]
fn saving_sends_the_base_hash_and_a_conflict_lets_the_next_save_overwrite() {
    let mut state = with_runbooks(&["deploy"]);
    apply(
        &mut state,
        [
            ch('e'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(detail("deploy")),
            },
        ],
    );
    apply(&mut state, [key(KeyCode::End), ch('!')]);
    let commands = apply(&mut state, [ctrl('s')]);
    assert_eq!(
        commands,
        [Command::Save {
            runbook: "deploy".into(),
            source: "name = \"x\"!\n".into(),
            base_hash: "hash-1".into(),
        }]
    );
    assert!(
        apply(&mut state, [ctrl('s')]).is_empty(),
        "one save at a time"
    );
    update(
        &mut state,
        Action::SaveConflict {
            name: "deploy".into(),
            message: "changed on disk".into(),
        },
    );
    assert!(editor(&state).conflict);
    assert!(state.notice.as_ref().is_some_and(|n| n.error));
    let commands = apply(&mut state, [ctrl('s')]);
    assert!(matches!(&commands[..], [Command::Save { base_hash, .. }] if base_hash.is_empty()));
    let commands = update(
        &mut state,
        Action::Saved {
            name: "deploy".into(),
            source: "name = \"x\"!\n".into(),
            result: Ok(SaveRunbookResponse {
                valid: true,
                diagnostics: Vec::new(),
                version: Some(RunbookVersion {
                    number: 4,
                    version: "feedbeef00112233".into(),
                    ..Default::default()
                }),
                file_hash: "hash-2".into(),
            }),
        },
    );
    assert!(commands.contains(&Command::Refresh));
    let saved = editor(&state);
    assert_eq!(
        (saved.base_hash.as_str(), saved.conflict),
        ("hash-2", false)
    );
    assert!(!saved.dirty());
    assert_eq!(
        state.notice.as_ref().map(|n| n.text.as_str()),
        Some("saved: version 4 (feedbeef0011) is now current")
    );
}

#[test]
fn undo_redo_and_leaving_with_unsaved_changes() {
    let mut state = with_runbooks(&["deploy"]);
    apply(
        &mut state,
        [
            ch('e'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(detail("deploy")),
            },
        ],
    );
    apply(&mut state, typed("ab"));
    apply(&mut state, [ctrl('z')]);
    assert!(!editor(&state).dirty());
    apply(&mut state, [ctrl('y')]);
    assert!(editor(&state).dirty());
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(matches!(state.screen(), Screen::Editor(_)), "asks first");
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(
        matches!(state.screen(), Screen::Runbooks),
        "the second Esc leaves"
    );
}

#[test]
fn quitting_with_unsaved_edits_asks_first() {
    let mut state = with_runbooks(&["deploy"]);
    apply(
        &mut state,
        [
            ch('e'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(detail("deploy")),
            },
            ch('x'),
        ],
    );
    apply(&mut state, [ctrl('c')]);
    assert!(!state.should_quit);
    apply(&mut state, [ctrl('c')]);
    assert!(state.should_quit);
}

#[test]
fn the_editor_searches_and_reloads_a_file_changed_on_disk() {
    let mut state = with_runbooks(&["deploy"]);
    let mut first = detail("deploy");
    first.file_source = "a = 1\nb = 2\na = 3\n".into();
    apply(
        &mut state,
        [
            ch('e'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(first),
            },
        ],
    );
    apply(&mut state, [ctrl('f')]);
    apply(&mut state, typed("b ="));
    apply(&mut state, [key(KeyCode::Enter)]);
    assert_eq!(editor(&state).buffer.cursor().row, 1);
    apply(&mut state, [ctrl('n')]);
    assert_eq!(editor(&state).buffer.cursor().row, 1, "the only match");

    // Changed on disk while unchanged here: reloaded at once.
    let mut changed = detail("deploy");
    changed.file_source = "fresh = true\n".into();
    changed.file_hash = "hash-9".into();
    let commands = update(&mut state, Action::RunbookChanged("deploy".into()));
    assert_eq!(commands, [Command::LoadRunbook("deploy".into())]);
    update(
        &mut state,
        Action::RunbookLoaded {
            name: "deploy".into(),
            result: Ok(changed),
        },
    );
    assert_eq!(editor(&state).buffer.text(), "fresh = true\n");
    assert_eq!(editor(&state).base_hash, "hash-9");
}

#[test]
fn ctrl_d_makes_the_launch_a_dry_run() {
    let mut state = with_runbooks(&["deploy"]);
    apply(
        &mut state,
        [
            ch('r'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(detail("deploy")),
            },
        ],
    );
    apply(&mut state, [ctrl('d'), ctrl('d'), ctrl('d')]);
    let commands = apply(&mut state, [key(KeyCode::Enter)]);
    assert!(
        matches!(
            commands.as_slice(),
            [Command::StartRun { dry_run: true, .. }]
        ),
        "{commands:?}"
    );
}

#[test]
fn the_launch_form_starts_a_run_and_opens_its_view() {
    let mut state = with_runbooks(&["deploy"]);
    apply(
        &mut state,
        [
            ch('r'),
            Action::RunbookLoaded {
                name: "deploy".into(),
                result: Ok(detail("deploy")),
            },
        ],
    );
    assert!(matches!(state.screen(), Screen::Launch(_)));
    apply(&mut state, [key(KeyCode::Right)]);
    let commands = apply(&mut state, [key(KeyCode::Enter)]);
    assert_eq!(
        commands,
        [Command::StartRun {
            runbook: "deploy".into(),
            params: [("env".to_owned(), "prod".to_owned())].into(),
            dry_run: false,
            part: Default::default(),
        }]
    );
    // A refusal shows on the form.
    update(&mut state, Action::RunStarted(Err("bad env".into())));
    assert!(matches!(state.screen(), Screen::Launch(f) if f.error.as_deref() == Some("bad env")));
    apply(&mut state, [key(KeyCode::Enter)]);
    let commands = update(
        &mut state,
        Action::RunStarted(Ok(Run {
            id: "R9".into(),
            runbook: "deploy".into(),
            ..Default::default()
        })),
    );
    assert!(commands.contains(&Command::Watch("R9".into())));
    assert_eq!(state.stack.len(), 2, "the view replaced the form");
    assert_eq!(view(&state).run_id, "R9");
    let commands = apply(&mut state, [key(KeyCode::Esc)]);
    assert_eq!(commands, [Command::Unwatch("R9".into())]);
}

#[test]
fn an_invalid_runbook_cannot_be_launched() {
    let mut state = State::new("s", 0);
    let mut broken = summary("broken");
    broken.valid = false;
    broken.version.clear();
    update(&mut state, Action::Runbooks(vec![broken]));
    assert!(apply(&mut state, [ch('r')]).is_empty());
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("cannot run"))
    );
}

#[test]
fn duplicate_and_out_of_order_run_events_are_ignored() {
    let mut state = watching(RunStatus::Running);
    apply(
        &mut state,
        [
            output("R1", 1, "one"),
            output("R1", 2, "two"),
            output("R1", 2, "two again"),
            output("R1", 1, "one late"),
            output("OTHER", 3, "another run"),
            output("R1", 3, "three"),
        ],
    );
    let lines: Vec<_> = view(&state).logs["hello"]
        .lines
        .iter()
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(lines, ["one", "two", "three"]);
    // A reconnect replays from the start: nothing is doubled.
    apply(&mut state, (1..=3).map(|seq| output("R1", seq, "replayed")));
    assert_eq!(view(&state).logs["hello"].lines.len(), 3);
    update(
        &mut state,
        Action::RunEvent(RunEvent {
            run_id: "R1".into(),
            seq: 4,
            at: 50,
            kind: Some(Kind::StepStatus(StepStatusChanged {
                step_id: "hello".into(),
                status: StepStatus::Completed as i32,
                attempt: 1,
                output_json: r#"{"ok":true}"#.into(),
                ..Default::default()
            })),
        }),
    );
    let step = view(&state).step().expect("a step");
    assert_eq!(step.status(), StepStatus::Completed);
    assert_eq!(step.output_json, r#"{"ok":true}"#);
}

#[test]
fn the_log_follows_until_scrolled_and_search_jumps_to_matches() {
    let mut state = watching(RunStatus::Running);
    apply(
        &mut state,
        (1..=100).map(|seq| output("R1", seq, &format!("line {seq}"))),
    );
    assert_eq!(view(&state).scroll, None, "follows by default");
    apply(&mut state, [key(KeyCode::PageUp)]);
    let top = view(&state).scroll.expect("stopped following");
    assert!(top < 100);
    update(&mut state, Action::Scroll(1_000));
    assert_eq!(
        view(&state).scroll,
        None,
        "scrolling to the end follows again"
    );
    apply(&mut state, [ch('f')]);
    assert!(view(&state).scroll.is_some());
    apply(&mut state, [ch('G')]);
    assert_eq!(view(&state).scroll, None);

    apply(&mut state, [ch('/')]);
    apply(&mut state, typed("line 5"));
    apply(&mut state, [key(KeyCode::Enter)]);
    assert_eq!(view(&state).found, Some(58), "the newest match: line 59");
    apply(&mut state, [ch('N')]);
    assert_eq!(view(&state).found, Some(57), "line 58");
    apply(&mut state, [ch('n'), ch('n')]);
    assert_eq!(view(&state).found, Some(58));
    assert!(
        state.notice.as_ref().is_some_and(|n| n.error),
        "no newer match"
    );
}

#[test]
fn pause_toggles_and_rerun_needs_an_ended_run() {
    let mut state = watching(RunStatus::Running);
    assert_eq!(
        apply(&mut state, [ch('p')]),
        [Command::Pause {
            run_id: "R1".into(),
            pause: true
        }]
    );
    let mut paused = watching(RunStatus::Paused);
    assert_eq!(
        apply(&mut paused, [ch('p')]),
        [Command::Pause {
            run_id: "R1".into(),
            pause: false
        }]
    );
    assert!(apply(&mut state, [ch('R')]).is_empty(), "still running");

    let mut state = watching(RunStatus::Failed);
    assert!(apply(&mut state, [ch('p')]).is_empty(), "nothing to pause");
    let commands = apply(&mut state, [ch('R')]);
    assert_eq!(
        commands,
        [Command::StartRun {
            runbook: "deploy".into(),
            params: [
                ("env".to_owned(), "prod".to_owned()),
                ("n".to_owned(), "3".to_owned())
            ]
            .into(),
            dry_run: false,
            part: Default::default(),
        }]
    );
    let commands = update(
        &mut state,
        Action::RunStarted(Ok(Run {
            id: "R2".into(),
            ..Default::default()
        })),
    );
    assert!(commands.contains(&Command::Unwatch("R1".into())));
    assert!(commands.contains(&Command::Watch("R2".into())));
    assert_eq!(view(&state).run_id, "R2", "the new run replaced the old");
}

#[test]
fn cancel_asks_for_confirmation() {
    let mut state = watching(RunStatus::Running);
    assert!(apply(&mut state, [ch('c')]).is_empty());
    assert!(apply(&mut state, [ch('n')]).is_empty());
    assert!(state.prompt.is_none());
    apply(&mut state, [ch('c')]);
    assert_eq!(apply(&mut state, [ch('y')]), [Command::Cancel("R1".into())]);
}

#[test]
fn retry_asks_for_confirmation_and_only_for_a_run_that_failed() {
    let mut state = watching(RunStatus::Running);
    assert!(apply(&mut state, [ch('T')]).is_empty());
    assert!(state.prompt.is_none(), "a live run is not retried");
    let mut state = watching(RunStatus::Completed);
    assert!(apply(&mut state, [ch('T')]).is_empty());
    assert!(
        state.prompt.is_none(),
        "a completed run has nothing to retry"
    );
    let mut state = watching(RunStatus::Failed);
    assert!(apply(&mut state, [ch('T')]).is_empty());
    assert!(apply(&mut state, [ch('n')]).is_empty());
    assert!(state.prompt.is_none());
    apply(&mut state, [ch('T')]);
    assert_eq!(apply(&mut state, [ch('y')]), [Command::Retry("R1".into())]);
}

#[test]
fn b_on_a_runbook_asks_which_version_to_restore_the_previous_one_typed_in() {
    let mut state = with_runbooks(&["deploy"]);
    apply(&mut state, [key(KeyCode::Enter)]);
    assert!(matches!(state.screen(), Screen::Detail(d) if d.name == "deploy"));
    let version = |number: u32| RunbookVersion {
        runbook: "deploy".into(),
        number,
        version: format!("hash{number}"),
        ..Default::default()
    };
    update(
        &mut state,
        Action::Versions {
            name: "deploy".into(),
            result: Ok(vec![version(1)]),
        },
    );
    assert!(apply(&mut state, [ch('b')]).is_empty());
    assert!(
        state.prompt.is_none(),
        "one version: nothing to roll back to"
    );
    update(
        &mut state,
        Action::Versions {
            name: "deploy".into(),
            result: Ok(vec![version(1), version(2), version(3)]),
        },
    );
    apply(&mut state, [ch('b')]);
    assert_eq!(
        state.prompt.as_ref().map(|p| p.input.text().to_owned()),
        Some("2".to_owned()),
        "the version before the current one is typed in"
    );
    apply(&mut state, [key(KeyCode::Backspace), ch('1')]);
    assert_eq!(
        apply(&mut state, [key(KeyCode::Enter)]),
        [Command::Rollback {
            runbook: "deploy".into(),
            version: "1".into(),
        }]
    );
    update(
        &mut state,
        Action::RolledBack {
            runbook: "deploy".into(),
            result: Ok(version(4)),
        },
    );
    assert!(
        state
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("now #4")),
        "{:?}",
        state.notice
    );
}

#[test]
fn an_ambiguous_step_is_resolved_with_r_s_or_f() {
    let mut state = watching(RunStatus::Running);
    assert!(apply(&mut state, [ch('x')]).is_empty());
    assert!(state.prompt.is_none(), "a running step is not resolved");
    update(
        &mut state,
        Action::RunSnapshot(Run {
            id: "R1".into(),
            runbook: "deploy".into(),
            status: RunStatus::Waiting as i32,
            steps: vec![StepRun {
                id: "hello".into(),
                status: StepStatus::Ambiguous as i32,
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    for (key, action) in [
        ('r', ResolveAction::Retry),
        ('s', ResolveAction::Skip),
        ('f', ResolveAction::Fail),
    ] {
        assert!(apply(&mut state, [ch('x')]).is_empty());
        assert!(state.prompt.is_some());
        assert!(apply(&mut state, [ch('q')]).is_empty(), "other keys wait");
        assert_eq!(
            apply(&mut state, [ch(key)]),
            [Command::Resolve {
                run_id: "R1".into(),
                step_id: "hello".into(),
                action,
            }]
        );
        assert!(state.prompt.is_none());
    }
    apply(&mut state, [ch('x')]);
    assert!(apply(&mut state, [key(KeyCode::Esc)]).is_empty());
    assert!(state.prompt.is_none(), "Esc decides later");
}

#[test]
fn approvals_open_from_anywhere_and_deny_needs_a_reason() {
    let mut state = watching(RunStatus::Running);
    update(
        &mut state,
        Action::Waiting(vec![waiting_run("W1"), waiting_run("W2")]),
    );
    assert_eq!(state.approval_count(), 2);
    apply(&mut state, [ch('A')]);
    assert!(matches!(state.screen(), Screen::Approvals));
    apply(&mut state, [ch('j')]);
    assert_eq!(
        apply(&mut state, [ch('a')]),
        [Command::Approve {
            run_id: "W2".into(),
            step_id: "migrate".into()
        }]
    );
    apply(&mut state, [ch('d'), key(KeyCode::Enter)]);
    assert!(state.prompt.is_some(), "an empty reason is refused");
    apply(&mut state, typed("not now"));
    assert_eq!(
        apply(&mut state, [key(KeyCode::Enter)]),
        [Command::Deny {
            run_id: "W2".into(),
            step_id: "migrate".into(),
            reason: "not now".into(),
        }]
    );
    let mut approved = waiting_run("W2");
    approved.status = RunStatus::Running as i32;
    approved.steps[0].status = StepStatus::Running as i32;
    let commands = update(
        &mut state,
        Action::Decided {
            done: "approved step migrate of run W2".into(),
            result: Ok(approved),
        },
    );
    assert_eq!(commands, [Command::Refresh]);
    assert_eq!(
        state.approval_count(),
        1,
        "the queue shows the decision at once"
    );
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(
        matches!(state.screen(), Screen::Run(_)),
        "back where A was pressed"
    );
}

#[test]
fn confirming_an_instruction_asks_for_its_inputs_then_sends_them_and_leaves_the_form() {
    let mut state = with_runbooks(&["deploy"]);
    let mut run = waiting_run("W1");
    if let Some(approval) = &mut run.steps[0].approval {
        approval.instruction = true;
        approval.inputs = vec![ParamSpec {
            name: "ticket".into(),
            r#type: "string".into(),
            required: true,
            ..Default::default()
        }];
    }
    update(&mut state, Action::Waiting(vec![run.clone()]));
    apply(&mut state, [ch('A')]);
    assert!(
        apply(&mut state, [ch('a')]).is_empty(),
        "a form, not a call"
    );
    assert!(matches!(state.screen(), Screen::Launch(_)));
    assert!(
        apply(&mut state, [key(KeyCode::Enter)]).is_empty(),
        "a required value is missing"
    );
    apply(&mut state, typed("OPS-7"));
    assert_eq!(
        apply(&mut state, [key(KeyCode::Enter)]),
        [Command::Confirm {
            run_id: "W1".into(),
            step_id: "migrate".into(),
            inputs: [("ticket".to_owned(), "OPS-7".to_owned())].into(),
        }]
    );
    update(
        &mut state,
        Action::Decided {
            done: "confirmed step migrate of run W1".into(),
            result: Err("input `ticket`: no such ticket".into()),
        },
    );
    assert!(
        matches!(state.screen(), Screen::Launch(form) if form.error.is_some()),
        "a refusal stays on the form"
    );
    let mut other = waiting_run("W9");
    other.status = RunStatus::Running as i32;
    update(
        &mut state,
        Action::Decided {
            done: "approved step migrate of run W9".into(),
            result: Ok(other),
        },
    );
    assert!(
        matches!(state.screen(), Screen::Launch(_)),
        "another run's answer leaves the form open"
    );
    run.steps[0].status = StepStatus::Completed as i32;
    run.status = RunStatus::Completed as i32;
    update(
        &mut state,
        Action::Decided {
            done: "confirmed step migrate of run W1".into(),
            result: Ok(run),
        },
    );
    assert!(
        matches!(state.screen(), Screen::Approvals),
        "the form closes"
    );
}

#[test]
fn approving_from_the_run_view_needs_a_waiting_step() {
    let mut state = watching(RunStatus::Running);
    assert!(apply(&mut state, [ch('a')]).is_empty());
    assert!(state.notice.as_ref().is_some_and(|n| n.error));
    update(
        &mut state,
        Action::RunSnapshot(Run {
            last_seq: 1,
            ..waiting_run("R1")
        }),
    );
    assert_eq!(
        apply(&mut state, [ch('a')]),
        [Command::Approve {
            run_id: "R1".into(),
            step_id: "migrate".into()
        }]
    );
}

#[test]
fn runs_filters_ask_the_daemon_and_stale_answers_are_dropped() {
    let mut state = with_runbooks(&["a", "b"]);
    apply(&mut state, [key(KeyCode::Tab)]);
    assert!(matches!(state.screen(), Screen::Runs));
    let commands = apply(&mut state, [ch('s')]);
    let running = RunsFilter {
        status: Some(RunStatus::Running),
        runbook: None,
    };
    assert_eq!(commands, [Command::SetRunsFilter(running.clone())]);
    let commands = apply(&mut state, [ch('b')]);
    let both = RunsFilter {
        runbook: Some("a".into()),
        ..running.clone()
    };
    assert_eq!(commands, [Command::SetRunsFilter(both.clone())]);
    update(
        &mut state,
        Action::History {
            filter: running,
            result: Ok(vec![Run::default()]),
        },
    );
    assert_eq!(state.history.runs, None, "an answer for an older filter");
    update(
        &mut state,
        Action::History {
            filter: both,
            result: Ok(vec![Run {
                id: "R5".into(),
                ..Default::default()
            }]),
        },
    );
    let commands = apply(&mut state, [key(KeyCode::Enter)]);
    assert_eq!(commands, [Command::Watch("R5".into())]);
    apply(&mut state, [key(KeyCode::Esc), ch('x')]);
    assert_eq!(state.history.filter, RunsFilter::default());
}

fn audit_entry(action: &str, at: i64) -> AuditLogEntry {
    AuditLogEntry {
        at,
        action: action.into(),
        result: "SUCCESS".into(),
        ..Default::default()
    }
}

#[test]
fn the_audit_log_opens_from_any_screen_asks_the_daemon_and_shows_the_newest_first() {
    let mut state = with_runbooks(&["a"]);
    apply(&mut state, [key(KeyCode::Tab)]);
    let commands = apply(&mut state, [ch('U')]);
    assert!(matches!(state.screen(), Screen::Audit));
    assert_eq!(commands, [Command::LoadAudit(AuditFilter::default())]);
    update(
        &mut state,
        Action::Audit {
            filter: AuditFilter::default(),
            result: Ok(vec![audit_entry("start", 1), audit_entry("approve", 2)]),
        },
    );
    let shown: Vec<&str> = state
        .audit
        .entries
        .as_ref()
        .expect("entries arrived")
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(shown, ["approve", "start"]);
    assert_eq!(
        apply(&mut state, [ch('r')]),
        [Command::LoadAudit(AuditFilter::default())]
    );
    // Esc goes back to the screen it was opened from.
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(matches!(state.screen(), Screen::Runs));
}

#[test]
fn the_audit_logs_action_filter_asks_again_and_stale_answers_are_dropped() {
    let mut state = with_runbooks(&["a"]);
    apply(&mut state, [key(KeyCode::F(4))]);
    let commands = apply(&mut state, [ch('s')]);
    let starts = AuditFilter {
        action: Some("start".into()),
    };
    assert_eq!(commands, [Command::LoadAudit(starts.clone())]);
    let commands = apply(&mut state, [ch('s')]);
    let approvals = AuditFilter {
        action: Some("approve".into()),
    };
    assert_eq!(commands, [Command::LoadAudit(approvals.clone())]);
    update(
        &mut state,
        Action::Audit {
            filter: starts,
            result: Ok(vec![audit_entry("start", 1)]),
        },
    );
    assert_eq!(state.audit.entries, None, "an answer for an older filter");
    update(
        &mut state,
        Action::Audit {
            filter: approvals,
            result: Err("runbookd did not answer within 5s".into()),
        },
    );
    assert_eq!(
        state.audit.error.as_deref(),
        Some("runbookd did not answer within 5s")
    );
    assert_eq!(
        apply(&mut state, [ch('x')]),
        [Command::LoadAudit(AuditFilter::default())]
    );
    assert_eq!(state.audit.error, None);
}

#[test]
fn tabs_cycle_only_at_the_top_level() {
    let mut state = with_runbooks(&["a"]);
    apply(&mut state, [key(KeyCode::Tab), key(KeyCode::Tab)]);
    assert!(matches!(state.screen(), Screen::Approvals));
    apply(&mut state, [key(KeyCode::Tab)]);
    assert!(matches!(state.screen(), Screen::Runbooks));
    apply(&mut state, [key(KeyCode::BackTab)]);
    assert!(matches!(state.screen(), Screen::Approvals));
    apply(
        &mut state,
        [key(KeyCode::Tab), key(KeyCode::Enter), key(KeyCode::Tab)],
    );
    assert!(
        matches!(state.screen(), Screen::Detail(_)),
        "Tab does not leave a runbook"
    );
}

#[test]
fn help_opens_and_closes_and_q_quits() {
    let mut state = with_runbooks(&["a"]);
    apply(&mut state, [ch('?')]);
    assert_eq!(state.help, Some(0));
    apply(&mut state, [ch('j'), ch('q')]);
    assert_eq!(state.help, None, "q closes help first");
    assert!(!state.should_quit);
    apply(&mut state, [ch('q')]);
    assert!(state.should_quit);
}

#[test]
fn connection_changes_and_a_protocol_mismatch_are_kept() {
    let mut state = State::new("s", 0);
    update(&mut state, Action::Disconnected("gone".into()));
    assert_eq!(state.connection, Connection::Disconnected("gone".into()));
    update(&mut state, Action::RetryAt(2_000));
    assert_eq!(state.retry_at, 2_000);
    update(
        &mut state,
        Action::Connected {
            daemon: DaemonView {
                version: "9.0.0".into(),
                active_runs: 1,
                ..DaemonView::default()
            },
            protocol_version: runbook_protocol::PROTOCOL_VERSION + 1,
        },
    );
    assert!(matches!(state.connection, Connection::Connected(_)));
    let message = state.protocol_mismatch.clone().expect("a mismatch");
    assert!(message.contains("upgrade the older one"), "{message}");
}

#[test]
fn external_editing_reloads_the_runbook_afterwards() {
    let mut state = with_runbooks(&["deploy"]);
    let commands = apply(&mut state, [ch('E')]);
    assert_eq!(
        commands,
        [Command::ExternalEdit {
            name: "deploy".into(),
            path: "/rb/deploy.toml".into()
        }]
    );
    apply(&mut state, [key(KeyCode::Enter)]);
    let commands = update(
        &mut state,
        Action::ExternalEditDone {
            name: "deploy".into(),
            result: Ok(()),
        },
    );
    assert_eq!(
        commands,
        [
            Command::Refresh,
            Command::LoadRunbook("deploy".into()),
            Command::LoadVersions("deploy".into())
        ]
    );
}

#[test]
fn notices_expire_with_time() {
    let mut state = with_runbooks(&["a"]);
    state.notify("hello");
    update(
        &mut state,
        Action::Tick(1_000 + crate::state::NOTICE_MS - 1),
    );
    assert!(state.notice.is_some());
    update(&mut state, Action::Tick(1_000 + crate::state::NOTICE_MS));
    assert!(state.notice.is_none());
}

#[test]
fn the_mouse_wheel_moves_lists() {
    let mut state = with_runbooks(&["a", "b", "c", "d", "e"]);
    update(&mut state, Action::Scroll(3));
    assert_eq!(state.list.selected, 3);
    update(&mut state, Action::Scroll(-3));
    assert_eq!(state.list.selected, 0);
}

#[test]
fn the_plugins_screen_opens_from_any_screen_asks_the_daemon_and_reloads() {
    let mut state = with_runbooks(&["a"]);
    let commands = apply(&mut state, [ch('P')]);
    assert!(matches!(state.screen(), Screen::Plugins));
    assert_eq!(commands, [Command::LoadPlugins]);
    let plugin = |kind: &str| runbook_protocol::v1::Plugin {
        kind: kind.into(),
        ..Default::default()
    };
    update(
        &mut state,
        Action::Plugins(Ok(vec![plugin("http"), plugin("deploy")])),
    );
    apply(&mut state, [key(KeyCode::Down)]);
    assert_eq!(state.plugins.selected, 1);
    assert_eq!(apply(&mut state, [ch('r')]), [Command::LoadPlugins]);
    update(
        &mut state,
        Action::Plugins(Err("runbookd did not answer".into())),
    );
    assert_eq!(
        state.plugins.error.as_deref(),
        Some("runbookd did not answer")
    );
    // The listing is kept: a failed reload shows the error, not an empty table.
    assert_eq!(state.plugins.plugins.as_ref().map(Vec::len), Some(2));
}

fn agent(name: &str, live: bool) -> runbook_protocol::v1::Agent {
    runbook_protocol::v1::Agent {
        name: name.into(),
        labels: vec!["db".into()],
        live,
        ..Default::default()
    }
}

fn agents(names: &[&str]) -> runbook_protocol::v1::ListAgentsResponse {
    runbook_protocol::v1::ListAgentsResponse {
        agents: names.iter().map(|name| agent(name, true)).collect(),
        cluster: true,
    }
}

#[test]
fn the_agents_screen_opens_from_any_screen_asks_the_daemon_and_reloads() {
    let mut state = with_runbooks(&["a"]);
    let commands = apply(&mut state, [ch('W')]);
    assert!(matches!(state.screen(), Screen::Agents));
    assert_eq!(commands, [Command::LoadAgents]);
    // Opening it again from itself stacks nothing.
    assert_eq!(
        apply(&mut state, [key(KeyCode::F(6))]),
        [Command::LoadAgents]
    );
    assert_eq!(state.stack.len(), 2);
    update(&mut state, Action::Agents(Ok(agents(&["db-1", "web-2"]))));
    apply(&mut state, [key(KeyCode::Down)]);
    assert_eq!(state.agents.selected, 1);
    assert_eq!(apply(&mut state, [ch('r')]), [Command::LoadAgents]);
    update(
        &mut state,
        Action::Agents(Err("runbookd did not answer".into())),
    );
    assert_eq!(
        state.agents.error.as_deref(),
        Some("runbookd did not answer")
    );
    // The listing is kept: the next answer replaces the error, not an empty table.
    assert_eq!(state.agents.agents().len(), 2);
    // A shorter listing keeps the selection on a row.
    update(&mut state, Action::Agents(Ok(agents(&["db-1"]))));
    assert_eq!(state.agents.selected, 0);
    assert!(state.agents.error.is_none());
    // Esc goes back to where it was opened from.
    apply(&mut state, [key(KeyCode::Esc)]);
    assert!(matches!(state.screen(), Screen::Runbooks));
}

#[test]
fn the_agents_screen_opens_from_the_editor_with_f6_only() {
    let mut state = with_runbooks(&["deploy"]);
    apply(&mut state, [ch('e')]);
    update(
        &mut state,
        Action::RunbookLoaded {
            name: "deploy".into(),
            result: Ok(detail("deploy")),
        },
    );
    assert!(matches!(state.screen(), Screen::Editor(_)));
    let typed_w = apply(&mut state, [ch('W')]);
    assert!(!typed_w.contains(&Command::LoadAgents), "W is text there");
    assert!(matches!(state.screen(), Screen::Editor(_)));
    assert!(apply(&mut state, [key(KeyCode::F(6))]).contains(&Command::LoadAgents));
    assert!(matches!(state.screen(), Screen::Agents));
}

#[test]
fn the_agents_screen_lists_again_every_poll_period_while_it_is_on_top() {
    let period = i64::try_from(crate::client::POLL_EVERY.as_millis()).expect("a short period");
    let mut state = with_runbooks(&["a"]);
    update(&mut state, Action::Tick(10_000));
    assert_eq!(apply(&mut state, [ch('W')]), [Command::LoadAgents]);
    // Not before the answer: a slow daemon is not asked twice.
    assert!(update(&mut state, Action::Tick(10_000 + 3 * period)).is_empty());
    update(&mut state, Action::Agents(Ok(agents(&["db-1"]))));
    assert_eq!(
        update(&mut state, Action::Tick(10_000 + 3 * period)),
        [Command::LoadAgents]
    );
    update(&mut state, Action::Agents(Ok(agents(&["db-1"]))));
    // Not before a period has passed since it was asked.
    let asked = 10_000 + 3 * period;
    assert!(update(&mut state, Action::Tick(asked + period - 1)).is_empty());
    assert_eq!(
        update(&mut state, Action::Tick(asked + period)),
        [Command::LoadAgents]
    );
    update(&mut state, Action::Agents(Ok(agents(&["db-1"]))));
    // Not while the daemon is out of reach: the poller backs off, the screen waits for it.
    update(&mut state, Action::Disconnected("gone".into()));
    assert!(update(&mut state, Action::Tick(asked + 5 * period)).is_empty());
    // Not under another screen.
    let mut state = with_runbooks(&["a"]);
    apply(&mut state, [ch('W')]);
    update(&mut state, Action::Agents(Ok(agents(&["db-1"]))));
    apply(&mut state, [ch('P')]);
    assert!(matches!(state.screen(), Screen::Plugins));
    assert!(update(&mut state, Action::Tick(1_000 + 5 * period)).is_empty());
}

//! Snapshot tests of every screen (ratatui's TestBackend + insta) in its normal, empty and
//! error states, at a roomy size and at 80x24.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use runbook_protocol::v1::{
    Approval, AuditLogEntry, Diagnostic, OutputStream, ParamSpec, PermitWait, Run, RunEvent,
    RunStatus, RunbookDetail, RunbookSummary, RunbookVersion, StepOutput, StepRun, StepSpec,
    StepStatus, run_event::Kind,
};

use super::render;
use crate::editor::Pos;
use crate::state::launch::LaunchForm;
use crate::state::run_view::WatchStatus;
use crate::state::{
    AuditFilter, AuditLog, Connection, DaemonView, DetailState, EditorState, LineInput, Prompt,
    PromptKind, RunView, RunsFilter, Screen, State,
};

/// 2024-03-05T06:07:08Z.
const NOW: i64 = 1_709_618_828_000;

fn draw(state: &State) -> String {
    draw_at(state, 100, 30)
}

fn draw_at(state: &State, width: u16, height: u16) -> String {
    let mut state = state.clone();
    state.size = (width, height);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| render(frame, &state)).expect("draws");
    terminal.backend().to_string()
}

/// A diagnostic as the daemon renders it: message, location, snippet.
fn diagnostic(rendered: &str) -> Diagnostic {
    Diagnostic {
        message: rendered.lines().next().unwrap_or_default().into(),
        rendered: rendered.into(),
        ..Default::default()
    }
}

fn connected(active_runs: u32) -> Connection {
    Connection::Connected(DaemonView {
        version: "0.1.0".into(),
        active_runs,
        steps_in_flight: active_runs,
        store_bytes: 3 << 20,
        not_ready: String::new(),
    })
}

fn run(id: &str, runbook: &str, status: RunStatus, started_ago_s: i64) -> Run {
    let started_at = NOW - started_ago_s * 1000;
    Run {
        id: id.into(),
        runbook: runbook.into(),
        version: "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".into(),
        status: status as i32,
        created_at: started_at,
        started_at,
        finished_at: if status.is_terminal() {
            started_at + 4_200
        } else {
            0
        },
        error: if status == RunStatus::Failed {
            "step `dump` failed: exit status 2".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn runbooks() -> Vec<RunbookSummary> {
    vec![
        RunbookSummary {
            name: "backup-db".into(),
            description: "Dump the orders database to S3".into(),
            path: "/home/ops/runbooks/backup-db.toml".into(),
            version: "9c0d4e5f6071".into(),
            step_count: 2,
            valid: true,
            ..Default::default()
        },
        // Never valid: it cannot run.
        RunbookSummary {
            name: "broken".into(),
            path: "/home/ops/runbooks/broken.toml".into(),
            step_count: 0,
            valid: false,
            diagnostics: vec![
                diagnostic(
                    "error: unknown field `neds`, expected one of `id`, `uses`, `with`, \
                     `needs`, `if`, `timeout`, `approval`, `description`\n \
                     --> /home/ops/runbooks/broken.toml:5:1\n  |\n5 | neds = [\"fetch\"]\n  \
                     | ^^^^\n",
                ),
                diagnostic(
                    "error: step `deploy` needs `buidl`, which is not a step of this \
                     runbook; did you mean `build`?\n \
                     --> /home/ops/runbooks/broken.toml:9:10\n  |\n9 | needs = \
                     [\"buidl\"]\n  |          ^^^^^^^\n",
                ),
            ],
            ..Default::default()
        },
        // Saved invalid after a good version, which still runs.
        RunbookSummary {
            name: "deploy-api".into(),
            description: "Roll out the API and verify it".into(),
            path: "/home/ops/runbooks/deploy-api.toml".into(),
            version: "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8".into(),
            step_count: 5,
            valid: false,
            diagnostics: vec![diagnostic(
                "error: invalid duration `five minutes`: expected number at 0 (write it \
                 like \"30s\", \"5m\" or \"1h 30m\")\n  \
                 --> /home/ops/runbooks/deploy-api.toml:12:11\n   |\n12 | timeout = \
                 \"five minutes\"\n   |           ^^^^^^^^^^^^^^\n",
            )],
            ..Default::default()
        },
    ]
}

fn recent_runs() -> Vec<Run> {
    vec![
        run(
            "01JQ5RUNNING00000000000000",
            "deploy-api",
            RunStatus::Running,
            5,
        ),
        run(
            "01JQ5WAITING00000000000000",
            "deploy-api",
            RunStatus::Waiting,
            90,
        ),
        run(
            "01JQ5FAILED000000000000000",
            "backup-db",
            RunStatus::Failed,
            4_000,
        ),
        run(
            "01JQ5DONE00000000000000000",
            "backup-db",
            RunStatus::Completed,
            90_000,
        ),
        run(
            "01JQ5CANCELLED000000000000",
            "deploy-api",
            RunStatus::Cancelled,
            200_000,
        ),
    ]
}

/// A run of deploy-api whose `migrate` step waits for approval of a shell command.
fn waiting_run() -> Run {
    let mut waiting = run(
        "01JQ5WAITING00000000000000",
        "deploy-api",
        RunStatus::Waiting,
        90,
    );
    waiting.params_json = r#"{"env":"staging"}"#.into();
    waiting.steps = vec![
        StepRun {
            id: "health".into(),
            uses: "http".into(),
            status: StepStatus::Completed as i32,
            attempts: 1,
            started_at: NOW - 89_000,
            finished_at: NOW - 88_880,
            output_json: r#"{"status":200,"version":"1.4.2"}"#.into(),
            ..Default::default()
        },
        StepRun {
            id: "migrate".into(),
            uses: "shell".into(),
            status: StepStatus::Waiting as i32,
            approval: Some(Approval {
                summary: "run ./migrate.sh --env staging".into(),
                plan_json: r#"{"summary":"run ./migrate.sh --env staging","effects":[
                    {"process":{"argv":["./migrate.sh","--env","staging","--note","nightly run"],
                      "env":["DATABASE_URL","API_TOKEN"],"cwd":"/srv/api","stdin_bytes":null}},
                    {"sql":{"connection":"orders","statements":["update orders set state = 'migrated' where id = $1"],"writes":true}}
                ]}"#
                .into(),
                plan_hash: "ab12".into(),
                requested_at: NOW - 88_000,
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    waiting
}

fn populated() -> State {
    let mut state = State::new("/run/user/1000/runbook/runbookd.sock", NOW);
    state.connection = connected(2);
    state.runbooks = runbooks();
    state.runs = recent_runs();
    state
}

fn disconnected() -> State {
    let mut state = State::new("/tmp/runbookd.sock", NOW);
    state.connection =
        Connection::Disconnected("transport error: No such file or directory (os error 2)".into());
    state.retry_at = NOW + 2_000;
    state
}

// ---- runbook list -----------------------------------------------------------------------

#[test]
fn empty() {
    let mut state = State::new("/tmp/runbookd.sock", NOW);
    state.connection = connected(0);
    insta::assert_snapshot!(draw(&state));
}

#[test]
fn runbooks_and_runs() {
    insta::assert_snapshot!(draw(&populated()));
}

#[test]
fn runbooks_80x24() {
    insta::assert_snapshot!(draw_at(&populated(), 80, 24));
}

#[test]
fn runbooks_filtered_to_nothing() {
    let mut state = populated();
    state.list.filter = "zzz".into();
    state.prompt = Some(Prompt {
        kind: PromptKind::FilterRunbooks,
        input: LineInput::new("zzz"),
    });
    insta::assert_snapshot!(draw(&state));
}

#[test]
fn disconnected_runbooks() {
    insta::assert_snapshot!(draw(&disconnected()));
}

#[test]
fn invalid_runbook_that_cannot_run() {
    let mut state = populated();
    state.list.selected = 1;
    insta::assert_snapshot!(draw(&state));
}

#[test]
fn invalid_runbook_that_runs_its_last_good_version() {
    let mut state = populated();
    state.list.selected = 2;
    insta::assert_snapshot!(draw(&state));
}

#[test]
fn invalid_runbook_that_cannot_run_80x24() {
    let mut state = populated();
    state.list.selected = 1;
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn invalid_runbook_that_runs_its_last_good_version_80x24() {
    let mut state = populated();
    state.list.selected = 2;
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn protocol_mismatch_and_approvals_badge() {
    let mut state = populated();
    state.waiting = vec![waiting_run()];
    state.protocol_mismatch =
        Some("runbookd speaks protocol 2, this client 1: upgrade the older one".into());
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn a_daemon_that_is_not_ready_says_why_first_in_the_status_bar() {
    let mut state = populated();
    state.connection = Connection::Connected(DaemonView {
        version: "0.1.0".into(),
        active_runs: 1,
        not_ready: "the store refuses writes: No space left on device".into(),
        ..DaemonView::default()
    });
    let screen = draw(&state);
    let top = screen.lines().next().expect("a status line");
    assert!(
        top.contains("⚠ runbookd 0.1.0 is not ready: the store refuses writes: No space left"),
        "{top}"
    );
    assert!(!top.contains("steps running"), "{top}");
}

// ---- one runbook ------------------------------------------------------------------------

fn deploy_detail() -> RunbookDetail {
    let step = |id: &str, uses: &str, needs: &[&str], condition: &str, approval: bool| StepSpec {
        id: id.into(),
        uses: uses.into(),
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        condition: condition.into(),
        approval,
        description: String::new(),
    };
    let mut summary = runbooks()[0].clone();
    summary.name = "deploy-api".into();
    summary.description = "Roll out the API and verify it".into();
    summary.path = "/home/ops/runbooks/deploy-api.toml".into();
    summary.version = "3f2a1b9c0d4e5f60".into();
    RunbookDetail {
        summary: Some(summary),
        params: vec![
            ParamSpec {
                name: "env".into(),
                r#type: "string".into(),
                required: false,
                default_json: "\"staging\"".into(),
                allowed_json: vec!["\"staging\"".into(), "\"prod\"".into()],
                description: "where to deploy".into(),
            },
            ParamSpec {
                name: "replicas".into(),
                r#type: "integer".into(),
                required: true,
                ..Default::default()
            },
        ],
        steps: vec![
            step("health", "http", &[], "", false),
            step("migrate", "shell", &["health"], "", true),
            step(
                "orders",
                "database",
                &["migrate"],
                "params.env == 'staging'",
                false,
            ),
            step("smoke", "http", &["migrate"], "", false),
            step("announce", "http", &["orders", "smoke"], "", false),
        ],
        source: String::new(),
        file_source: DEPLOY_TOML.into(),
        file_hash: "feed".into(),
    }
}

const DEPLOY_TOML: &str = r#"name = "deploy-api"
description = "Roll out the API and verify it"

[params]
env = { type = "string", default = "staging", allowed = ["staging", "prod"] }

# The API must answer before anything changes.
[[steps]]
id = "health"
uses = "http"
with = { method = "GET", url = "{{ targets.api.url }}/health", expect = { status = 200 } }

[[steps]]
id = "migrate"
uses = "shell"
needs = ["health"]
timeout = "five minutes"
with = { command = ["./migrate.sh", "--env", "{{ params.env }}"] }
"#;

fn versions() -> Vec<RunbookVersion> {
    (1..=3)
        .map(|n| RunbookVersion {
            runbook: "deploy-api".into(),
            number: n,
            version: format!("{n}f2a1b9c0d4e5f6071"),
            created_at: NOW - i64::from(4 - n) * 86_400_000,
            cause: if n == 3 {
                "saved by ops".into()
            } else {
                "file".into()
            },
            current: n == 3,
            ..Default::default()
        })
        .collect()
}

fn detail_state(detail: Option<RunbookDetail>, error: Option<&str>) -> State {
    let mut state = populated();
    let mut screen = DetailState::loading("deploy-api");
    screen.detail = detail;
    screen.versions = Some(versions());
    screen.error = error.map(str::to_owned);
    screen.selected = 1;
    state.stack.push(Screen::Detail(Box::new(screen)));
    state
}

#[test]
fn runbook_detail() {
    let mut detail = deploy_detail();
    if let Some(summary) = &mut detail.summary {
        summary.valid = true;
    }
    insta::assert_snapshot!(draw(&detail_state(Some(detail), None)));
}

#[test]
fn runbook_detail_80x24() {
    let mut detail = deploy_detail();
    if let Some(summary) = &mut detail.summary {
        summary.valid = true;
    }
    insta::assert_snapshot!(draw_at(&detail_state(Some(detail), None), 80, 24));
}

#[test]
fn runbook_detail_invalid() {
    let mut detail = deploy_detail();
    detail.summary = Some(runbooks()[2].clone());
    insta::assert_snapshot!(draw(&detail_state(Some(detail), None)));
}

#[test]
fn runbook_detail_loading() {
    insta::assert_snapshot!(draw_at(&detail_state(None, None), 80, 24));
}

#[test]
fn runbook_detail_error() {
    let state = detail_state(None, Some("no runbook named `deploy-api`"));
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- editor -----------------------------------------------------------------------------

fn editor_state(text: &str) -> State {
    let mut detail = deploy_detail();
    detail.file_source = text.into();
    let mut editor = EditorState::open(&detail, NOW);
    editor.validate_due = None;
    editor.validity = crate::state::editor::Validity::Valid;
    editor.diagnostics.clear();
    let mut state = populated();
    state.stack.push(Screen::Editor(Box::new(editor)));
    state
}

fn with_editor(state: &mut State, f: impl FnOnce(&mut EditorState)) {
    if let Screen::Editor(editor) = state.screen_mut() {
        f(editor);
    }
}

fn invalid_editor() -> State {
    let mut state = editor_state(DEPLOY_TOML);
    with_editor(&mut state, |editor| {
        editor.validity = crate::state::editor::Validity::Invalid;
        editor.diagnostics = vec![Diagnostic {
            file: "/home/ops/runbooks/deploy-api.toml".into(),
            line: 17,
            column: 11,
            message: "invalid duration `five minutes`: expected number at 0".into(),
            rendered: String::new(),
        }];
        editor.buffer.set_cursor(Pos::new(16, 11));
        editor.buffer.insert_char(' ');
        editor.search = Some("steps".into());
    });
    state
}

#[test]
fn editor() {
    insta::assert_snapshot!(draw(&invalid_editor()));
}

#[test]
fn editor_80x24() {
    insta::assert_snapshot!(draw_at(&invalid_editor(), 80, 24));
}

#[test]
fn editor_empty_file() {
    insta::assert_snapshot!(draw_at(&editor_state(""), 80, 24));
}

#[test]
fn editor_save_conflict() {
    let mut state = editor_state(DEPLOY_TOML);
    with_editor(&mut state, |editor| {
        editor.conflict = true;
        editor.buffer.insert_char('#');
    });
    state.notify_error(
        "not saved (Ctrl-S overwrites, Ctrl-R reloads): /home/ops/runbooks/deploy-api.toml \
         changed on disk since it was opened; reload it, or save again to overwrite",
    );
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn editor_scrolled_to_a_long_line() {
    let mut text = String::new();
    for i in 1..=60 {
        text.push_str(&format!("key{i} = \"{}\"\n", "x".repeat(2 * i)));
    }
    let mut state = editor_state(&text);
    with_editor(&mut state, |editor| {
        editor.buffer.set_cursor(Pos::new(55, 100));
        editor.scroll_to_cursor((80, 24));
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- launch form ------------------------------------------------------------------------

fn launch_state(detail: &RunbookDetail) -> State {
    let mut state = populated();
    state
        .stack
        .push(Screen::Launch(Box::new(LaunchForm::new(detail))));
    state
}

#[test]
fn launch() {
    insta::assert_snapshot!(draw(&launch_state(&deploy_detail())));
}

#[test]
fn launch_80x24() {
    insta::assert_snapshot!(draw_at(&launch_state(&deploy_detail()), 80, 24));
}

#[test]
fn launch_without_params() {
    let mut detail = deploy_detail();
    detail.params.clear();
    insta::assert_snapshot!(draw_at(&launch_state(&detail), 80, 24));
}

#[test]
fn launch_refused() {
    let mut state = launch_state(&deploy_detail());
    if let Screen::Launch(form) = state.screen_mut() {
        form.fields[1].input.set("many");
        form.submit();
        form.error = Some("param `replicas`: expected an integer".into());
    }
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn launch_dry_run() {
    let mut state = launch_state(&deploy_detail());
    if let Screen::Launch(form) = state.screen_mut() {
        form.dry_run = true;
    }
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- run view ---------------------------------------------------------------------------

fn run_state(run: Option<Run>) -> State {
    let mut state = populated();
    let mut view = RunView::new("01JQ5WAITING00000000000000");
    view.run = run;
    view.watch = WatchStatus::Live;
    state.stack.push(Screen::Run(Box::new(view)));
    state
}

fn with_view(state: &mut State, f: impl FnOnce(&mut RunView)) {
    if let Screen::Run(view) = state.screen_mut() {
        f(view);
    }
}

fn busy_run() -> Run {
    let mut busy = waiting_run();
    busy.status = RunStatus::Running as i32;
    busy.steps.push(StepRun {
        id: "build".into(),
        uses: "shell".into(),
        status: StepStatus::Running as i32,
        attempts: 2,
        started_at: NOW - 12_000,
        history: Vec::new(),
        permit_wait: Some(PermitWait {
            target: "api".into(),
            limit: "50/s".into(),
            until: NOW + 1_000,
        }),
        ..Default::default()
    });
    busy.steps.push(StepRun {
        id: "notify".into(),
        uses: "http".into(),
        status: StepStatus::Pending as i32,
        attempts: 1,
        retry_at: NOW + 3_500,
        error: "503 Service Unavailable".into(),
        ..Default::default()
    });
    busy.steps.push(StepRun {
        id: "deploy".into(),
        uses: "http".into(),
        status: StepStatus::Waiting as i32,
        attempts: 1,
        invocation_id: "inv-42".into(),
        resume_at: NOW + 10_000,
        ..Default::default()
    });
    busy.steps.push(StepRun {
        id: "cleanup".into(),
        uses: "shell".into(),
        status: StepStatus::Skipped as i32,
        ..Default::default()
    });
    busy
}

/// The build step's log: output, errors, a log line and a retry.
fn feed_log(view: &mut RunView) {
    let lines = [
        (OutputStream::Stdout, "Compiling api v1.4.2"),
        (OutputStream::Stderr, "warning: unused variable `x`"),
        (OutputStream::Stdout, "Finished release in 41.2s"),
        (
            OutputStream::Log,
            "info: waiting 1s for a rate-limit permit of target `api` (50/s)",
        ),
    ];
    for (i, (stream, line)) in lines.into_iter().enumerate() {
        view.apply_event(&RunEvent {
            run_id: view.run_id.clone(),
            seq: i as u64 + 1,
            at: NOW,
            kind: Some(Kind::StepOutput(StepOutput {
                step_id: "build".into(),
                stream: stream as i32,
                line: line.into(),
            })),
        });
    }
}

fn busy_state() -> State {
    let mut state = run_state(Some(busy_run()));
    with_view(&mut state, |view| {
        feed_log(view);
        view.selected = 2;
    });
    state
}

#[test]
fn run_view() {
    insta::assert_snapshot!(draw(&busy_state()));
}

#[test]
fn run_view_80x24() {
    insta::assert_snapshot!(draw_at(&busy_state(), 80, 24));
}

#[test]
fn run_view_output_of_a_step() {
    let mut state = run_state(Some(busy_run()));
    with_view(&mut state, |view| {
        view.show_output = true;
        view.selected = 0;
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn run_view_searching_a_scrolled_log() {
    let mut state = busy_state();
    with_view(&mut state, |view| {
        view.scroll = Some(0);
        view.search = Some("warning".into());
        view.found = Some(1);
        view.watch = WatchStatus::Reconnecting {
            error: "transport error".into(),
            retry_at: NOW + 1_000,
        };
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn run_view_failed() {
    let mut failed = busy_run();
    failed.status = RunStatus::Failed as i32;
    failed.finished_at = NOW - 1_000;
    failed.error = "step `build` failed: exit status 101".into();
    failed.steps[2].status = StepStatus::Failed as i32;
    failed.steps[2].finished_at = NOW - 1_000;
    failed.steps[2].error = "exit status 101".into();
    let mut state = run_state(Some(failed));
    with_view(&mut state, |view| {
        feed_log(view);
        view.selected = 2;
        view.watch = WatchStatus::Ended;
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn run_view_loading() {
    insta::assert_snapshot!(draw_at(&run_state(None), 80, 24));
}

#[test]
fn run_view_without_steps() {
    let mut fresh = run(
        "01JQ5WAITING00000000000000",
        "deploy-api",
        RunStatus::Pending,
        0,
    );
    fresh.started_at = 0;
    insta::assert_snapshot!(draw_at(&run_state(Some(fresh)), 80, 24));
}

#[test]
fn run_view_error() {
    let mut state = run_state(None);
    with_view(&mut state, |view| {
        view.error = Some("no run with id `01JQ5WAITING00000000000000`".into());
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn cancel_prompt() {
    let mut state = busy_state();
    state.prompt = Some(Prompt {
        kind: PromptKind::ConfirmCancel {
            run_id: "01JQ5WAITING00000000000000".into(),
        },
        input: LineInput::default(),
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- approvals --------------------------------------------------------------------------

fn approvals_state() -> State {
    let mut state = populated();
    let mut second = waiting_run();
    second.id = "01JQ6OTHER0000000000000000".into();
    second.runbook = "backup-db".into();
    if let Some(approval) = &mut second.steps[1].approval {
        approval.requested_at = NOW - 5_000;
        approval.plan_json =
            r#"{"summary":"x","effects":[{"note":"GET http://127.0.0.1:8080/health"}]}"#.into();
    }
    state.waiting = vec![waiting_run(), second];
    state.stack = vec![Screen::Approvals];
    state
}

#[test]
fn approvals() {
    insta::assert_snapshot!(draw(&approvals_state()));
}

#[test]
fn approvals_80x24() {
    insta::assert_snapshot!(draw_at(&approvals_state(), 80, 24));
}

#[test]
fn approvals_deny_prompt() {
    let mut state = approvals_state();
    state.prompt = Some(Prompt {
        kind: PromptKind::Deny {
            run_id: "01JQ5WAITING00000000000000".into(),
            step_id: "migrate".into(),
        },
        input: LineInput::new("not during the freeze"),
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

/// The queue with one instruction to carry out by hand, asking for two values.
fn instruction_state() -> State {
    let mut state = populated();
    let mut run = waiting_run();
    run.steps[1].id = "drain".into();
    run.steps[1].uses = "instruction".into();
    if let Some(approval) = &mut run.steps[1].approval {
        approval.instruction = true;
        approval.summary = "by hand: Drain the nodes of staging".into();
        approval.plan_json = serde_json::json!({
            "summary": "by hand: Drain the nodes of staging",
            "effects": [{ "note": "## Drain the nodes of staging\n\n1. Open the **staging** console.\n2. Drain every node, then note the `ticket`." }]
        })
        .to_string();
        approval.inputs = vec![
            ParamSpec {
                name: "ticket".into(),
                r#type: "string".into(),
                required: true,
                description: "the change ticket".into(),
                ..Default::default()
            },
            ParamSpec {
                name: "mode".into(),
                r#type: "string".into(),
                default_json: "\"drain\"".into(),
                allowed_json: vec!["\"drain\"".into(), "\"cordon\"".into()],
                ..Default::default()
            },
        ];
    }
    state.waiting = vec![run];
    state.stack = vec![Screen::Approvals];
    state
}

#[test]
fn approvals_instruction() {
    insta::assert_snapshot!(draw_at(&instruction_state(), 80, 24));
}

#[test]
fn instruction_confirm_form() {
    let mut state = instruction_state();
    let run = state.waiting[0].clone();
    let approval = run.steps[1]
        .approval
        .clone()
        .expect("the instruction waits");
    let mut form = LaunchForm::confirming(&run.runbook, &run.id, "drain", &approval);
    form.fields[0].input.set("OPS-7");
    state.stack.push(Screen::Launch(Box::new(form)));
    insta::assert_snapshot!(draw_at(&state, 80, 30));
}

#[test]
fn approvals_empty() {
    let mut state = populated();
    state.stack = vec![Screen::Approvals];
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn approvals_disconnected() {
    let mut state = disconnected();
    state.stack = vec![Screen::Approvals];
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- runs history -----------------------------------------------------------------------

fn runs_state() -> State {
    let mut state = populated();
    state.history.runs = Some(recent_runs());
    state.history.selected = 2;
    state.stack = vec![Screen::Runs];
    state
}

#[test]
fn runs() {
    insta::assert_snapshot!(draw(&runs_state()));
}

#[test]
fn runs_80x24() {
    insta::assert_snapshot!(draw_at(&runs_state(), 80, 24));
}

#[test]
fn runs_filtered_to_nothing() {
    let mut state = runs_state();
    state.history.filter = RunsFilter {
        status: Some(RunStatus::TimedOut),
        runbook: Some("backup-db".into()),
    };
    state.history.runs = Some(Vec::new());
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn runs_empty() {
    let mut state = runs_state();
    state.history.runs = Some(Vec::new());
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn runs_error() {
    let mut state = runs_state();
    state.history.error = Some("unknown run status 42".into());
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

// ---- help -------------------------------------------------------------------------------

#[test]
fn help() {
    let mut state = busy_state();
    state.help = Some(0);
    insta::assert_snapshot!(draw(&state));
}

#[test]
fn help_80x24_scrolled() {
    let mut state = populated();
    state.help = Some(20);
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn help_lists_every_binding() {
    let text: String = super::help::lines(crate::keymap::Context::Runbooks)
        .iter()
        .map(|line| line.to_string() + "\n")
        .collect();
    for context in crate::keymap::Context::ALL {
        for binding in context.bindings() {
            assert!(text.contains(binding.help), "{} missing", binding.help);
        }
    }
}

// ---- the audit log ----------------------------------------------------------------------

fn audit_state() -> State {
    let mut state = populated();
    let entry = |ago_s: i64, action: &str, result: &str, detail: &str| AuditLogEntry {
        at: NOW - ago_s * 1000,
        uid: Some(1000),
        user: "ana".into(),
        action: action.into(),
        runbook: "deploy-api".into(),
        run_id: "01HQZX3K9M2N4P5Q6R7S8T9V0W".into(),
        step: if action == "approve" {
            "migrate".into()
        } else {
            String::new()
        },
        result: result.into(),
        detail: detail.into(),
        ..Default::default()
    };
    state.audit = AuditLog {
        entries: Some(vec![
            entry(30, "approve", "SUCCESS", "run is running"),
            entry(95, "start", "SUCCESS", "params: version"),
            AuditLogEntry {
                runbook: String::new(),
                run_id: String::new(),
                secret: "db_password".into(),
                ..entry(400, "secret_set", "SUCCESS", "")
            },
            entry(
                900,
                "start",
                "FAILURE",
                "invalid params: `version` is required",
            ),
        ]),
        selected: 1,
        ..AuditLog::default()
    };
    state.stack.push(Screen::Audit);
    state
}

#[test]
fn audit_log() {
    insta::assert_snapshot!(draw(&audit_state()));
}

#[test]
fn audit_log_80x24() {
    insta::assert_snapshot!(draw_at(&audit_state(), 80, 24));
}

#[test]
fn audit_log_filtered_to_nothing() {
    let mut state = populated();
    state.audit = AuditLog {
        filter: AuditFilter {
            action: Some("deny".into()),
        },
        entries: Some(Vec::new()),
        ..AuditLog::default()
    };
    state.stack.push(Screen::Audit);
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

fn plugins_state() -> State {
    use runbook_protocol::v1::{Plugin, PluginGrant};
    let mut state = populated();
    state.plugins = crate::state::PluginsView {
        plugins: Some(vec![
            Plugin {
                kind: "http".into(),
                version: "0.1.0".into(),
                builtin: true,
                sha256: "ab".repeat(32),
                imports: vec![
                    "runbook:plugin/events@0.1.0".into(),
                    "runbook:plugin/http@0.1.0".into(),
                ],
                wit_version: "0.1.0".into(),
                ..Plugin::default()
            },
            Plugin {
                kind: "deploy".into(),
                version: "1.2.0".into(),
                path: "/home/ana/.local/share/runbook/plugins/deploy.wasm".into(),
                sha256: "cd".repeat(32),
                imports: vec![
                    "runbook:plugin/http@0.1.0".into(),
                    "runbook:plugin/process@0.1.0".into(),
                ],
                configured: Some(PluginGrant {
                    hosts: vec!["api.example.com".into()],
                    ..PluginGrant::default()
                }),
                granted: Some(PluginGrant {
                    process: true,
                    ..PluginGrant::default()
                }),
                wit_version: "0.1.0".into(),
                ..Plugin::default()
            },
            Plugin {
                kind: "rogue".into(),
                path: "/home/ana/.local/share/runbook/plugins/rogue.wasm".into(),
                sha256: "ef".repeat(32),
                imports: vec!["runbook:plugin/sql@0.1.0".into()],
                configured: Some(PluginGrant::default()),
                granted: Some(PluginGrant::default()),
                refused: "step kind `rogue` is refused: it imports `runbook:plugin/sql`, which it is not granted; grant it with `runbook plugin grant rogue --connection NAME`".into(),
                ..Plugin::default()
            },
        ]),
        selected: 2,
        error: None,
    };
    state.stack.push(Screen::Plugins);
    state
}

#[test]
fn plugins_with_grants_and_a_refusal() {
    insta::assert_snapshot!(draw(&plugins_state()));
}

// ---- agents ---------------------------------------------------------------------------------

fn agents_state(listing: runbook_protocol::v1::ListAgentsResponse) -> State {
    let mut state = populated();
    state.agents = crate::state::AgentsView {
        listing: Some(listing),
        ..crate::state::AgentsView::default()
    };
    state.stack.push(Screen::Agents);
    state
}

/// One agent heartbeating and busy, one silent long enough to be given no steps.
fn two_agents() -> runbook_protocol::v1::ListAgentsResponse {
    use runbook_protocol::v1::Agent;
    runbook_protocol::v1::ListAgentsResponse {
        agents: vec![
            Agent {
                name: "db-1".into(),
                labels: vec!["db".into(), "eu".into()],
                version: "0.1.0".into(),
                heartbeat_age_ms: 400,
                running: 1,
                live: true,
                started_at: NOW - 3_600_000,
            },
            Agent {
                name: "web-2".into(),
                labels: vec!["web".into()],
                version: "0.1.0".into(),
                heartbeat_age_ms: 41_000,
                running: 0,
                live: false,
                started_at: NOW - 7_200_000,
            },
        ],
        cluster: true,
    }
}

#[test]
fn agents_live_and_gone() {
    insta::assert_snapshot!(draw(&agents_state(two_agents())));
}

#[test]
fn agents_80x24() {
    insta::assert_snapshot!(draw_at(&agents_state(two_agents()), 80, 24));
}

#[test]
fn agents_gone_is_a_warning() {
    let mut state = agents_state(two_agents());
    // The gone agent is not the selected row, whose highlight would restyle it.
    state.agents.selected = 0;
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test terminal");
    terminal.draw(|frame| render(frame, &state)).expect("draws");
    let buffer = terminal.backend().buffer();
    let style_of = |word: &str| {
        let area = buffer.area;
        (area.top()..area.bottom())
            .find_map(|y| {
                let row: String = (area.left()..area.right())
                    .map(|x| buffer[(x, y)].symbol())
                    .collect();
                // Columns of ASCII rows are their byte offsets; the border is one cell.
                row.find(word)
                    .map(|at| buffer[(row[..at].chars().count() as u16, y)].fg)
            })
            .unwrap_or_else(|| panic!("`{word}` is not on screen"))
    };
    assert_eq!(
        style_of("gone"),
        crate::theme::warning().fg.expect("a colour")
    );
    assert_ne!(style_of("live"), style_of("gone"));
}

#[test]
fn agents_without_a_cluster() {
    let state = agents_state(runbook_protocol::v1::ListAgentsResponse {
        agents: Vec::new(),
        cluster: false,
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

#[test]
fn agents_none_yet() {
    let state = agents_state(runbook_protocol::v1::ListAgentsResponse {
        agents: Vec::new(),
        cluster: true,
    });
    insta::assert_snapshot!(draw_at(&state, 80, 24));
}

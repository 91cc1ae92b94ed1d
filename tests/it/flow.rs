//! A three-step shell runbook: templates between steps, an `if`, and an approval given from
//! another process while `runbook run --wait` blocks.

use std::io::Read as _;
use std::process::Stdio;

use runbook_e2e::{Daemon, step, step_status};

const THREE_STEPS: &str = r#"
description = "three steps"

[params]
env = { type = "string", default = "staging", allowed = ["staging", "prod"] }

[[steps]]
id = "one"
uses = "shell"
with = { command = ["echo", "hello"] }

[[steps]]
id = "two"
uses = "shell"
needs = ["one"]
approval = true
with = { command = ["printf", "got:%s", "{{ steps.one.output.stdout | trim }}"] }

[[steps]]
id = "three"
uses = "shell"
needs = ["two"]
if = "params.env == 'prod'"
with = { command = ["echo", "only in prod"] }
"#;

#[test]
fn approval_blocks_run_wait_until_another_process_approves() {
    let daemon = Daemon::start(
        &[("three.toml", THREE_STEPS)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let mut waiter = daemon
        .cli_command(&["run", "three", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // `run --wait` prints nothing machine-readable until the end: find the run it started.
    let run_id = loop {
        if let Some(id) = daemon.json(&["runs", "--runbook", "three"])[0]["id"].as_str() {
            break id.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let waiting = daemon.wait_for(&run_id, "the run to wait for approval of step two", |run| {
        run["status"] == "waiting" && step_status(run, "two") == "waiting"
    });
    assert_eq!(step_status(&waiting, "one"), "completed");
    let approval = &step(&waiting, "two")["approval"];
    assert!(
        approval["summary"]
            .as_str()
            .unwrap()
            .contains("printf got:%s hello"),
        "the approval shows the rendered argv: {approval:#}"
    );
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "run --wait must block while approval is pending"
    );

    let approved = daemon.cli(&["approve", &run_id, "two"]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );

    let status = waiter.wait().unwrap();
    let mut printed = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(
        status.success(),
        "run --wait exits 0 on completion; printed:\n{printed}"
    );
    assert!(
        printed.contains("one | hello"),
        "shell output is prefixed by the step id:\n{printed}"
    );

    let shown = daemon.json(&["show", &run_id]);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["runbook"], "three");
    assert_eq!(shown["params"]["env"], "staging");
    assert_eq!(step_status(&shown, "one"), "completed");
    assert_eq!(step(&shown, "one")["output"]["stdout"], "hello\n");
    assert_eq!(step_status(&shown, "two"), "completed");
    assert_eq!(step(&shown, "two")["output"]["stdout"], "got:hello");
    assert_eq!(step(&shown, "two")["output"]["exit_code"], 0);
    assert_eq!(step(&shown, "two")["attempts"], 1);
    assert_eq!(step(&shown, "two")["approval"]["approved"], true);
    assert_eq!(step_status(&shown, "three"), "skipped");
}

#[test]
fn denied_step_fails_the_run_and_skips_what_needs_it() {
    let daemon = Daemon::start(
        &[("three.toml", THREE_STEPS)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let run_id = daemon.start_run("three", &["env=prod"]);
    daemon.wait_for(&run_id, "approval", |run| {
        step_status(run, "two") == "waiting"
    });
    let denied = daemon.cli(&["deny", &run_id, "two", "--reason", "not during the freeze"]);
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let shown = daemon.wait_for(&run_id, "the run to fail", |run| run["status"] == "failed");
    assert_eq!(step_status(&shown, "two"), "failed");
    assert!(
        step(&shown, "two")["error"]
            .as_str()
            .unwrap()
            .contains("not during the freeze")
    );
    assert_eq!(step_status(&shown, "three"), "skipped");
    let watch = daemon.cli(&["watch", &run_id]);
    assert_eq!(
        watch.status.code(),
        Some(1),
        "watch exits 1 for a failed run"
    );
}

#[test]
fn bad_params_and_unknown_runbooks_exit_2() {
    let daemon = Daemon::start(&[("three.toml", THREE_STEPS)], "");
    let bad = daemon.cli(&["run", "three", "-p", "env=qa"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not one of"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let unknown = daemon.cli(&["run", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        daemon.json(&["runs"]).as_array().unwrap().len(),
        0,
        "no run is created for bad input"
    );
}

const GATED: &str = r#"
[params]
gate = { type = "string" }

[[steps]]
id = "first"
uses = "shell"
with = { script = 'while [ ! -e "$GATE" ]; do sleep 0.05; done', env = { GATE = "{{ params.gate }}" } }

[[steps]]
id = "second"
uses = "shell"
needs = ["first"]
with = { command = ["echo", "second"] }
"#;

#[test]
fn a_paused_run_starts_nothing_until_resumed_even_across_a_restart() {
    let mut daemon =
        Daemon::start_process(&[("gated.toml", GATED)], "[approvals]\nshell = \"auto\"\n");
    let gate = daemon.root.path().join("gate");
    let run = daemon.start_run("gated", &[&format!("gate={}", gate.display())]);
    daemon.wait_for(&run, "the first step to run", |run| {
        step_status(run, "first") == "running"
    });

    let paused = daemon.cli(&["pause", &run]);
    assert!(paused.status.success(), "{paused:?}");
    assert!(String::from_utf8_lossy(&paused.stdout).contains("paused run"));
    let again = daemon.cli(&["pause", &run]);
    assert_eq!(again.status.code(), Some(2), "pausing twice is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already paused"));

    // The running step finishes; the run stays paused, with the next step not started.
    std::fs::write(&gate, "").unwrap();
    let shown = daemon.wait_for(&run, "the first step to finish", |run| {
        step_status(run, "first") == "completed"
    });
    assert_eq!(shown["status"], "paused", "{shown:#}");
    assert_eq!(step_status(&shown, "second"), "pending");

    daemon.restart();
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "paused", "a pause survives a restart");

    let resumed = daemon.cli(&["resume", &run]);
    assert!(resumed.status.success(), "{resumed:?}");
    let done = daemon.wait_for(&run, "the run to end", |run| run["status"] == "completed");
    assert_eq!(step(&done, "second")["output"]["stdout"], "second\n");

    // The event log proves the order: the second step started only after the resume.
    let events = daemon.events(&run);
    let position = |needle: &str| {
        events
            .iter()
            .position(|event| event.contains(needle))
            .unwrap_or_else(|| panic!("no event with {needle}: {events:#?}"))
    };
    let pause = position("status: Paused");
    let second_started = events
        .iter()
        .position(|event| event.contains("\"second\", status: Running"))
        .unwrap_or_else(|| panic!("second never ran: {events:#?}"));
    let resume = pause
        + 1
        + events[pause + 1..]
            .iter()
            .position(|event| event.contains("RunStatus(") && event.contains("status: Running"))
            .unwrap_or_else(|| panic!("no resume after the pause: {events:#?}"));
    assert!(second_started > resume, "{events:#?}");
}

#[test]
fn a_dry_run_records_every_plan_and_runs_nothing() {
    let daemon = Daemon::start(&[("gated.toml", GATED)], "");
    let gate = daemon.root.path().join("gate");
    let started = daemon.cli(&[
        "run",
        "gated",
        "--dry-run",
        "--wait",
        "-p",
        &format!("gate={}", gate.display()),
    ]);
    assert!(started.status.success(), "{started:?}");
    let run = daemon.json(&["runs"])[0]["id"].as_str().unwrap().to_owned();
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    assert_eq!(shown["dry_run"], true, "{shown:#}");
    // Shell steps need approval under the default policy; a dry run asks for none, and the
    // step's output is its plan: the exact argv it would run.
    let plan = &step(&shown, "second")["output"]["plan"];
    assert_eq!(
        plan["effects"][0]["process"]["argv"],
        serde_json::json!(["echo", "second"]),
        "{shown:#}"
    );
    assert!(step(&shown, "first")["approval"].is_null(), "{shown:#}");
    let events = daemon.events(&run);
    assert!(
        !events.iter().any(|event| event.contains("StepOutput")),
        "nothing ran, so nothing printed: {events:#?}"
    );
}

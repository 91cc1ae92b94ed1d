//! Retries: a failed attempt is tried again per the step's policy, each attempt is recorded,
//! the wait is an event, and a wait in progress survives a crash of the daemon.

use std::io::Read as _;
use std::process::Stdio;

use runbook_e2e::{Daemon, step, step_status};

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

/// Fails (exit 3) until the marker file exists, creating it: succeeds on the second try.
fn flaky(retry: &str) -> String {
    format!(
        r#"
[params]
mark = {{ type = "string", required = true }}

[[steps]]
id = "flaky"
uses = "shell"
retry = {retry}
with = {{ script = "if [ -f \"$MARK\" ]; then echo recovered; else touch \"$MARK\"; exit 3; fi", env = {{ MARK = "{{{{ params.mark }}}}" }} }}
"#
    )
}

#[test]
fn a_failed_attempt_is_retried_and_every_attempt_is_recorded() {
    let runbook = flaky(r#"{ attempts = 3, delay = "20ms", jitter = false }"#);
    let daemon = Daemon::start(&[("flaky.toml", &runbook)], AUTO);
    let mark = daemon.root.path().join("mark");
    let mut waiter = daemon
        .cli_command(&[
            "run",
            "flaky",
            "-p",
            &format!("mark={}", mark.display()),
            "--wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = waiter.wait().unwrap();
    let mut printed = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(status.success(), "{printed}");
    assert!(
        printed.contains("step flaky: attempt 1 failed: exit code 3"),
        "the wait is shown: {printed}"
    );
    assert!(printed.contains("retrying in"), "{printed}");

    let run = daemon.json(&["runs"])[0]["id"].as_str().unwrap().to_owned();
    let shown = daemon.json(&["show", &run]);
    let flaky = step(&shown, "flaky");
    assert_eq!(flaky["status"], "completed");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["output"]["stdout"], "recovered\n");
    let history = flaky["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{flaky:#}");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("exit code 3")
    );
    assert!(history[1]["error"].is_null());
    assert!(history[0]["finished_at"].as_str() <= history[1]["started_at"].as_str());
    let events = daemon.events(&run);
    assert_eq!(
        events.iter().filter(|e| e.contains("StepRetrying")).count(),
        1,
        "{events:#?}"
    );
}

#[test]
fn attempts_run_out_and_unlisted_failures_are_not_retried() {
    let always_fails = |retry: &str| {
        format!(
            "[[steps]]\nid = \"bad\"\nuses = \"shell\"\nretry = {retry}\n\
             with = {{ script = \"echo nope >&2; exit 1\" }}\n"
        )
    };
    let daemon = Daemon::start(
        &[
            (
                "exhausted.toml",
                &always_fails(r#"{ attempts = 3, backoff = "fixed", delay = "10ms" }"#),
            ),
            (
                "timeouts_only.toml",
                &always_fails(r#"{ attempts = 3, delay = "10ms", on = ["timeout"] }"#),
            ),
        ],
        AUTO,
    );
    let run = daemon.start_run("exhausted", &[]);
    let shown = daemon.wait_for(&run, "failure", |run| run["status"] == "failed");
    assert_eq!(step(&shown, "bad")["attempts"], 3);
    assert_eq!(
        step(&shown, "bad")["history"].as_array().map(Vec::len),
        Some(3)
    );

    let run = daemon.start_run("timeouts_only", &[]);
    let shown = daemon.wait_for(&run, "failure", |run| run["status"] == "failed");
    assert_eq!(
        step(&shown, "bad")["attempts"],
        1,
        "exit codes are not timeouts"
    );
}

#[test]
fn defaults_give_every_step_a_timeout_and_a_retry_policy() {
    let runbook = r#"
[defaults]
timeout = "300ms"
retry = { attempts = 2, delay = "10ms", on = ["timeout"] }

[[steps]]
id = "slow"
uses = "shell"
with = { command = ["sleep", "5"] }
"#;
    let daemon = Daemon::start(&[("slow.toml", runbook)], AUTO);
    let run = daemon.start_run("slow", &[]);
    let shown = daemon.wait_for(&run, "the timeout", |run| run["status"] == "failed");
    assert_eq!(step_status(&shown, "slow"), "timed_out");
    assert_eq!(step(&shown, "slow")["attempts"], 2);
}

#[test]
fn a_retry_wait_survives_kill_9() {
    let runbook = flaky(r#"{ attempts = 2, delay = "2s", jitter = false }"#);
    let mut daemon = Daemon::start_process(&[("flaky.toml", &runbook)], AUTO);
    let mark = daemon.root.path().join("mark");
    let run = daemon.start_run("flaky", &[&format!("mark={}", mark.display())]);
    // The step's back-off is recorded first, the run's `waiting` by the decision that
    // follows it a moment later: wait for both.
    daemon.wait_for(&run, "the retry wait, which makes the run wait", |run| {
        !step(run, "flaky")["retry_at"].is_null() && run["status"] == "waiting"
    });

    daemon.restart();
    let done = daemon.wait_for(&run, "the retry after the restart", |run| {
        run["status"] == "completed"
    });
    assert_eq!(step(&done, "flaky")["attempts"], 2);
    assert_eq!(step(&done, "flaky")["output"]["stdout"], "recovered\n");
}

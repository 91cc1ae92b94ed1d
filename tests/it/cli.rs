//! The `runbook` CLI against the real daemon: logs on the right streams, listings, cancel,
//! validate, following a run across a daemon crash, and the TUI's background poller.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, PATIENCE, step_status};

/// Prints on both streams, then waits for approval before a last step.
const TWO_STREAMS: &str = r#"
description = "speaks on stdout and stderr"

[[steps]]
id = "speak"
uses = "shell"
with = { script = "echo to-stdout; echo to-stderr >&2" }

[[steps]]
id = "gate"
uses = "shell"
needs = ["speak"]
approval = true
with = { command = ["echo", "after the gate"] }
"#;

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_for_gate(daemon: &Daemon) -> String {
    let run = daemon.start_run("speak", &[]);
    daemon.wait_for(&run, "the gate to wait for approval", |shown| {
        step_status(shown, "gate") == "waiting"
    });
    run
}

#[test]
fn logs_print_stdout_and_stderr_on_their_own_streams() {
    let daemon = Daemon::start(&[("speak.toml", TWO_STREAMS)], AUTO);
    let run = wait_for_gate(&daemon);

    let logs = daemon.cli(&["logs", &run, "--step", "speak"]);
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stdout), "to-stdout\n");
    assert_eq!(text(&logs.stderr), "to-stderr\n");

    let unknown = daemon.cli(&["logs", &run, "--step", "nope"]);
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "an unknown step is bad input"
    );
}

#[test]
fn listings_status_and_cancel() {
    let daemon = Daemon::start(&[("speak.toml", TWO_STREAMS)], AUTO);
    let run = wait_for_gate(&daemon);

    let runbooks = daemon.json(&["ls"]);
    assert_eq!(runbooks[0]["name"], "speak");
    assert_eq!(runbooks[0]["description"], "speaks on stdout and stderr");

    let listed = text(&daemon.cli(&["ls"]).stdout);
    assert!(listed.contains("speak"), "{listed}");

    let waiting = daemon.json(&["runs", "--status", "waiting"]);
    assert_eq!(waiting.as_array().map(Vec::len), Some(1));
    assert_eq!(waiting[0]["id"], run.as_str());
    let other = daemon.json(&["runs", "--runbook", "other"]);
    assert_eq!(other.as_array().map(Vec::len), Some(0));

    let status = daemon.json(&["status"]);
    assert!(
        status["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "shell"),
        "{status:#}"
    );
    assert_eq!(status["protocol_version"], 1);

    let cancelled = daemon.cli(&["cancel", &run]);
    assert_eq!(
        cancelled.status.code(),
        Some(0),
        "{}",
        text(&cancelled.stderr)
    );
    assert_eq!(
        text(&cancelled.stdout),
        format!("cancelled run {run} (cancelled)\n")
    );
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(step_status(&shown, "speak"), "completed");
    assert_ne!(step_status(&shown, "gate"), "completed");
}

#[test]
fn validate_says_ok_or_reports_diagnostics_and_exits_2() {
    let daemon = Daemon::start(&[], "");
    let good = daemon.root.path().join("good.toml");
    std::fs::write(&good, TWO_STREAMS).unwrap();
    let output = daemon.cli(&["validate", good.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{}: ok\n", good.display()));

    let bad = daemon.root.path().join("bad.toml");
    std::fs::write(&bad, "descrption = \"typo\"\n").unwrap();
    let output = daemon.cli(&["validate", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains(&format!("{}:1:1", bad.display())),
        "{}",
        text(&output.stderr)
    );
    let output = daemon.cli(&["validate", bad.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["valid"], false);
    assert_eq!(result["diagnostics"][0]["line"], 1);
    assert_eq!(result["diagnostics"][0]["column"], 1);
}

#[test]
fn watch_follows_a_run_across_a_daemon_crash_without_gaps_or_repeats() {
    let mut daemon = Daemon::start_process(&[("speak.toml", TWO_STREAMS)], AUTO);
    let run = daemon.start_run("speak", &[]);
    let mut watcher = daemon
        .cli_command(&["watch", &run])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = watcher.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let printed = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    let deadline = Instant::now() + PATIENCE;
    while !printed("to-stderr") {
        assert!(Instant::now() < deadline, "watch never printed the output");
        std::thread::sleep(Duration::from_millis(20));
    }

    daemon.restart();
    let approved = daemon.cli(&["approve", &run, "gate"]);
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}",
        text(&approved.stderr)
    );

    let status = watcher.wait().unwrap();
    reader.join().unwrap();
    let out = lines.lock().unwrap().join("\n");
    assert!(status.success(), "watch exits 0 on completion:\n{out}");
    for line in [
        "speak | to-stdout",
        "speak ! to-stderr",
        "gate | after the gate",
    ] {
        assert_eq!(out.matches(line).count(), 1, "`{line}` once in:\n{out}");
    }
}

#[test]
fn the_tui_poller_reports_the_daemon_then_its_loss() {
    use runbook_tui::action::Action;

    let daemon = Daemon::start(&[("speak.toml", TWO_STREAMS)], AUTO);
    let run = wait_for_gate(&daemon);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let poller = tokio::spawn(runbook_tui::client::poll(daemon.socket.clone(), tx));
        let Some(Action::Connected { daemon: seen, .. }) = rx.recv().await else {
            panic!("connects first");
        };
        assert_eq!(seen.version, env!("CARGO_PKG_VERSION"));
        // The status bar's counters: one run in progress, its gate waiting for an approval
        // (not executing), a store on disk, ready for work.
        assert_eq!(seen.active_runs, 1, "{seen:?}");
        assert_eq!(seen.steps_in_flight, 0, "{seen:?}");
        assert!(seen.store_bytes > 0, "{seen:?}");
        assert_eq!(seen.not_ready, "", "{seen:?}");
        let Some(Action::Runbooks(runbooks)) = rx.recv().await else {
            panic!("then lists runbooks");
        };
        assert_eq!(runbooks[0].name, "speak");
        let Some(Action::Runs(runs)) = rx.recv().await else {
            panic!("then lists runs");
        };
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].id, run);

        drop(daemon);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let action = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("reports the loss of the daemon");
            if let Some(Action::Disconnected(message)) = action {
                assert!(!message.is_empty());
                break;
            }
        }
        poller.abort();
    });
}

#[test]
fn the_tui_refreshes_at_once_when_the_daemon_reports_a_change() {
    use runbook_tui::action::Action;

    let daemon = Daemon::start(&[("speak.toml", TWO_STREAMS)], AUTO);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        // An hour between polls: only the daemon's event can explain a quick refresh.
        let socket = daemon.socket.clone();
        let poller = tokio::spawn(async move {
            runbook_tui::client::poll_every(Duration::from_secs(3600), &socket, tx).await;
        });
        let names = |action: Option<Action>| match action {
            Some(Action::Runbooks(runbooks)) => {
                Some(runbooks.into_iter().map(|rb| rb.name).collect::<Vec<_>>())
            }
            _ => None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let action = tokio::time::timeout_at(deadline, rx.recv()).await.unwrap();
            if names(action) == Some(vec!["speak".to_owned()]) {
                break;
            }
        }
        std::fs::write(daemon.runbooks.join("added.toml"), TWO_STREAMS).unwrap();
        loop {
            let action = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the new runbook shows long before the next poll");
            if names(action) == Some(vec!["added".to_owned(), "speak".to_owned()]) {
                break;
            }
        }
        poller.abort();
    });
}

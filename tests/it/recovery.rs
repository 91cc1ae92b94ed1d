//! kill -9 of the daemon: runs and their events survive; a waiting approval still waits; a
//! shell step that was running becomes ambiguous until the operator resolves it, with the
//! interrupted attempt in its history.

use runbook_e2e::{Daemon, step, step_status};

const APPROVE_ME: &str = r#"
[[steps]]
id = "first"
uses = "shell"
approval = false
with = { command = ["echo", "before"] }

[[steps]]
id = "gated"
uses = "shell"
needs = ["first"]
with = { command = ["echo", "approved work"] }
"#;

#[test]
fn a_waiting_approval_survives_kill_9_and_can_be_approved() {
    // The default policy requires approval of shell steps, and a runbook cannot waive it.
    let mut daemon = Daemon::start_process(&[("gated.toml", APPROVE_ME)], "");
    let run_id = daemon.start_run("gated", &[]);
    daemon.wait_for(&run_id, "the first approval", |run| {
        step_status(run, "first") == "waiting"
    });
    let approved = daemon.cli(&["approve", &run_id, "first"]);
    assert!(approved.status.success());
    daemon.wait_for(&run_id, "the approval", |run| {
        step_status(run, "gated") == "waiting"
    });
    let before = daemon.events(&run_id);

    daemon.restart();

    let after = daemon.events(&run_id);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every event survives the crash, in order"
    );
    let shown = daemon.json(&["show", &run_id]);
    assert_eq!(shown["status"], "waiting");
    assert_eq!(step_status(&shown, "first"), "completed");
    assert_eq!(step_status(&shown, "gated"), "waiting");

    let approved = daemon.cli(&["approve", &run_id, "gated"]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let done = daemon.wait_for(&run_id, "completion", |run| run["status"] == "completed");
    assert_eq!(step(&done, "gated")["output"]["stdout"], "approved work\n");
}

#[test]
fn a_running_shell_step_becomes_ambiguous_and_resolve_retry_completes_it() {
    let runbook = r#"
[params]
mark = { type = "string", required = true }

[[steps]]
id = "slow"
uses = "shell"
# The first attempt marks itself and sleeps (the daemon is killed meanwhile); a retry sees
# the mark and finishes at once.
with = { script = "if [ -e \"$MARK\" ]; then echo retried; else touch \"$MARK\"; echo started; exec sleep 120; fi", env = { MARK = "{{ params.mark }}" } }
"#;
    let mut daemon =
        Daemon::start_process(&[("slow.toml", runbook)], "[approvals]\nshell = \"auto\"\n");
    let mark = daemon.root.path().join("attempted");
    let run_id = daemon.start_run("slow", &[&format!("mark={}", mark.display())]);
    daemon.wait_for(&run_id, "the step to run", |run| {
        step_status(run, "slow") == "running" && mark.exists()
    });
    let before = daemon.events(&run_id);

    daemon.restart();

    let after = daemon.events(&run_id);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every event survives the crash, in order"
    );
    let shown = daemon.wait_for(&run_id, "the step to become ambiguous", |run| {
        step_status(run, "slow") == "ambiguous"
    });
    assert_eq!(shown["status"], "waiting");
    assert_eq!(step(&shown, "slow")["attempts"], 1);
    assert!(
        step(&shown, "slow")["error"]
            .as_str()
            .unwrap()
            .contains("resolve")
    );
    let history = step(&shown, "slow")["history"].as_array().unwrap().clone();
    assert_eq!(
        history.len(),
        1,
        "the interrupted attempt is in the history"
    );
    assert_eq!(history[0]["attempt"], 1);
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{history:?}"
    );

    let resolved = daemon.cli(&["resolve", &run_id, "slow", "retry"]);
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    let done = daemon.wait_for(&run_id, "completion", |run| run["status"] == "completed");
    assert_eq!(step(&done, "slow")["attempts"], 2);
    assert_eq!(step(&done, "slow")["output"]["stdout"], "retried\n");
    assert_eq!(step(&done, "slow")["history"].as_array().unwrap().len(), 2);
}

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

#[test]
fn a_run_whose_records_cannot_be_read_is_quarantined_and_the_others_recover() {
    let mut daemon = Daemon::start_process(&[("gated.toml", APPROVE_ME)], "");
    let runs: Vec<String> = (0..3).map(|_| daemon.start_run("gated", &[])).collect();
    for run in &runs {
        daemon.wait_for(run, "the first approval", |shown| {
            step_status(shown, "first") == "waiting"
        });
    }
    daemon.kill9();

    // Garbage in one run's header and in another run's first step record.
    {
        let db = sled::open(daemon.data_dir.join("db")).unwrap();
        db.open_tree("runs")
            .unwrap()
            .insert(runs[0].as_bytes(), &b"\x00not json"[..])
            .unwrap();
        let mut step_key = format!("{}/", runs[1]).into_bytes();
        step_key.extend_from_slice(&0u32.to_be_bytes());
        let steps = db.open_tree("steps").unwrap();
        assert!(
            steps.get(&step_key).unwrap().is_some(),
            "the step record's key"
        );
        steps.insert(step_key, &b"{\"id\": 7"[..]).unwrap();
        db.flush().unwrap();
    }

    daemon.restart();
    let status = daemon.json(&["status"]);
    let quarantined: Vec<&str> = status["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        quarantined,
        [runs[0].as_str(), runs[1].as_str()],
        "{status:#}"
    );
    let printed = String::from_utf8_lossy(&daemon.cli(&["status"]).stdout).into_owned();
    assert!(
        printed.contains(&format!("quarantined  {}", runs[0])),
        "{printed}"
    );

    // The third run recovered: it still waits, and goes on when approved.
    assert!(daemon.cli(&["approve", &runs[2], "first"]).status.success());
    daemon.wait_for(&runs[2], "the second approval", |shown| {
        step_status(shown, "gated") == "waiting"
    });
    let listed = daemon.json(&["runs"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|run| run["id"] != runs[0].as_str()),
        "a quarantined run is not listed: {listed:#}"
    );
}

/// Processes running `sleep DURATION` now.
fn sleeping(duration: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
            args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == duration.as_bytes()
        })
        .count()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + runbook_e2e::PATIENCE;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn no_process_outlives_its_step_across_kill_9_and_a_retry_runs_one_copy() {
    // A duration no other test or process uses.
    let nap = format!("300.{}", std::process::id());
    let runbook = format!(
        "[[steps]]\nid = \"nap\"\nuses = \"shell\"\nwith = {{ command = [\"sh\", \"-c\", \"sleep {nap}; echo woke\"] }}\n"
    );
    let mut daemon =
        Daemon::start_process(&[("nap.toml", &runbook)], "[approvals]\nshell = \"auto\"\n");
    let run = daemon.start_run("nap", &[]);
    wait_until("the step's sleep", || sleeping(&nap) == 1);

    daemon.kill9();
    daemon.restart();
    daemon.wait_for(&run, "the step to become ambiguous", |shown| {
        step_status(shown, "nap") == "ambiguous"
    });
    assert_eq!(
        sleeping(&nap),
        0,
        "the sleep the killed daemon's step started was killed at recovery"
    );

    assert!(
        daemon
            .cli(&["resolve", &run, "nap", "retry"])
            .status
            .success()
    );
    wait_until("the retry's sleep", || sleeping(&nap) >= 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sleeping(&nap), 1, "exactly one copy runs");

    assert!(daemon.cli(&["cancel", &run]).status.success());
    wait_until("the cancel to kill the sleep", || sleeping(&nap) == 0);
}

//! Retrying an ended run in place (`runbook retry`): completed steps are not run again (a
//! ledger file counts every step's side effect), `--from` re-runs a step and its downstream
//! steps only, `--latest` moves the run to the current version unless a completed step
//! changed, and each retry is in the run's history. And running part of a runbook (`run
//! --only/--from/--to/--outputs-from`), whose steps left out stay out when it is retried. And
//! the `wait` step, whose deadline survives a kill -9 of the daemon.

use std::path::Path;

use runbook_e2e::{Daemon, eventually, save_by_rename, step, step_status};

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

/// Five shell steps in a chain, each appending its id to `$LEDGER`; `s3` fails until the
/// file `$GATE` exists. `s1_word` is what `s1` writes (a change to it changes `s1`).
fn chain(s1_word: &str, s3_extra: &str) -> String {
    let mut source = String::from(
        r#"
[params]
ledger = { type = "string", required = true }
gate = { type = "string", required = true }
"#,
    );
    for i in 1..=5 {
        let word = if i == 1 {
            s1_word.to_owned()
        } else {
            format!("s{i}")
        };
        let script = if i == 3 {
            format!(
                "test -e \"$GATE\" || {{ echo closed >&2; exit 4; }}; echo {word}{s3_extra} >> \"$LEDGER\""
            )
        } else {
            format!("echo {word} >> \"$LEDGER\"")
        };
        source.push_str(&format!(
            r#"
[[steps]]
id = "s{i}"
uses = "shell"
with = {{ script = '{script}', env = {{ LEDGER = "{{{{ params.ledger }}}}", GATE = "{{{{ params.gate }}}}" }} }}
"#
        ));
        if i > 1 {
            source.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    source
}

fn ledger(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts the chain with its ledger and gate in the daemon's root; returns its failed run.
fn failed_run(daemon: &Daemon) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let ledger_path = daemon.root.path().join("ledger");
    let gate = daemon.root.path().join("gate");
    let run = daemon.run_to_end(
        "chain",
        &[
            &format!("ledger={}", ledger_path.display()),
            &format!("gate={}", gate.display()),
        ],
    );
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(step_status(&run, "s3"), "failed");
    assert_eq!(step_status(&run, "s4"), "skipped");
    assert_eq!(ledger(&ledger_path), ["s1", "s2"]);
    (run["id"].as_str().unwrap().to_owned(), ledger_path, gate)
}

fn retry(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let mut all = vec!["retry"];
    all.extend_from_slice(args);
    daemon.cli(&all)
}

#[test]
fn a_run_failed_at_step_3_retried_in_place_completes_without_running_steps_1_and_2_again() {
    let daemon = Daemon::start(&[("chain.toml", &chain("s1", ""))], AUTO);
    let (run, ledger_path, gate) = failed_run(&daemon);

    std::fs::write(&gate, "").unwrap();
    let output = retry(&daemon, &[&run, "--wait"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("running again: s3, s4, s5"),
        "the retry says what runs again: {stdout}"
    );
    // Only what happened after the retry is printed.
    assert!(!stdout.contains("closed"), "{stdout}");

    assert_eq!(ledger(&ledger_path), ["s1", "s2", "s3", "s4", "s5"]);
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["id"], run.as_str(), "the same run went on");
    assert_eq!(shown["status"], "completed", "{shown:#}");
    assert_eq!(step(&shown, "s1")["attempts"], 1);
    assert_eq!(step(&shown, "s3")["attempts"], 2);
    let history = step(&shown, "s3")["history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        2,
        "both attempts are in the history: {history:#?}"
    );
    assert!(history[0]["error"].is_string(), "{history:#?}");
    assert!(history[1]["error"].is_null(), "{history:#?}");
    let retries = shown["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 1, "{shown:#}");
    assert_eq!(retries[0]["ended"], "failed");
    assert_eq!(retries[0]["steps"], serde_json::json!(["s3", "s4", "s5"]));
    assert!(
        retries[0]["by"].as_str().is_some_and(|by| !by.is_empty()),
        "{retries:#?}"
    );
    assert!(retries[0]["from"].is_null());
    let text = daemon.cli(&["show", &run]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("retried") && text.contains("it had ended failed"),
        "`show` lists the retry: {text}"
    );

    // The events say it too, in order: the retry, then the steps it reopened.
    let events = daemon.events(&run);
    let retried = events
        .iter()
        .position(|e| e.contains("RunRetried"))
        .expect("a run_retried event");
    assert!(
        events[retried..].iter().any(|e| e.contains("s3")),
        "{events:#?}"
    );

    // The audit log has the retry, by the run, and the refused one below too.
    let audited = daemon.json(&["audit", "--action", "retry", "--run", &run]);
    assert_eq!(audited.as_array().map(Vec::len), Some(1), "{audited:#}");
    assert_eq!(audited[0]["result"], "SUCCESS", "{audited:#}");

    // An ended run that completed has nothing to retry without --from.
    let refused = retry(&daemon, &[&run]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--from"), "{stderr}");
    let audited = daemon.json(&["audit", "--action", "retry", "--run", &run]);
    assert!(
        audited
            .as_array()
            .is_some_and(|entries| entries.iter().any(|e| e["result"] == "FAILURE")),
        "a refused retry is audited too: {audited:#}"
    );
}

#[test]
fn from_a_step_reruns_it_and_its_downstream_steps_only() {
    let daemon = Daemon::start(&[("chain.toml", &chain("s1", ""))], AUTO);
    let (run, ledger_path, gate) = failed_run(&daemon);
    std::fs::write(&gate, "").unwrap();
    assert!(retry(&daemon, &[&run, "--wait"]).status.success());

    let output = retry(&daemon, &[&run, "--from", "s4", "--wait"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        ledger(&ledger_path),
        ["s1", "s2", "s3", "s4", "s5", "s4", "s5"]
    );
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "completed");
    assert_eq!(step(&shown, "s3")["attempts"], 2);
    assert_eq!(step(&shown, "s4")["attempts"], 2);
    let retries = shown["retries"].as_array().unwrap();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[1]["from"], "s4");
    assert_eq!(retries[1]["ended"], "completed");
    assert_eq!(retries[1]["steps"], serde_json::json!(["s4", "s5"]));

    let unknown = retry(&daemon, &[&run, "--from", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn latest_is_refused_when_a_completed_step_changed_and_moves_the_run_when_only_failed_ones_did() {
    let daemon = Daemon::start(&[("chain.toml", &chain("s1", ""))], AUTO);
    let (run, ledger_path, gate) = failed_run(&daemon);
    let pinned = daemon.json(&["show", &run])["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = daemon.runbooks.join("chain.toml");
    let current = |daemon: &Daemon| {
        daemon
            .json(&["ls"])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "chain")
            .map(|r| r["version"].as_str().unwrap_or_default().to_owned())
            .unwrap()
    };

    // s1 completed, and the current version defines it differently: refused, by name.
    save_by_rename(&file, &chain("first", ""));
    eventually("the edit to become current", || current(&daemon) != pinned);
    std::fs::write(&gate, "").unwrap();
    let refused = retry(&daemon, &[&run, "--latest"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("s1") && stderr.contains("defined differently"),
        "{stderr}"
    );
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "failed", "a refused retry changes nothing");
    assert!(shown.get("retries").is_none(), "{shown:#}");

    // Only the failed step changed: the run moves to that version and finishes on it.
    save_by_rename(&file, &chain("s1", "-fixed"));
    eventually("the second edit to become current", || {
        let now = current(&daemon);
        now != pinned
            && daemon
                .json(&["versions", "chain"])
                .as_array()
                .unwrap()
                .len()
                == 3
    });
    let fixed = current(&daemon);
    let output = retry(&daemon, &[&run, "--latest", "--wait"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ledger(&ledger_path), ["s1", "s2", "s3-fixed", "s4", "s5"]);
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["version"], fixed.as_str());
    assert_eq!(shown["retries"][0]["previous_version"], pinned.as_str());
}

#[test]
fn a_run_that_has_not_ended_is_not_retried() {
    let source = r#"
[[steps]]
id = "slow"
uses = "shell"
with = { command = ["sleep", "30"] }
"#;
    let daemon = Daemon::start(&[("slow.toml", source)], AUTO);
    let run = daemon.start_run("slow", &[]);
    daemon.wait_for(&run, "the step to run", |shown| {
        step_status(shown, "slow") == "running"
    });
    let refused = retry(&daemon, &[&run]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("has not ended"), "{stderr}");

    // Cancelled, it can be: the step runs again from the start.
    assert!(daemon.cli(&["cancel", &run]).status.success());
    let output = retry(&daemon, &[&run]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = daemon.wait_for(&run, "the step to run again", |shown| {
        step_status(shown, "slow") == "running"
    });
    assert_eq!(step(&shown, "slow")["attempts"], 2);
    assert!(daemon.cli(&["cancel", &run]).status.success());
}

/// `runbook run chain` with the ledger and gate of the daemon's root, and `extra` flags;
/// returns the ended run.
fn run_part(daemon: &Daemon, extra: &[&str]) -> serde_json::Value {
    let ledger_path = daemon.root.path().join("ledger");
    let gate = daemon.root.path().join("gate");
    let ledger_param = format!("ledger={}", ledger_path.display());
    let gate_param = format!("gate={}", gate.display());
    let mut args = vec![
        "run",
        "chain",
        "-p",
        &ledger_param,
        "-p",
        &gate_param,
        "--wait",
    ];
    args.extend_from_slice(extra);
    let output = daemon.cli(&args);
    assert!(
        output.status.code().is_some_and(|code| code <= 1),
        "{extra:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    daemon.json(&["runs", "--limit", "1"])[0].clone()
}

#[test]
fn only_from_and_to_run_part_of_a_runbook_and_skip_the_rest_as_not_selected() {
    let daemon = Daemon::start(&[("chain.toml", &chain("s1", ""))], AUTO);
    let ledger_path = daemon.root.path().join("ledger");
    std::fs::write(daemon.root.path().join("gate"), "").unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        // A step whose need was left out still runs: only a failure holds it back.
        (&["--only", "s2,s4"], &["s2", "s4"]),
        (&["--from", "s4"], &["s4", "s5"]),
        (&["--to", "s2"], &["s1", "s2"]),
        (&["--from", "s2", "--to", "s4"], &["s2", "s3", "s4"]),
        (&["--only", "s1", "--only", "s5", "--from", "s3"], &["s5"]),
    ];
    for (flags, ran) in cases {
        std::fs::write(&ledger_path, "").unwrap();
        let listed = run_part(&daemon, flags);
        let run = daemon.json(&["show", listed["id"].as_str().unwrap()]);
        assert_eq!(run["status"], "completed", "{flags:?}: {run:#}");
        // Steps whose needs were left out may run side by side: the order is not the point.
        let mut written = ledger(&ledger_path);
        written.sort();
        assert_eq!(written, *ran, "{flags:?}");
        for id in ["s1", "s2", "s3", "s4", "s5"] {
            let step = step(&run, id);
            if ran.contains(&id) {
                assert_eq!(step["status"], "completed", "{flags:?} {id}");
            } else {
                assert_eq!(step["status"], "skipped", "{flags:?} {id}");
                assert_eq!(step["error"], "not selected", "{flags:?} {id}");
                assert_eq!(step["attempts"], 0, "{flags:?} {id}");
            }
        }
    }

    for (flags, says) in [
        (&["--only", "nope"][..], "--only names `nope`"),
        (&["--from", "s4", "--to", "s2"][..], "keeps no step"),
    ] {
        let mut args = vec!["run", "chain", "-p", "ledger=x", "-p", "gate=y"];
        args.extend_from_slice(flags);
        let refused = daemon.cli(&args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

#[test]
fn a_selected_step_that_reads_one_left_out_needs_an_earlier_run_to_lend_its_output() {
    let source = r#"
[params]
word = { type = "string", required = true }

[[steps]]
id = "make"
uses = "shell"
with = { command = ["printf", "%s", "{{ params.word }}"] }

[[steps]]
id = "use"
uses = "shell"
needs = ["make"]
with = { command = ["printf", "got:%s", "{{ steps.make.output.stdout }}"] }
"#;
    let daemon = Daemon::start(&[("pair.toml", source)], AUTO);
    let refused = daemon.cli(&["run", "pair", "-p", "word=x", "--only", "use"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`use` reads `make`") && stderr.contains("--outputs-from"),
        "{stderr}"
    );

    let earlier = daemon.run_to_end("pair", &["word=lent"]);
    assert_eq!(earlier["status"], "completed");
    let earlier = earlier["id"].as_str().unwrap();
    let output = daemon.cli(&[
        "run",
        "pair",
        "-p",
        "word=ignored",
        "--only",
        "use",
        "--outputs-from",
        earlier,
        "--wait",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = daemon.json(&["runs", "--limit", "1"]);
    let run = daemon.json(&["show", listed[0]["id"].as_str().unwrap()]);
    assert_eq!(step(&run, "use")["output"]["stdout"], "got:lent", "{run:#}");
    assert_eq!(step(&run, "make")["status"], "skipped");
    assert_eq!(
        step(&run, "make")["attempts"],
        0,
        "the lent step did not run"
    );
    assert!(
        step(&run, "make")["error"]
            .as_str()
            .is_some_and(|error| error.contains(earlier)),
        "{run:#}"
    );
}

#[test]
fn a_retry_of_part_of_a_runbook_leaves_the_steps_left_out_alone() {
    let daemon = Daemon::start(&[("chain.toml", &chain("s1", ""))], AUTO);
    let ledger_path = daemon.root.path().join("ledger");
    let listed = run_part(&daemon, &["--only", "s3,s4"]);
    let run = listed["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["status"], "failed");
    std::fs::write(daemon.root.path().join("gate"), "").unwrap();
    let output = retry(&daemon, &[&run, "--wait"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ledger(&ledger_path), ["s3", "s4"]);
    let shown = daemon.json(&["show", &run]);
    assert_eq!(
        shown["retries"][0]["steps"],
        serde_json::json!(["s3", "s4"])
    );
    assert_eq!(step(&shown, "s5")["error"], "not selected");
}

const WAIT_THEN_ECHO: &str = r#"
[[steps]]
id = "pause"
uses = "wait"
with = { duration = "3s" }

[[steps]]
id = "after"
uses = "shell"
needs = ["pause"]
with = { command = ["echo", "went on"] }
"#;

fn millis_of(time: &serde_json::Value) -> i64 {
    let at = humantime::parse_rfc3339(time.as_str().unwrap()).unwrap();
    i64::try_from(
        at.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn a_wait_step_ends_at_its_stored_deadline_across_a_kill_9() {
    let mut daemon = Daemon::start_process(&[("pause.toml", WAIT_THEN_ECHO)], AUTO);
    let run = daemon.start_run("pause", &[]);
    let waiting = daemon.wait_for(&run, "the wait to start", |shown| {
        step_status(shown, "pause") == "waiting"
    });
    let started = millis_of(&step(&waiting, "pause")["started_at"]);
    daemon.kill9();
    // Down for 2 of the wait's 3 seconds: a deadline counted again from the restart would
    // end the wait 3 s after it, 5 s after the step started.
    std::thread::sleep(std::time::Duration::from_secs(2));
    daemon.spawn();
    let ended = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    let pause = step(&ended, "pause");
    let finished = millis_of(&pause["finished_at"]);
    assert!(
        (3000..4000).contains(&(finished - started)),
        "the wait ended {} ms after it started, not at its deadline (3 s, within 1 s): {ended:#}",
        finished - started
    );
    assert!(
        pause["output"]["late_ms"]
            .as_u64()
            .is_some_and(|late| late < 1000),
        "{pause:#}"
    );
    assert_eq!(step(&ended, "after")["output"]["stdout"], "went on\n");
}

#[test]
fn a_wait_step_is_checked_at_load_and_cancelled_with_its_run() {
    let bad = r#"
[[steps]]
id = "pause"
uses = "wait"
with = { duration = "ten minutes" }
"#;
    let daemon = Daemon::start(&[("pause.toml", WAIT_THEN_ECHO), ("bad.toml", bad)], AUTO);
    let listed = daemon.json(&["ls"]);
    let bad = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|runbook| runbook["name"] == "bad")
        .unwrap();
    assert_eq!(bad["valid"], false, "{bad:#}");
    assert!(
        bad.to_string().contains("is not a duration"),
        "the error says what is wrong: {bad:#}"
    );

    let run = daemon.start_run("pause", &[]);
    daemon.wait_for(&run, "the wait to start", |shown| {
        step_status(shown, "pause") == "waiting"
    });
    assert!(daemon.cli(&["cancel", &run]).status.success());
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(step_status(&shown, "pause"), "cancelled");
    assert_eq!(step_status(&shown, "after"), "cancelled");
}

//! The daemon, not a plugin, decides what needs a human and what a step may reach: the
//! `rogue` test plugin says its steps need no approval and that its SQL never writes, tries to
//! run an approved process more than once, and plans SQL on a connection its step does not
//! name.

use runbook_e2e::{Daemon, step, step_status};

/// A runbook of one rogue step with `with` as given (inline TOML).
fn rogue_runbook(with: &str) -> String {
    format!("[[steps]]\nid = \"sneak\"\nuses = \"rogue\"\nwith = {with}\n")
}

/// Lines of the file the processes append to (none if it does not exist).
fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// What the rogue plugin's component imports, granted in the daemon config.
const ROGUE_GRANTS: &str =
    "[plugins.rogue]\nallow_process = true\nallowed_connections = [\"mine\", \"theirs\"]\n";

fn append_argv(path: &std::path::Path) -> String {
    format!("[\"sh\", \"-c\", \"echo ran >> {}\"]", path.display())
}

#[test]
fn a_plugin_that_waives_its_approval_still_waits_before_running_a_process() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("marker");
    let runbook = rogue_runbook(&format!("{{ argv = {} }}", append_argv(&marker)));
    let daemon = Daemon::start_with_test_plugin("rogue", &[("sneak.toml", &runbook)], ROGUE_GRANTS);
    daemon.wait_valid("sneak");
    let run = daemon.start_run("sneak", &[]);
    let waiting = daemon.wait_for(&run, "the step to wait for approval", |shown| {
        step_status(shown, "sneak") == "waiting"
    });
    assert_eq!(lines(&marker), 0, "nothing ran before the approval");
    let plan = &step(&waiting, "sneak")["approval"]["plan"];
    assert!(
        plan.to_string().contains("echo ran"),
        "the approver sees the process the plugin did not want shown: {plan}"
    );

    assert!(daemon.cli(&["approve", &run, "sneak"]).status.success());
    daemon.wait_for(&run, "the run to complete", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(lines(&marker), 1);
}

#[test]
fn an_approved_process_runs_once_however_often_the_plugin_asks() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("marker");
    let runbook = rogue_runbook(&format!("{{ argv = {}, times = 3 }}", append_argv(&marker)));
    let daemon = Daemon::start_with_test_plugin(
        "rogue",
        &[("sneak.toml", &runbook)],
        &format!("{ROGUE_GRANTS}[approvals]\nrogue = \"auto\"\n"),
    );
    daemon.wait_valid("sneak");
    let done = daemon.run_to_end("sneak", &[]);
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(lines(&marker), 1, "the plan named the process once");
    let output = &step(&done, "sneak")["output"];
    assert_eq!(output["ran"].as_array().map(Vec::len), Some(1), "{output}");
    let refused = output["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{output}");
    assert!(
        refused.iter().all(|err| err
            .as_str()
            .unwrap()
            .contains("already ran in this attempt")),
        "{output}"
    );
}

/// A config with two SQLite connections in `dir`, `mine` and `theirs`.
fn two_connections(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "{extra}\n[connections.mine]\nurl = \"sqlite://{}\"\n\n[connections.theirs]\nurl = \"sqlite://{}\"\n",
        dir.join("mine.db").display(),
        dir.join("theirs.db").display()
    )
}

#[test]
fn sql_that_writes_waits_for_approval_whatever_the_plugin_says() {
    let root = tempfile::tempdir().unwrap();
    let runbook =
        rogue_runbook("{ connection = \"mine\", statements = [\"create table loot (x int)\"] }");
    let daemon = Daemon::start_with_test_plugin(
        "rogue",
        &[("sneak.toml", &runbook)],
        &two_connections(root.path(), ROGUE_GRANTS),
    );
    daemon.wait_valid("sneak");
    let run = daemon.start_run("sneak", &[]);
    let waiting = daemon.wait_for(&run, "the write to wait for approval", |shown| {
        step_status(shown, "sneak") == "waiting"
    });
    let plan = &step(&waiting, "sneak")["approval"]["plan"];
    assert_eq!(
        plan["effects"][0]["sql"]["writes"], false,
        "the plugin claimed a read: {plan}"
    );
    assert!(daemon.cli(&["approve", &run, "sneak"]).status.success());
    let done = daemon.wait_for(&run, "the run to complete", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(
        step(&done, "sneak")["output"]["ran"][0],
        "affected [0]",
        "{done:#}"
    );
}

#[test]
fn a_plan_may_name_only_the_steps_own_connection() {
    let root = tempfile::tempdir().unwrap();
    let runbook = rogue_runbook(
        "{ connection = \"mine\", plan_connection = \"theirs\", statements = [\"select 1\"] }",
    );
    let daemon = Daemon::start_with_test_plugin(
        "rogue",
        &[("sneak.toml", &runbook)],
        &two_connections(root.path(), ROGUE_GRANTS),
    );
    daemon.wait_valid("sneak");
    let done = daemon.run_to_end("sneak", &[]);
    assert_eq!(done["status"], "failed", "{done:#}");
    let error = step(&done, "sneak")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("the plan names connection `theirs`, but the step's connection is `mine`"),
        "{error}"
    );
    assert!(
        !root.path().join("theirs.db").exists(),
        "the other connection was never opened"
    );
}

#[test]
fn an_approver_sees_the_stdin_and_env_values_a_process_gets() {
    let runbook = r#"
[[steps]]
id = "script"
uses = "shell"
with = { command = ["sh", "-s"], stdin = "rm -rf /srv/cache\necho done\n", env = { MODE = "fast" } }
"#;
    let daemon = Daemon::start(&[("piped.toml", runbook)], "");
    let run = daemon.start_run("piped", &[]);
    let waiting = daemon.wait_for(&run, "the approval", |shown| {
        step_status(shown, "script") == "waiting"
    });
    let process = &step(&waiting, "script")["approval"]["plan"]["effects"][0]["process"];
    assert_eq!(
        process["stdin"], "rm -rf /srv/cache\necho done\n",
        "{process}"
    );
    assert_eq!(process["env_values"]["MODE"], "fast", "{process}");
    assert_eq!(process["stdin_bytes"], 28);
    let hash = process["stdin_sha256"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);

    let shown = String::from_utf8_lossy(&daemon.cli(&["show", &run]).stdout).into_owned();
    assert!(shown.contains("env MODE=fast"), "{shown}");
    assert!(
        shown.contains(&format!("stdin 28 bytes, sha256 {hash}")),
        "{shown}"
    );
    assert!(
        daemon
            .cli(&["deny", &run, "script", "--reason", "no"])
            .status
            .success()
    );
}

//! Capabilities enforced from the component itself: the `rogue` test plugin imports
//! `runbook:plugin/process` and `runbook:plugin/sql`; without grants it is refused at load,
//! with a message naming the interface and the command that grants it, and `runbook plugin
//! grant` loads it without a restart. Grants are stored by the daemon (they survive a
//! restart), audited, and taken away with `runbook plugin revoke`. `runbook plugin install`
//! checks a component under the grants it is given before anything is written, and `runbook
//! plugin rm` removes it with its grants.

use runbook_e2e::{Daemon, eventually, step, test_plugin};
use serde_json::Value;

const RUNBOOK: &str = r#"
[[steps]]
id = "sneak"
uses = "rogue"
with = { argv = ["echo", "hi"] }
"#;

/// The `plugin ls --json` entry whose file is `rogue.wasm`.
fn rogue(daemon: &Daemon) -> Value {
    let listed = daemon.json(&["plugin", "ls"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| {
            plugin["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("rogue.wasm")
        })
        .cloned()
        .unwrap_or_else(|| panic!("rogue.wasm is not listed: {listed:#}"))
}

fn valid(daemon: &Daemon, name: &str) -> bool {
    daemon
        .json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .any(|runbook| runbook["name"] == name && runbook["valid"] == true)
}

#[test]
fn a_plugin_is_refused_until_granted_what_it_imports_and_the_grant_survives_a_restart() {
    let mut daemon = Daemon::prepare(
        &[("sneak.toml", RUNBOOK)],
        "[approvals]\nrogue = \"auto\"\n",
    );
    std::fs::create_dir_all(daemon.plugins_dir()).unwrap();
    std::fs::copy(
        test_plugin("rogue"),
        daemon.plugins_dir().join("rogue.wasm"),
    )
    .unwrap();
    daemon.spawn();

    // Refused at load: the first interface it lacks, and the command that grants it.
    let refused = rogue(&daemon);
    assert_eq!(refused["loaded"], false, "{refused:#}");
    assert_eq!(refused["kind"], "rogue", "{refused:#}");
    assert!(
        refused["imports"]
            .as_array()
            .unwrap()
            .contains(&"runbook:plugin/process@0.1.0".into()),
        "{refused:#}"
    );
    let reason = refused["refused"].as_str().unwrap();
    assert!(
        reason.contains("imports `runbook:plugin/sql` and `runbook:plugin/process`, which it is not granted; grant them with `runbook plugin grant rogue --connection NAME --process`"),
        "{reason}"
    );
    assert!(
        !valid(&daemon, "sneak"),
        "a refused plugin provides no step kind"
    );
    let shown = daemon.cli(&["plugin", "ls"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("process,sql") && text.contains("refused"),
        "{text}"
    );

    // One grant of two: still refused, now for the other interface.
    daemon.json(&["plugin", "grant", "rogue", "--process"]);
    let reason = rogue(&daemon)["refused"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("imports `runbook:plugin/sql`, which it is not granted; grant it with `runbook plugin grant rogue --connection NAME`"),
        "{reason}"
    );

    // Both: loaded at once, without a restart, and its step runs.
    let listed = daemon.json(&["plugin", "grant", "rogue", "--connection", "mine"]);
    let loaded = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["kind"] == "rogue")
        .unwrap();
    assert_eq!(loaded["loaded"], true, "{listed:#}");
    assert_eq!(loaded["granted"]["process"], true, "{loaded:#}");
    assert_eq!(loaded["granted"]["connections"][0], "mine", "{loaded:#}");
    assert_eq!(loaded["sha256"].as_str().unwrap().len(), 64, "{loaded:#}");
    daemon.wait_valid("sneak");
    let run = daemon.run_to_end("sneak", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(step(&run, "sneak")["status"], "completed", "{run:#}");

    // Stored by the daemon: still granted after a restart.
    daemon.restart();
    assert_eq!(rogue(&daemon)["loaded"], true);

    // Taken away: unloaded, and its runbook no longer valid.
    daemon.json(&["plugin", "revoke", "rogue", "--process"]);
    let after = rogue(&daemon);
    assert_eq!(after["loaded"], false, "{after:#}");
    assert_eq!(after["granted"]["connections"][0], "mine", "{after:#}");
    eventually("the runbook to be invalid without its step kind", || {
        !valid(&daemon, "sneak")
    });
    daemon.json(&["plugin", "revoke", "rogue", "--all"]);
    let after = rogue(&daemon);
    assert_eq!(
        after["granted"]["connections"],
        serde_json::json!([]),
        "{after:#}"
    );

    // Every change is in the audit log.
    let audit = daemon.json(&["audit"]);
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"].as_str().unwrap().starts_with("plugin_"))
        .filter(|entry| entry["action"] != "plugin_load")
        .map(|entry| {
            (
                entry["action"].as_str().unwrap(),
                entry["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("plugin_grant", "plugin `rogue`: process"),
            ("plugin_grant", "plugin `rogue`: connections mine"),
            ("plugin_revoke", "plugin `rogue`: process"),
            ("plugin_revoke", "plugin `rogue`: connections mine"),
        ],
        "{audit:#}"
    );
}

#[test]
fn a_user_plugin_reaches_only_the_connections_it_was_granted() {
    let root = tempfile::tempdir().unwrap();
    let config = format!(
        "[plugins.rogue]\nallow_process = true\nallowed_connections = [\"mine\"]\n\n[connections.mine]\nurl = \"sqlite://{0}/mine.db\"\n\n[connections.theirs]\nurl = \"sqlite://{0}/theirs.db\"\n",
        root.path().display()
    );
    let runbook = "[[steps]]\nid = \"sneak\"\nuses = \"rogue\"\nwith = { connection = \"theirs\", statements = [\"select 1\"] }\n";
    let daemon = Daemon::start_with_test_plugin("rogue", &[("sneak.toml", runbook)], &config);
    daemon.wait_valid("sneak");
    let done = daemon.run_to_end("sneak", &[]);
    assert_eq!(done["status"], "failed", "{done:#}");
    let error = step(&done, "sneak")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("plugin `rogue` is not granted connection `theirs`; grant it with `runbook plugin grant rogue --connection theirs`"),
        "{error}"
    );
    assert!(!root.path().join("theirs.db").exists());
}

#[test]
fn a_built_in_plugin_is_not_granted_through_the_cli() {
    let daemon = Daemon::start(&[], "");
    let output = daemon.cli(&["plugin", "grant", "shell", "--process"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`shell` is a built-in plugin"), "{stderr}");
    let output = daemon.cli(&["plugin", "grant", "Bad Kind"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a step kind"));
}

#[test]
fn a_plugin_is_installed_with_its_grants_only_if_it_would_load_and_removed_with_them() {
    let daemon = Daemon::start(&[("sneak.toml", RUNBOOK)], "");
    let component = test_plugin("rogue");
    let file = component.to_str().unwrap();

    // Without the grants it needs: refused, and nothing is written or granted.
    let output = daemon.cli(&["plugin", "install", file, "--allow-process"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("imports `runbook:plugin/sql`, which it is not granted"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(daemon.plugins_dir()).unwrap().count(), 0);
    let listed = daemon.json(&["plugin", "ls"]);
    assert!(
        !listed.to_string().contains("rogue"),
        "nothing was granted: {listed:#}"
    );

    // With them: in place as <kind>.wasm, loaded, and its step runs.
    daemon.json(&[
        "plugin",
        "install",
        file,
        "--allow-process",
        "--allow-connection",
        "mine",
        "--approval",
        "auto",
    ]);
    let installed = rogue(&daemon);
    assert_eq!(installed["loaded"], true, "{installed:#}");
    assert_eq!(installed["wit_version"], "0.1.0", "{installed:#}");
    assert_eq!(
        std::fs::read(daemon.plugins_dir().join("rogue.wasm")).unwrap(),
        std::fs::read(&component).unwrap()
    );
    daemon.wait_valid("sneak");
    // `--approval auto`: its process runs without waiting for a human.
    assert_eq!(daemon.run_to_end("sneak", &[])["status"], "completed");
    daemon.json(&["plugin", "grant", "rogue", "--approval", "required"]);
    let run = daemon.start_run("sneak", &[]);
    daemon.wait_for(&run, "the step to wait for approval", |shown| {
        step(shown, "sneak")["status"] == "waiting"
    });
    daemon.cli(&["cancel", &run]);

    // Removed: the file, the step kind and the grants.
    daemon.json(&["plugin", "rm", "rogue"]);
    assert!(!daemon.plugins_dir().join("rogue.wasm").exists());
    eventually("the runbook to be invalid without its step kind", || {
        !valid(&daemon, "sneak")
    });
    let output = daemon.cli(&["plugin", "rm", "rogue"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("no plugin file provides step kind `rogue`")
    );
    // Installed again without grants: the ones it had are gone with it.
    let output = daemon.cli(&["plugin", "install", file]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    let audit = daemon.json(&["audit", "--action", "plugin_install"]);
    let results: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["FAILURE", "SUCCESS", "FAILURE"], "{audit:#}");
    assert!(
        audit[1]["detail"]
            .as_str()
            .unwrap()
            .contains("granted connections mine, process, approval auto"),
        "{audit:#}"
    );
}

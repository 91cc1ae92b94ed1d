//! The audit log: every request that changes something, or tries to, is recorded durably
//! before it is answered, with who asked (from the socket's peer credentials), what it acted
//! on and how it ended; `runbook audit` reads it back in order, and no secret value is ever
//! in it.

use std::io::Write as _;
use std::process::Stdio;

use runbook_e2e::{Daemon, block_on, step_status};
use runbook_protocol::v1::{GetRunbookRequest, SaveRunbookRequest};
use serde_json::Value;

const CANARY: &str = "canary-value-7f3a9c-never-shown";

/// One shell step that needs an approval (the default for shell) and reads a secret.
const DEPLOY: &str = r#"
[[steps]]
id = "go"
uses = "shell"
with = { command = ["true"], env = { TOKEN = "{{ secrets.token }}" } }
"#;

fn ok(daemon: &Daemon, args: &[&str]) {
    let output = daemon.cli(args);
    assert!(
        output.status.success(),
        "runbook {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn refused(daemon: &Daemon, args: &[&str]) {
    let output = daemon.cli(args);
    assert!(!output.status.success(), "runbook {args:?} was accepted");
}

/// Waits until run `id`'s step `go` waits for approval.
fn waiting(daemon: &Daemon, id: &str) {
    daemon.wait_for(id, "the approval request", |shown| {
        step_status(shown, "go") == "waiting"
    });
}

/// Connects to the socket as user `nobody`: the daemon must refuse it. False when this
/// machine cannot (not root).
fn connect_as_nobody(daemon: &Daemon) -> bool {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: a connection from another user needs root to make");
        return false;
    }
    // The socket is private (its directory 0700, itself 0600): opened up here only so that
    // the daemon's own check, by peer credentials, is what refuses the stranger.
    use std::os::unix::fs::PermissionsExt as _;
    let run_dir = daemon.socket.parent().unwrap();
    for dir in [daemon.root.path(), run_dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!(
        "import os, socket\n\
         os.setgid(65534); os.setuid(65534)\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect({:?})\n\
         s.settimeout(10)\n\
         assert s.recv(1) == b''\n",
        daemon.socket.display().to_string()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "the stranger's connection was not closed");
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    for dir in [run_dir, daemon.root.path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    true
}

#[test]
fn every_change_is_audited_in_order_with_who_and_never_a_secret_value() {
    let mut daemon = Daemon::start_process(&[("deploy.toml", DEPLOY)], "");
    let mut set = daemon
        .cli_command(&["secret", "set", "token"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(CANARY.as_bytes())
        .unwrap();
    assert!(set.wait().unwrap().success());

    let approved = daemon.start_run("deploy", &[]);
    waiting(&daemon, &approved);
    ok(&daemon, &["approve", &approved, "go"]);
    let denied = daemon.start_run("deploy", &[]);
    waiting(&daemon, &denied);
    ok(&daemon, &["deny", &denied, "go", "--reason", "not today"]);
    let cancelled = daemon.start_run("deploy", &[]);
    waiting(&daemon, &cancelled);
    ok(&daemon, &["pause", &cancelled]);
    ok(&daemon, &["resume", &cancelled]);
    ok(&daemon, &["cancel", &cancelled]);
    // Refused requests are recorded too, with why.
    refused(&daemon, &["run", "nope"]);
    refused(&daemon, &["resolve", &approved, "go", "retry"]);
    refused(&daemon, &["complete", &approved, "go"]);

    // A save from the editor, then a rollback to the first version.
    block_on(async {
        let mut client = daemon.client().await;
        let detail = client
            .get_runbook(GetRunbookRequest {
                name: "deploy".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let saved = client
            .save_runbook(SaveRunbookRequest {
                runbook: "deploy".into(),
                source: DEPLOY.replace("[\"true\"]", "[\"echo\", \"saved\"]"),
                base_hash: detail.file_hash,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(saved.valid, "{saved:?}");
    });
    ok(&daemon, &["rollback", "deploy", "1"]);
    ok(&daemon, &["secret", "rm", "token"]);
    ok(&daemon, &["prune", "--max-runs", "1", "--dry-run"]);
    let stranger = connect_as_nobody(&daemon);
    // The entry of a stop is durable when the daemon is gone: read after a restart.
    ok(&daemon, &["daemon", "stop"]);
    daemon.restart();

    let entries = daemon.json(&["audit"]);
    let entries = entries.as_array().unwrap();
    let said: Vec<(String, String)> = entries
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected: Vec<(&str, &str)> = vec![
        // The runbook file the daemon found at its start, its first version.
        ("reload", "SUCCESS"),
        ("secret_set", "SUCCESS"),
        ("start", "SUCCESS"),
        ("approve", "SUCCESS"),
        ("start", "SUCCESS"),
        ("deny", "SUCCESS"),
        ("start", "SUCCESS"),
        ("pause", "SUCCESS"),
        ("resume", "SUCCESS"),
        ("cancel", "SUCCESS"),
        ("start", "FAILURE"),
        ("resolve", "FAILURE"),
        ("complete", "FAILURE"),
        ("save", "SUCCESS"),
        ("rollback", "SUCCESS"),
        ("secret_rm", "SUCCESS"),
        ("prune_dry_run", "SUCCESS"),
    ];
    if stranger {
        expected.push(("connect", "DENIED"));
    }
    expected.push(("shutdown", "SUCCESS"));
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(action, result)| (action.to_owned(), result.to_owned()))
        .collect();
    assert_eq!(said, expected, "{entries:#?}");
    // From here on, the requests made through the socket, by their place in the list.
    let entries: Vec<Value> = entries
        .iter()
        .filter(|entry| entry["action"] != "reload")
        .cloned()
        .collect();

    // Who: the peer's uid and its name, here this test's own.
    let uid = rustix::process::getuid().as_raw();
    for entry in entries.iter().filter(|entry| entry["action"] != "connect") {
        assert_eq!(entry["uid"], uid, "{entry:#}");
        assert!(entry["user"].as_str().is_some_and(|user| !user.is_empty()));
    }
    if stranger {
        let refusal = entries.iter().find(|e| e["action"] == "connect").unwrap();
        assert_eq!(refusal["uid"], 65534, "{refusal:#}");
        assert!(
            refusal["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("only uid {uid}")),
            "{refusal:#}"
        );
    }
    // What: runs by their full id, steps, secrets by name; refusals with their reason.
    let approve = &entries[2];
    assert_eq!(approve["run"], approved.as_str());
    assert_eq!(approve["step"], "go");
    assert_eq!(approve["runbook"], "deploy");
    assert_eq!(entries[0]["secret"], "token");
    assert!(
        entries[9]["detail"]
            .as_str()
            .unwrap()
            .contains("no runbook named `nope`"),
        "{:#}",
        entries[9]
    );
    for refusal in &entries[10..12] {
        assert!(
            refusal["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(approved.as_str())),
            "a refusal says why: {refusal:#}"
        );
    }
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains(CANARY), "a secret value in the audit log");
    // Nor in the daemon's logs, where each entry is also an AUDIT event.
    let logs: String = std::fs::read_dir(daemon.data_dir.join("logs"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("event_type=\"AUDIT\"") || logs.contains("event_type=AUDIT"));
    assert!(!logs.contains(CANARY), "a secret value in the logs");

    // Filters: by action, by run (a prefix works, as everywhere), and the table.
    let approvals = daemon.json(&["audit", "--action", "approve"]);
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals:#}");
    let of_run = daemon.json(&["audit", "--run", &approved[..20]]);
    let actions: Vec<&str> = of_run
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start", "approve", "resolve", "complete"]);
    let recent = daemon.json(&["audit", "--since", "1h", "--limit", "2"]);
    let recent: Vec<&Value> = recent.as_array().unwrap().iter().collect();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[1]["action"], "shutdown");
    let table = daemon.cli(&["audit", "--action", "deny"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("deny") && table.contains(&format!("deploy {denied}/go")),
        "{table}"
    );
}

#[test]
fn json_logs_carry_each_audit_entry_as_a_structured_event() {
    let daemon = Daemon::prepare(&[("deploy.toml", DEPLOY)], "");
    let mut child = daemon
        .command()
        .env("RUNBOOK_LOG_FORMAT", "json")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !daemon.cli(&["status"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "runbookd never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    refused(&daemon, &["run", "nope"]);
    ok(&daemon, &["daemon", "stop"]);
    assert!(child.wait().unwrap().success());

    let logs: String = std::fs::read_dir(daemon.data_dir.join("logs"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let audit: Vec<&Value> = lines
        .iter()
        .filter(|line| line["fields"]["event_type"] == "AUDIT")
        .collect();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|line| {
            (
                line["fields"]["action"].as_str().unwrap(),
                line["fields"]["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("reload", "SUCCESS"),
            ("start", "FAILURE"),
            ("shutdown", "SUCCESS")
        ]
    );
    assert_eq!(audit[1]["fields"]["runbook"], "nope");

    let bad = daemon
        .command()
        .env("RUNBOOK_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("RUNBOOK_LOG_FORMAT"), "{stderr}");
}

/// The entries of `action`, once there are `count` of them (the watcher records a change a
/// debounce window after it happens).
fn wait_for_entries(daemon: &Daemon, action: &str, count: usize) -> Vec<Value> {
    wait_for_entries_where(daemon, action, |entries| entries.len() >= count)
}

/// The `action` entries of the audit log once `enough` holds for them.
fn wait_for_entries_where(
    daemon: &Daemon,
    action: &str,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let entries = daemon.json(&["audit", "--action", action]);
        let entries = entries.as_array().unwrap().clone();
        if enough(&entries) {
            return entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{action}` entries expected, found {entries:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn plugins_loaded_refused_and_removed_by_the_watcher_are_audited_with_the_files_owner() {
    let daemon = Daemon::start(&[], "");
    let plugins = daemon.plugins_dir();
    std::fs::create_dir_all(&plugins).unwrap();
    // Installed as the plugin guide says, by a rename: a copy in place may be seen (and
    // loaded, and audited) twice, half-written and whole.
    let probe = plugins.join("probe.wasm");
    let part = plugins.join(".probe.wasm.part");
    std::fs::copy(runbook_e2e::probe_plugin(), &part).unwrap();
    std::fs::rename(&part, &probe).unwrap();
    let loaded = wait_for_entries(&daemon, "plugin_load", 1);
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&probe).unwrap().uid()
    };
    assert_eq!(loaded[0]["result"], "SUCCESS", "{loaded:#?}");
    assert_eq!(loaded[0]["uid"], owner, "{loaded:#?}");
    let detail = loaded[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("probe.wasm") && detail.contains("`probe` loaded"),
        "{detail}"
    );

    std::fs::write(plugins.join("broken.wasm"), b"not a component").unwrap();
    let names_broken = |entry: &Value| entry["detail"].as_str().unwrap().contains("broken.wasm");
    let entries = wait_for_entries_where(&daemon, "plugin_load", |entries| {
        entries.iter().any(names_broken)
    });
    let refused = entries.iter().find(|entry| names_broken(entry)).unwrap();
    assert_eq!(refused["result"], "FAILURE", "{entries:#?}");

    std::fs::remove_file(&probe).unwrap();
    let unloaded = wait_for_entries(&daemon, "plugin_unload", 1);
    assert_eq!(unloaded[0]["result"], "SUCCESS", "{unloaded:#?}");
    assert!(
        unloaded[0]["detail"]
            .as_str()
            .unwrap()
            .contains("`probe` unloaded"),
        "{unloaded:#?}"
    );
}

#[test]
fn runbook_files_changed_on_disk_are_audited_as_reloads_with_the_version_or_the_error() {
    let daemon = Daemon::start(&[("deploy.toml", DEPLOY)], "");
    let file = daemon.runbooks.join("deploy.toml");
    std::fs::write(&file, DEPLOY.replace("[\"true\"]", "[\"echo\", \"v2\"]")).unwrap();
    // The first entry is the file as the daemon found it at its start.
    let reloaded = wait_for_entries(&daemon, "reload", 2);
    let details: Vec<&str> = reloaded
        .iter()
        .map(|entry| entry["detail"].as_str().unwrap())
        .collect();
    assert!(details[0].starts_with("version 1 from "), "{details:?}");
    assert_eq!(reloaded[1]["result"], "SUCCESS", "{reloaded:#?}");
    assert_eq!(reloaded[1]["runbook"], "deploy", "{reloaded:#?}");
    assert!(
        details[1].starts_with("version 2 from ") && details[1].ends_with("deploy.toml"),
        "{details:?}"
    );

    std::fs::write(
        &file,
        "[[steps]]\nid = \"go\"\nuses = \"shell\"\nwith = {\n",
    )
    .unwrap();
    let refused = wait_for_entries(&daemon, "reload", 3);
    assert_eq!(refused[2]["result"], "FAILURE", "{refused:#?}");
    assert_eq!(refused[2]["runbook"], "deploy", "{refused:#?}");
    let detail = refused[2]["detail"].as_str().unwrap();
    assert!(
        detail.contains("is invalid, the last good version stays: line 4, column"),
        "{detail}"
    );
}

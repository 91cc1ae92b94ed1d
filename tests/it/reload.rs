//! Hot reload: editors' save patterns, invalid saves, runs pinned to their version, version
//! history with diff and rollback, and plugins dropped into the plugins directory.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, PATIENCE, block_on, eventually, probe_plugin, save_by_rename, step};
use runbook_protocol::v1::daemon_event::Kind;
use runbook_protocol::v1::{GetRunbookRequest, ListVersionsRequest};

const AUTO: &str = "[approvals]\nshell = \"auto\"\nprobe = \"auto\"\n";

/// A valid runbook whose step prints `word`.
fn printing(word: &str) -> String {
    format!(
        "description = \"prints {word}\"\n\n[[steps]]\nid = \"say\"\nuses = \"shell\"\n\
         with = {{ command = [\"echo\", \"{word}\"] }}\n"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The daemon's event stream (`WatchDaemon`), open from the moment this returns.
async fn daemon_events(socket: &Path) -> tonic::Streaming<runbook_protocol::v1::DaemonEvent> {
    let channel = runbook_protocol::connect(socket).await.unwrap();
    runbook_protocol::v1::runbook_client::RunbookClient::new(channel)
        .watch_daemon(runbook_protocol::v1::WatchDaemonRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn runbook_entry(daemon: &Daemon, name: &str) -> Option<serde_json::Value> {
    daemon
        .json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .find(|rb| rb["name"] == name)
        .cloned()
}

/// The daemon's version list of `name`: (number, hash, cause).
fn versions(daemon: &Daemon, name: &str) -> Vec<(u32, String, String)> {
    block_on(async {
        let mut client = daemon.client().await;
        match client
            .list_versions(ListVersionsRequest {
                runbook: name.to_owned(),
            })
            .await
        {
            Ok(response) => response
                .into_inner()
                .versions
                .into_iter()
                .map(|v| (v.number, v.version, v.cause))
                .collect(),
            Err(_) => Vec::new(),
        }
    })
}

fn loaded_source(daemon: &Daemon, name: &str) -> Option<String> {
    block_on(async {
        let mut client = daemon.client().await;
        client
            .get_runbook(GetRunbookRequest {
                name: name.to_owned(),
            })
            .await
            .ok()
            .map(|detail| detail.into_inner().source)
    })
}

/// One save of `content` to `path` in the manner of editor `pattern`.
fn save(path: &Path, content: &str, pattern: usize) {
    match pattern % 4 {
        // Write a temporary file, rename it over (vim with backupcopy=no, VS Code, JetBrains).
        0 => save_by_rename(path, content),
        // Truncate, then write in pieces (nano, most simple editors).
        1 => {
            let mut file = std::fs::File::create(path).unwrap();
            let (head, tail) = content.split_at(content.len() / 2);
            file.write_all(head.as_bytes()).unwrap();
            file.flush().unwrap();
            file.write_all(tail.as_bytes()).unwrap();
        }
        // Delete, then create again.
        2 => {
            std::fs::remove_file(path).unwrap();
            std::fs::write(path, content).unwrap();
        }
        // Several writes in a burst, the last one final.
        _ => {
            std::fs::write(path, format!("# being replaced {}\n", content.len())).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }
}

#[test]
fn a_thousand_rapid_saves_end_with_each_files_final_content_and_no_duplicate_versions() {
    let names = ["alpha", "beta", "gamma", "delta"];
    let initial: Vec<(String, String)> = names
        .iter()
        .map(|name| (format!("{name}.toml"), printing("start")))
        .collect();
    let initial: Vec<(&str, &str)> = initial
        .iter()
        .map(|(file, content)| (file.as_str(), content.as_str()))
        .collect();
    let daemon = Daemon::start(&initial, AUTO);
    std::fs::create_dir(daemon.runbooks.join("nested")).unwrap();

    let mut finals = Vec::new();
    for save_number in 0..1000 {
        let name = names[save_number % names.len()];
        // One runbook lives in a subdirectory, created after the daemon started.
        let path = if name == "delta" {
            daemon.runbooks.join("nested").join("delta.toml")
        } else {
            daemon.runbooks.join(format!("{name}.toml"))
        };
        if name == "delta" && save_number < names.len() {
            std::fs::remove_file(daemon.runbooks.join("delta.toml")).unwrap();
            std::fs::write(&path, printing("moved")).unwrap();
        }
        let content = printing(&format!("save-{save_number}"));
        save(&path, &content, save_number / names.len());
        finals.push((name, path, content));
        // Now and then a pause, so some intermediate contents become versions too.
        if save_number % 97 == 0 {
            std::thread::sleep(Duration::from_millis(120));
        }
    }
    finals.reverse();
    let mut seen = HashSet::new();
    finals.retain(|(name, ..)| seen.insert(*name));

    for (name, path, content) in &finals {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), content);
        eventually(&format!("{name} to load its final content"), || {
            loaded_source(&daemon, name).as_deref() == Some(content.as_str())
        });
        let history = versions(&daemon, name);
        let hashes: HashSet<&String> = history.iter().map(|(_, hash, _)| hash).collect();
        assert_eq!(
            hashes.len(),
            history.len(),
            "{name}: a content appears twice in {history:?}"
        );
        assert!(history.len() >= 2, "{name}: {history:?}");
        let numbers: Vec<u32> = history.iter().map(|(number, ..)| *number).collect();
        assert_eq!(numbers, (1..=history.len() as u32).collect::<Vec<_>>());
    }
    // Nothing but the four runbooks: no temp or swap file was taken for one.
    let listed: Vec<String> = daemon
        .json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|rb| rb["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["alpha", "beta", "delta", "gamma"]);
}

#[test]
fn an_invalid_save_keeps_the_last_good_version_runnable_until_fixed() {
    let daemon = Daemon::start(&[("deploy.toml", &printing("good"))], AUTO);
    let path = daemon.runbooks.join("deploy.toml");
    let good = versions(&daemon, "deploy");
    assert_eq!(good.len(), 1);

    save_by_rename(&path, &printing("good").replace("uses", "usez"));
    eventually("the invalid save to show", || {
        runbook_entry(&daemon, "deploy").is_some_and(|rb| rb["valid"] == false)
    });
    let entry = runbook_entry(&daemon, "deploy").unwrap();
    assert_eq!(entry["version"], good[0].1.as_str(), "{entry:#}");
    let diagnostic = &entry["diagnostics"][0];
    assert_eq!(diagnostic["line"], 5, "{entry:#}");
    assert_eq!(diagnostic["column"], 1, "{entry:#}");
    let listed = text(&daemon.cli(&["ls"]).stdout);
    assert!(
        listed.contains("deploy.toml:5:1"),
        "ls shows where: {listed}"
    );

    let run = daemon.start_run("deploy", &[]);
    let done = daemon.wait_for(&run, "the run", |run| run["status"] == "completed");
    assert_eq!(done["version"], good[0].1.as_str());
    assert_eq!(step(&done, "say")["output"]["stdout"], "good\n");

    save_by_rename(&path, &printing("fixed"));
    eventually("the fix to become version 2", || {
        versions(&daemon, "deploy").len() == 2
    });
    let entry = runbook_entry(&daemon, "deploy").unwrap();
    assert_eq!(entry["valid"], true);
    assert_eq!(entry["diagnostics"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_run_started_before_an_edit_finishes_with_its_own_version() {
    let gated = |word: &str| {
        printing(word).replace("uses = \"shell\"", "uses = \"shell\"\napproval = true")
    };
    let daemon = Daemon::start(&[("deploy.toml", &gated("old"))], AUTO);
    let run = daemon.start_run("deploy", &[]);
    daemon.wait_for(&run, "the approval", |run| {
        runbook_e2e::step_status(run, "say") == "waiting"
    });

    save_by_rename(&daemon.runbooks.join("deploy.toml"), &gated("new"));
    eventually("version 2", || versions(&daemon, "deploy").len() == 2);
    assert!(daemon.cli(&["approve", &run, "say"]).status.success());
    let done = daemon.wait_for(&run, "the old run", |run| run["status"] == "completed");
    assert_eq!(step(&done, "say")["output"]["stdout"], "old\n");

    let newer = daemon.start_run("deploy", &[]);
    daemon.wait_for(&newer, "the approval", |run| {
        runbook_e2e::step_status(run, "say") == "waiting"
    });
    assert!(daemon.cli(&["approve", &newer, "say"]).status.success());
    let done = daemon.wait_for(&newer, "the new run", |run| run["status"] == "completed");
    assert_eq!(step(&done, "say")["output"]["stdout"], "new\n");
}

#[test]
fn versions_diff_and_rollback_work_through_the_cli() {
    let daemon = Daemon::start(&[("deploy.toml", &printing("one"))], AUTO);
    let path = daemon.runbooks.join("deploy.toml");
    let first = std::fs::read(&path).unwrap();
    for (number, word) in [(2, "two"), (3, "three")] {
        save_by_rename(&path, &printing(word));
        eventually(&format!("version {number}"), || {
            versions(&daemon, "deploy").len() == number
        });
    }
    // Saving identical content adds no version.
    save_by_rename(&path, &printing("three"));

    let listed = daemon.json(&["versions", "deploy"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    assert_eq!(listed[2]["current"], true);
    assert_eq!(listed[0]["cause"], "file");

    let diff = daemon.cli(&["diff", "deploy", "1", "3"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stderr));
    let diff = text(&diff.stdout);
    assert!(diff.contains("-description = \"prints one\""), "{diff}");
    assert!(diff.contains("+description = \"prints three\""), "{diff}");
    let to_current = text(&daemon.cli(&["diff", "deploy", "2"]).stdout);
    assert!(
        to_current.contains("+with = { command = [\"echo\", \"three\"] }"),
        "{to_current}"
    );

    let rolled = daemon.cli(&["rollback", "deploy", "1"]);
    assert_eq!(rolled.status.code(), Some(0), "{}", text(&rolled.stderr));
    assert_eq!(std::fs::read(&path).unwrap(), first, "byte for byte");
    let history = versions(&daemon, "deploy");
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].1, history[0].1);
    assert!(
        history[3].2.starts_with("rollback to #1 by "),
        "{:?}",
        history[3]
    );
    // The watcher sees the rollback's own write and adds nothing.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(versions(&daemon, "deploy").len(), 4);
    let run = daemon.start_run("deploy", &[]);
    let done = daemon.wait_for(&run, "the run", |run| run["status"] == "completed");
    assert_eq!(step(&done, "say")["output"]["stdout"], "one\n");

    let again = daemon.cli(&["rollback", "deploy", "4"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "already current is refused: {}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    let unknown = daemon.cli(&["rollback", "deploy", "9"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no version `9`"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn a_plugin_dropped_in_at_runtime_becomes_usable_and_a_corrupt_one_is_ignored() {
    let uses_probe = "[[steps]]\nid = \"p\"\nuses = \"probe\"\nwith = { mode = \"echo\" }\n";
    let daemon = Daemon::start(&[("probing.toml", uses_probe)], AUTO);
    let entry = runbook_entry(&daemon, "probing").unwrap();
    assert_eq!(entry["valid"], false, "no probe plugin yet: {entry:#}");

    // Watch the daemon's events from before the drop until the plugin is loaded.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = {
        let socket = daemon.socket.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let mut stream = daemon_events(&socket).await;
                ready_tx.send(()).unwrap();
                let mut seen = Vec::new();
                while let Some(event) = stream.message().await.unwrap() {
                    let loaded =
                        matches!(&event.kind, Some(Kind::PluginLoaded(p)) if p.kind == "probe");
                    seen.push(event.kind);
                    if loaded {
                        return seen;
                    }
                }
                seen
            })
        })
    };
    ready_rx.recv().unwrap();

    let plugins = daemon.plugins_dir();
    std::fs::write(plugins.join("broken.wasm"), b"\0asm but not really").unwrap();
    let probe = std::fs::read(probe_plugin()).unwrap();
    let staged = plugins.join("probe.wasm.part");
    std::fs::write(&staged, &probe).unwrap();
    std::fs::rename(&staged, plugins.join("probe.wasm")).unwrap();

    eventually("the probe kind", || {
        daemon.json(&["status"])["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kind| kind == "probe")
    });
    let seen = watcher.join().unwrap();
    assert!(
        seen.iter().any(|kind| matches!(kind, Some(Kind::PluginRejected(r)) if r.path.ends_with("broken.wasm") && !r.error.is_empty())),
        "the corrupt component is reported: {seen:?}"
    );
    eventually("the runbook to become valid", || {
        runbook_entry(&daemon, "probing").is_some_and(|rb| rb["valid"] == true)
    });
    let run = daemon.start_run("probing", &[]);
    daemon.wait_for(&run, "the probe step", |run| run["status"] == "completed");
    let kinds = daemon.json(&["status"])["plugins"].clone();
    assert_eq!(
        kinds,
        serde_json::json!([
            "database",
            "graphql",
            "http",
            "instruction",
            "probe",
            "shell",
            "wait"
        ]),
        "broken.wasm was not loaded"
    );

    std::fs::remove_file(plugins.join("probe.wasm")).unwrap();
    eventually("the probe kind to go", || {
        daemon.json(&["status"])["plugins"]
            == serde_json::json!([
                "database",
                "graphql",
                "http",
                "instruction",
                "shell",
                "wait"
            ])
    });
    let refused = daemon.cli(&["run", "probing"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("probe"),
        "{}",
        text(&refused.stderr)
    );
}

/// Reading a watched file is not changing it: the daemon's own reads of what it loads, and an
/// operator's `cat`, must not make it load the file again (and again).
#[test]
fn a_plugin_is_loaded_once_and_reading_it_or_a_runbook_reloads_nothing() {
    let daemon = Daemon::start(&[("deploy.toml", &printing("read me"))], AUTO);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let plugins = daemon.plugins_dir();
    let runbook = daemon.runbooks.join("deploy.toml");
    let watcher = {
        let socket = daemon.socket.clone();
        let (plugins, runbook) = (plugins.clone(), runbook.clone());
        std::thread::spawn(move || {
            block_on(async move {
                let mut stream = daemon_events(&socket).await;
                ready_tx.send(()).unwrap();
                let mut loads = 0;
                // Until the first load, then for a second (twenty debounce windows) after
                // the files were read.
                let mut quiet_until: Option<Instant> = None;
                loop {
                    let wait = match quiet_until {
                        None => PATIENCE,
                        Some(until) => match until.checked_duration_since(Instant::now()) {
                            Some(left) => left,
                            None => return loads,
                        },
                    };
                    let Ok(event) = tokio::time::timeout(wait, stream.message()).await else {
                        return loads;
                    };
                    let event = event.unwrap().expect("the event stream stays open");
                    if matches!(&event.kind, Some(Kind::PluginLoaded(p)) if p.kind == "probe") {
                        loads += 1;
                        if quiet_until.is_none() {
                            std::fs::read(plugins.join("probe.wasm")).unwrap();
                            std::fs::read(&runbook).unwrap();
                            loaded_tx.send(()).unwrap();
                            quiet_until = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            })
        })
    };
    ready_rx.recv().unwrap();
    std::fs::copy(probe_plugin(), plugins.join("probe.wasm")).unwrap();
    loaded_rx
        .recv_timeout(PATIENCE)
        .expect("the probe plugin is loaded");
    assert_eq!(watcher.join().unwrap(), 1, "the plugin was loaded once");
    assert_eq!(
        versions(&daemon, "deploy").len(),
        1,
        "reading the runbook made no version"
    );
}

#[test]
fn a_file_broken_while_the_daemon_was_down_keeps_its_last_good_version() {
    // The runbook's name differs from its file's name, as it may.
    let named = format!("name = \"deploy\"\n{}", printing("good"));
    let mut daemon = Daemon::start_process(&[("deploy-prod.toml", &named)], AUTO);
    let good = versions(&daemon, "deploy");
    assert_eq!(good.len(), 1);

    daemon.kill9();
    std::fs::write(
        daemon.runbooks.join("deploy-prod.toml"),
        "name = \"deploy\"\n[[steps]\n",
    )
    .unwrap();
    daemon.restart();

    let entry = runbook_entry(&daemon, "deploy").expect("still listed under its name");
    assert_eq!(entry["valid"], false, "{entry:#}");
    assert_eq!(entry["version"], good[0].1.as_str(), "{entry:#}");
    let run = daemon.start_run("deploy", &[]);
    let done = daemon.wait_for(&run, "the run", |run| run["status"] == "completed");
    assert_eq!(step(&done, "say")["output"]["stdout"], "good\n");
}

#[test]
fn an_open_event_stream_does_not_hold_up_a_shutdown() {
    let daemon = Daemon::start(&[], "");
    let socket = daemon.socket.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        block_on(async move {
            let mut stream = daemon_events(&socket).await;
            ready_tx.send(()).unwrap();
            // Ends (cleanly or not) when the daemon goes away.
            while let Ok(Some(_)) = stream.message().await {}
        });
    });
    ready_rx.recv().unwrap();
    let stopped = daemon.cli(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    watcher.join().unwrap();
}

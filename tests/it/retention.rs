//! Retention: `runbook prune` and the daemon's `[retention]` policy remove ended runs with
//! every record they own, never a run that has not ended; `--dry-run` changes nothing.

use std::path::Path;

use runbook_e2e::{Daemon, step_status};
use serde_json::Value;

const QUICK: &str =
    "[[steps]]\nid = \"hello\"\nuses = \"shell\"\nwith = { command = [\"echo\", \"hello\"] }\n";

/// A run that stays running until `gate` exists.
fn gated(gate: &Path) -> String {
    format!(
        "[[steps]]\nid = \"wait\"\nuses = \"shell\"\n\
         with = {{ script = \"while [ ! -e {} ]; do sleep 0.02; done; echo through\" }}\n",
        gate.display()
    )
}

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

fn ids(listed: &Value) -> Vec<String> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Per tree of the store, how many records run `id` owns there.
fn records_of(data_dir: &Path, id: &str) -> Vec<(&'static str, usize)> {
    // No flusher thread: it would hold the database's file lock after the handle is gone.
    let db = sled::Config::new()
        .path(data_dir.join("db"))
        .flush_every_ms(None)
        .open()
        .unwrap();
    let prefix = format!("{id}/");
    let mut counts: Vec<(&'static str, usize)> = ["steps", "outputs", "events"]
        .into_iter()
        .map(|tree| {
            let tree_handle = db.open_tree(tree).unwrap();
            (tree, tree_handle.scan_prefix(prefix.as_bytes()).count())
        })
        .collect();
    let header = db.open_tree("runs").unwrap().get(id.as_bytes()).unwrap();
    counts.push(("runs", usize::from(header.is_some())));
    counts
}

#[test]
fn prune_removes_ended_runs_with_every_record_and_never_one_that_runs() {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("go");
    let mut daemon = Daemon::start_process(
        &[("quick.toml", QUICK), ("gated.toml", &gated(&gate))],
        AUTO,
    );
    let ended: Vec<String> = (0..3)
        .map(|_| {
            let run = daemon.run_to_end("quick", &[]);
            assert_eq!(run["status"], "completed", "{run:#}");
            run["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let running = daemon.start_run("gated", &[]);
    daemon.wait_for(&running, "the gated step to run", |shown| {
        step_status(shown, "wait") == "running"
    });
    let all = ids(&daemon.json(&["runs"]));
    assert_eq!(all.len(), 4, "{all:?}");

    // A dry run names what would go, newest first, and removes nothing.
    let dry = daemon.json(&["prune", "--max-runs", "1", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        ids(&dry["runs"]),
        vec![ended[1].clone(), ended[0].clone()],
        "{dry:#}"
    );
    assert_eq!(ids(&daemon.json(&["runs"])), all);
    let text = daemon.cli(&["prune", "--max-runs", "1", "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("would remove 2 ended runs (dry run: nothing removed)"),
        "{text}"
    );

    // Nothing ended an hour ago.
    let none = daemon.json(&["prune", "--older-than", "1h"]);
    assert_eq!(ids(&none["runs"]), Vec::<String>::new(), "{none:#}");

    // The two oldest ended runs go; the newest ended run and the running one stay.
    let pruned = daemon.json(&["prune", "--max-runs", "1"]);
    assert_eq!(pruned["dry_run"], false);
    assert_eq!(
        ids(&pruned["runs"]),
        vec![ended[1].clone(), ended[0].clone()]
    );
    assert_eq!(
        ids(&daemon.json(&["runs"])),
        vec![running.clone(), ended[2].clone()]
    );
    let gone = daemon.cli(&["show", &ended[0]]);
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    let gone = daemon.cli(&["logs", &ended[1]]);
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");

    // Even `--older-than 0s` leaves a running run alone; it runs on to its end.
    let now = daemon.json(&["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(ids(&now["runs"]), vec![ended[2].clone()], "{now:#}");
    std::fs::write(&gate, "").unwrap();
    let finished = daemon.wait_for(&running, "the gated run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step_status(&finished, "wait"), "completed");

    // Nothing of the removed runs is left in the store; the kept ones are whole.
    daemon.terminate();
    for id in &ended[..2] {
        let left = records_of(&daemon.data_dir, id);
        assert!(
            left.iter().all(|(_, count)| *count == 0),
            "run {id} left {left:?}"
        );
    }
    for id in [&ended[2], &running] {
        let kept = records_of(&daemon.data_dir, id);
        assert!(
            kept.iter().all(|(_, count)| *count > 0),
            "run {id}: {kept:?}"
        );
    }
}

#[test]
fn the_retention_policy_prunes_at_start_and_an_unruled_prune_is_refused() {
    let mut daemon = Daemon::start_process(
        &[("quick.toml", QUICK)],
        &format!("{AUTO}[retention]\nmax_runs = 2\nruns = \"30d\"\n"),
    );
    let ended: Vec<String> = (0..4)
        .map(|_| {
            daemon.run_to_end("quick", &[])["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // A prune that names no rule applies the daemon's.
    let policy = daemon.json(&["prune", "--dry-run"]);
    assert_eq!(
        ids(&policy["runs"]),
        vec![ended[1].clone(), ended[0].clone()],
        "{policy:#}"
    );
    // A restart applies it by itself.
    daemon.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = ids(&daemon.json(&["runs"]));
        if listed == vec![ended[3].clone(), ended[2].clone()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never pruned: {listed:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let bare = Daemon::start(&[], "");
    let refused = bare.cli(&["prune"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("nothing to prune by") && stderr.contains("[retention]"),
        "{stderr}"
    );
    let zero = bare.cli(&["prune", "--max-runs", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
}

/// How many `prune_dry_run` entries the audit log holds.
fn dry_runs_audited(daemon: &Daemon) -> usize {
    daemon
        .json(&["audit", "--action", "prune_dry_run"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn audit_entries_older_than_their_retention_go_and_newer_ones_stay() {
    let mut daemon =
        Daemon::start_process(&[("quick.toml", QUICK)], "[retention]\naudit = \"300ms\"\n");
    daemon.json(&["prune", "--max-runs", "1", "--dry-run"]);
    assert_eq!(dry_runs_audited(&daemon), 1);
    // The sleep is the point: the entry must be older than its retention, and the daemon's
    // clock cannot be moved.
    std::thread::sleep(std::time::Duration::from_millis(400));
    daemon.restart();
    // The daemon prunes at start, beside its first answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while dry_runs_audited(&daemon) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired entry is still there"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.json(&["prune", "--max-runs", "1", "--dry-run"]);
    assert_eq!(dry_runs_audited(&daemon), 1);
}

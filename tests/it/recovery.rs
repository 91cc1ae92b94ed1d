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
        // No flusher thread: it would hold the database's file lock for a while after the
        // handle is dropped, and the restarted daemon could not open it.
        let db = sled::Config::new()
            .path(daemon.data_dir.join("db"))
            .flush_every_ms(None)
            .open()
            .unwrap();
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
    runbook_e2e::eventually("the step's sleep", || sleeping(&nap) == 1);

    daemon.kill9();
    daemon.restart();
    daemon.wait_for(&run, "the step to become ambiguous", |shown| {
        step_status(shown, "nap") == "ambiguous"
    });
    // Recovery sends SIGKILL before it records the step ambiguous, but a killed process
    // leaves /proc only once the kernel has torn it down, which a loaded machine may take a
    // moment to do; a sleep of 300 s that nobody kills would still be there.
    runbook_e2e::eventually(
        "the sleep the killed daemon's step started to be killed at recovery",
        || sleeping(&nap) == 0,
    );

    assert!(
        daemon
            .cli(&["resolve", &run, "nap", "retry"])
            .status
            .success()
    );
    runbook_e2e::eventually("the retry's sleep", || sleeping(&nap) >= 1);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sleeping(&nap), 1, "exactly one copy runs");

    assert!(daemon.cli(&["cancel", &run]).status.success());
    runbook_e2e::eventually("the cancel to kill the sleep", || sleeping(&nap) == 0);
}

/// A small seeded generator (xorshift64*), so that a failing torture run can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

/// Parallel and chained shell steps, each appending `RUN STEP` to the ledger when it runs.
fn ledger_runbook(ledger: &std::path::Path) -> String {
    let mut source = String::from("max_parallel = 2\n");
    for (id, needs) in [
        ("a", ""),
        ("b", "\"a\""),
        ("c", "\"a\""),
        ("d", "\"b\", \"c\""),
    ] {
        source.push_str(&format!(
            "\n[[steps]]\nid = \"{id}\"\nuses = \"shell\"\nneeds = [{needs}]\n\
             with = {{ script = \"sleep 0.$(( $$ % 3 + 1 )); printf '%s %s\\\\n' \\\"$RUN\\\" {id} >> {}\", env = {{ RUN = \"{{{{ run.id }}}}\" }} }}\n",
            ledger.display()
        ));
    }
    source
}

/// What a torture run found; every figure but `ambiguous` must be 0.
#[derive(Debug, Default)]
struct Torture {
    lost: usize,
    stuck: usize,
    completed_twice: usize,
    completed_never_run: usize,
    ambiguous: usize,
}

/// Starts `runs` runs of the ledger runbook in waves while the daemon is killed with SIGKILL
/// `kills` times at random moments, resolving every ambiguous step with `skip`; then checks
/// every acknowledged run against the ledger.
fn torture(runs: usize, kills: usize, seed: u64) -> Torture {
    let mut random = Random(seed | 1);
    let root = tempfile::tempdir().unwrap();
    let ledger = root.path().join("ledger");
    let mut daemon = Daemon::start_process(
        &[("ledger.toml", &ledger_runbook(&ledger))],
        // The kills here are the test's own, not crashes a run caused: with the crash-loop
        // guard on, every run being resumed at a kill would be failed instead of resumed.
        "[approvals]\nshell = \"auto\"\n[limits]\nresume_watch = \"0s\"\n",
    );
    let mut found = Torture::default();
    let mut acknowledged = Vec::new();
    let per_wave = runs.div_ceil(kills + 1);
    for wave in 0..=kills {
        for _ in 0..per_wave.min(runs - acknowledged.len()) {
            let output = daemon.cli(&["run", "ledger", "--json"]);
            if output.status.success() {
                let started: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                acknowledged.push(started["id"].as_str().unwrap().to_owned());
            }
        }
        if wave < kills {
            std::thread::sleep(std::time::Duration::from_millis(random.below(400)));
            daemon.kill9();
            daemon.restart();
        }
    }
    found.lost = runs - acknowledged.len();

    // Every run ends once its ambiguous steps are decided.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut ended = std::collections::HashMap::new();
    while ended.len() < acknowledged.len() && std::time::Instant::now() < deadline {
        for run in &acknowledged {
            if ended.contains_key(run) {
                continue;
            }
            let shown = daemon.json(&["show", run]);
            for step in shown["steps"].as_array().unwrap() {
                if step["status"] == "ambiguous" {
                    let id = step["id"].as_str().unwrap();
                    if daemon.cli(&["resolve", run, id, "skip"]).status.success() {
                        found.ambiguous += 1;
                    }
                }
            }
            if matches!(
                shown["status"].as_str(),
                Some("completed" | "failed" | "cancelled" | "timed_out")
            ) {
                ended.insert(run.clone(), shown);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    found.stuck = acknowledged.len() - ended.len();

    let written = std::fs::read_to_string(&ledger).unwrap_or_default();
    let mut times: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for line in written.lines() {
        *times.entry(line).or_default() += 1;
    }
    for (run, shown) in &ended {
        for step in shown["steps"].as_array().unwrap() {
            if step["status"] != "completed" {
                continue;
            }
            let line = format!("{run} {}", step["id"].as_str().unwrap());
            match times.get(line.as_str()).copied().unwrap_or(0) {
                0 => found.completed_never_run += 1,
                1 => {}
                _ => found.completed_twice += 1,
            }
        }
    }
    found
}

#[test]
fn kill_9_at_random_moments_loses_no_run_and_runs_no_completed_step_twice() {
    // `RUNBOOK_SOAK=1` runs the long version and prints its figures (docs/daemon.md).
    let soak = std::env::var_os("RUNBOOK_SOAK").is_some();
    let (runs, kills) = if soak { (200, 15) } else { (50, 5) };
    let seed = std::env::var("RUNBOOK_TORTURE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let found = torture(runs, kills, seed);
    eprintln!("torture (seed {seed}, {runs} runs, {kills} kills): {found:?}");
    assert_eq!(
        (
            found.lost,
            found.stuck,
            found.completed_twice,
            found.completed_never_run
        ),
        (0, 0, 0, 0),
        "seed {seed} (replay with RUNBOOK_TORTURE_SEED): {found:?}"
    );
}

#[test]
fn a_stop_gives_running_steps_their_grace_then_leaves_the_rest_to_recovery() {
    let root = tempfile::tempdir().unwrap();
    let quick = root.path().join("quick");
    let runbook = format!(
        r#"
max_parallel = 2

[[steps]]
id = "quick"
uses = "shell"
with = {{ command = ["sh", "-c", "sleep 1; echo done > {}"] }}

[[steps]]
id = "long"
uses = "shell"
with = {{ command = ["sleep", "60"] }}
"#,
        quick.display()
    );
    let mut daemon = Daemon::start_process(
        &[("graceful.toml", &runbook)],
        "[approvals]\nshell = \"auto\"\n[limits]\nshutdown_grace = \"3s\"\n",
    );
    let run = daemon.start_run("graceful", &[]);
    daemon.wait_for(&run, "both steps to run", |shown| {
        step_status(shown, "quick") == "running" && step_status(shown, "long") == "running"
    });
    let stopped = daemon.cli(&["daemon", "stop"]);
    let said = String::from_utf8_lossy(&stopped.stdout).into_owned();
    assert!(stopped.status.success(), "{said}");
    assert!(
        said.contains(&run) && said.contains("left to crash recovery"),
        "the stop names the run in flight: {said}"
    );
    assert!(said.contains("stopped"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&quick).unwrap_or_default(),
        "done\n",
        "the quick step finished within the grace period"
    );

    daemon.restart();
    let shown = daemon.wait_for(&run, "the long step to become ambiguous", |shown| {
        step_status(shown, "long") == "ambiguous"
    });
    assert_eq!(step_status(&shown, "quick"), "completed", "{shown:#}");
}

/// Two steps that run until killed, one at a time: a start that resumes the run after a
/// kill has a step to start.
fn hanging_runbook() -> String {
    r#"
max_parallel = 1

[[steps]]
id = "hang"
uses = "shell"
with = { command = ["sleep", "60"] }

[[steps]]
id = "next"
uses = "shell"
with = { command = ["sleep", "60"] }
"#
    .to_owned()
}

#[test]
fn a_run_being_resumed_when_the_daemon_dies_again_is_failed_not_resumed_at_every_start() {
    let mut daemon = Daemon::start_process(
        &[("hang.toml", &hanging_runbook())],
        "[approvals]\nshell = \"auto\"\n[limits]\nresume_watch = \"10m\"\n",
    );
    let suspect = daemon.start_run("hang", &[]);
    daemon.wait_for(&suspect, "the step to run", |shown| {
        step_status(shown, "hang") == "running"
    });
    // The first restart resumes the run (the interrupted step is ambiguous: a shell step may
    // have had its effect; the other one starts) and records that it is resuming it.
    daemon.restart();
    daemon.wait_for(&suspect, "the other step to run", |shown| {
        step_status(shown, "hang") == "ambiguous" && step_status(shown, "next") == "running"
    });
    assert!(
        daemon.data_dir.join("resuming.json").exists(),
        "the runs being resumed are on record until the watch has passed"
    );
    // A run started after that start is no suspect of it.
    let bystander = daemon.start_run("hang", &[]);
    daemon.wait_for(&bystander, "the step to run", |shown| {
        step_status(shown, "hang") == "running"
    });

    // The daemon dies again within the watch: the run it was resuming is failed, not resumed.
    daemon.restart();
    let shown = daemon.wait_for(&suspect, "the run to end", |shown| {
        shown["status"] == "failed"
    });
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not resumed") && error.contains("resume_watch"),
        "the reason says why and what to change: {shown:#}"
    );
    assert_eq!(step_status(&shown, "next"), "ambiguous", "{shown:#}");
    let bystander_shown = daemon.wait_for(&bystander, "its other step to run", |shown| {
        step_status(shown, "next") == "running"
    });
    assert_ne!(bystander_shown["status"], "failed", "{bystander_shown:#}");
    // The bystander was resumed this time, so it is on record now; the suspect is not.
    let record = std::fs::read_to_string(daemon.data_dir.join("resuming.json")).unwrap();
    assert!(
        record.contains(&bystander) && !record.contains(&suspect),
        "{record}"
    );

    // A clean stop is no crash: nothing is suspect at the next start.
    daemon.cli(&["daemon", "stop"]);
    assert!(!daemon.data_dir.join("resuming.json").exists());
}

#[test]
fn runs_resumed_by_a_start_that_stayed_up_for_the_watch_are_resumed_again() {
    let mut daemon = Daemon::start_process(
        &[("hang.toml", &hanging_runbook())],
        "[approvals]\nshell = \"auto\"\n[limits]\nresume_watch = \"3s\"\n",
    );
    let run = daemon.start_run("hang", &[]);
    daemon.wait_for(&run, "the step to run", |shown| {
        step_status(shown, "hang") == "running"
    });
    daemon.restart();
    let record = daemon.data_dir.join("resuming.json");
    assert!(
        record.exists(),
        "the resumed run is on record for the watch"
    );
    let deadline = std::time::Instant::now() + runbook_e2e::PATIENCE;
    while record.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the record of resumed runs outlived the watch"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.restart();
    let shown = daemon.wait_for(&run, "the run to be resumed", |shown| {
        step_status(shown, "next") == "ambiguous" && shown["status"] != "running"
    });
    assert_ne!(shown["status"], "failed", "{shown:#}");
}

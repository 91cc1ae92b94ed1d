//! The terminal UI in a real terminal (tmux) against the real daemon: launching, approving and
//! watching a run, editing and saving a runbook, and reconnecting after a daemon restart.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, PATIENCE, binary};

/// A tmux server of its own (a socket in the daemon's temporary directory) running the TUI in a
/// 120x40 window; the server is killed when this is dropped, also when a test panics.
struct Terminal {
    socket: PathBuf,
}

/// Whether tmux runs here. When it does not, the test fails under `CI=true` (`.ci/run` installs
/// it) and otherwise says on stderr that it is skipped, and the caller returns.
fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    runbook_e2e::required_here(
        "tmux (for the TUI tests)",
        if found {
            Ok(())
        } else {
            Err("`tmux -V` does not run".into())
        },
    )
}

impl Terminal {
    fn open(daemon: &Daemon) -> Self {
        let terminal = Self {
            socket: daemon.root.path().join("tmux.sock"),
        };
        let output = terminal.tmux(&[
            "new-session".as_ref(),
            "-d".as_ref(),
            "-x".as_ref(),
            "120".as_ref(),
            "-y".as_ref(),
            "40".as_ref(),
            binary("runbook").as_os_str(),
            "--socket".as_ref(),
            daemon.socket.as_os_str(),
            "--no-autostart".as_ref(),
        ]);
        assert!(
            output.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        terminal
    }

    fn tmux(&self, args: &[&std::ffi::OsStr]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed")
    }

    /// Sends tmux key names (`Enter`, `C-s`, `Home`, `a`, ...).
    fn keys(&self, keys: &[&str]) {
        let mut args: Vec<&std::ffi::OsStr> = vec!["send-keys".as_ref()];
        args.extend(keys.iter().map(std::ffi::OsStr::new));
        let output = self.tmux(&args);
        assert!(output.status.success(), "tmux send-keys {keys:?} failed");
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let output = self.tmux(&["send-keys".as_ref(), "-l".as_ref(), text.as_ref()]);
        assert!(output.status.success(), "tmux send-keys -l {text:?} failed");
    }

    /// The screen as text.
    fn screen(&self) -> String {
        let output = self.tmux(&["capture-pane".as_ref(), "-p".as_ref()]);
        assert!(
            output.status.success(),
            "tmux capture-pane failed (did the TUI exit?): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until `done` holds for it, and returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?} on the screen"), |screen| {
            screen.contains(text)
        })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server".as_ref()]);
    }
}

/// The run id in the run view's header (`Run 01J… · greet @… · status`).
fn run_id(screen: &str) -> String {
    screen
        .lines()
        .find_map(|line| line.trim().strip_prefix("Run "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run header on the screen:\n{screen}"))
        .to_owned()
}

/// The numbers of every `line-N` on the screen, top to bottom.
fn numbered_lines(screen: &str) -> Vec<u32> {
    screen
        .split("line-")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

const GREET: &str = r#"description = "greet from the tui"

[[steps]]
id = "hello"
uses = "shell"
with = { command = ["echo", "hello-from-tui"] }
"#;

#[test]
fn launch_approve_and_watch_a_run_then_edit_validate_and_save_the_runbook() {
    if !tmux_available() {
        return;
    }
    // No `shell = "auto"`: the shell step waits for approval.
    let daemon = Daemon::start(&[("greet.toml", GREET)], "");
    let terminal = Terminal::open(&daemon);
    terminal.wait_for("the runbook list, connected", |screen| {
        screen.contains("● runbookd") && screen.contains("greet from the tui")
    });

    // Launch: `r` opens the form (no params), Enter starts the run and opens its view.
    terminal.keys(&["r"]);
    terminal.wait_for_text("This runbook has no params.");
    terminal.keys(&["Enter"]);
    // The badge follows within a refresh of the approvals queue.
    let screen = terminal.wait_for("the step waiting, and the approvals badge", |screen| {
        screen.contains("approval (a / d)") && screen.contains("1 approval (A)")
    });
    let run = run_id(&screen);

    // `A` opens the queue with the exact plan; `a` approves it.
    terminal.keys(&["A"]);
    terminal.wait_for("the plan in the approvals queue", |screen| {
        screen.contains("Plan: greet / hello") && screen.contains("echo hello-from-tui")
    });
    terminal.keys(&["a"]);
    terminal.wait_for_text("Nothing waits for approval.");
    // Back to the run view, which shows it completed with the step's output.
    terminal.keys(&["Escape"]);
    let screen = terminal.wait_for("the run view of the completed run", |screen| {
        screen.contains(&format!("Run {run}"))
            && screen.contains("completed")
            && screen.contains("hello-from-tui")
            && screen.contains("ended")
    });
    assert!(screen.contains("✓ hello"), "{screen}");
    assert_eq!(daemon.json(&["show", &run])["status"], "completed");

    // `U` opens the audit log: the start and the approval of this run, newest first.
    terminal.keys(&["U"]);
    let screen = terminal.wait_for("the start and the approval in the audit log", |screen| {
        screen.contains("Audit log (") && screen.contains("approve") && screen.contains("start")
    });
    let approved = screen.find("approve").expect("an approve row");
    let started = screen.find("start ").expect("a start row");
    assert!(approved < started, "newest first:\n{screen}");
    assert!(screen.contains(&run[..12]), "{screen}");
    terminal.keys(&["Escape"]);
    terminal.wait_for_text(&format!("Run {run}"));

    // The editor: an unknown key is a problem marked at its line.
    terminal.keys(&["Escape"]);
    terminal.wait_for_text("Runbooks (1)");
    terminal.keys(&["e"]);
    terminal.wait_for("the editor on a valid file", |screen| {
        screen.contains("Edit greet") && screen.contains("✓ valid")
    });
    terminal.keys(&["C-End", "Enter"]);
    terminal.type_text("bogus = 1");
    let screen = terminal.wait_for("the problem at line 8", |screen| {
        screen.contains(" 8● bogus = 1") && screen.contains("✗ 1 problem")
    });
    assert!(
        screen.contains("8:1 unknown field `bogus`"),
        "the problem is listed with its line and column:\n{screen}"
    );

    // Fixed (commented out), it validates again; Ctrl-S saves it as a new version.
    terminal.keys(&["Home"]);
    terminal.type_text("# ");
    terminal.wait_for("the fixed file to validate", |screen| {
        screen.contains(" 8  # bogus = 1") && screen.contains("✓ valid") && !screen.contains("8●")
    });
    terminal.keys(&["C-s"]);
    terminal.wait_for_text("saved: version 2");
    let on_disk = std::fs::read_to_string(daemon.runbooks.join("greet.toml")).unwrap();
    assert_eq!(on_disk, format!("{GREET}\n# bogus = 1"));
    let versions = daemon.cli(&["versions", "greet"]);
    assert!(versions.status.success());
    let versions = String::from_utf8_lossy(&versions.stdout);
    let rows: Vec<&str> = versions.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{versions}");
    assert!(
        rows[1].starts_with("2 ") && rows[1].contains("saved by") && rows[1].ends_with("current"),
        "{versions}"
    );
}

/// Lines 1-20 come before an approval gate, 21-40 after it, in two steps.
const COUNT: &str = r#"description = "counts in two steps around a gate"

[[steps]]
id = "first"
uses = "shell"
with = { command = ["sh", "-c", "for i in $(seq 1 20); do echo line-$i; sleep 0.05; done"] }

[[steps]]
id = "gate"
uses = "shell"
needs = ["first"]
approval = true
with = { command = ["echo", "gate-passed"] }

[[steps]]
id = "last"
uses = "shell"
needs = ["gate"]
with = { command = ["sh", "-c", "for i in $(seq 21 40); do echo line-$i; sleep 0.05; done"] }
"#;

/// The TUI watches a running run while the daemon is killed (-9) and started again; the step
/// logs produced before, and those produced while the TUI was reconnecting, each show once.
///
/// The restart happens while the run waits for approval, not while a shell step runs: a shell
/// step interrupted by a crash becomes ambiguous, which would test recovery rather than the
/// TUI's catching up.
#[test]
fn the_run_view_reconnects_after_a_daemon_restart_and_catches_up_without_gaps_or_doubles() {
    if !tmux_available() {
        return;
    }
    let mut daemon =
        Daemon::start_process(&[("count.toml", COUNT)], "[approvals]\nshell = \"auto\"\n");
    let terminal = Terminal::open(&daemon);
    terminal.wait_for("the runbook list, connected", |screen| {
        screen.contains("● runbookd") && screen.contains("counts in two steps")
    });
    terminal.keys(&["r"]);
    terminal.wait_for_text("This runbook has no params.");
    terminal.keys(&["Enter"]);
    let screen = terminal.wait_for("the run to wait at the gate", |screen| {
        screen.contains("approval (a / d)") && screen.contains("Log: first")
    });
    let run = run_id(&screen);
    assert_eq!(
        numbered_lines(&screen),
        (1..=20).collect::<Vec<_>>(),
        "{screen}"
    );
    assert!(screen.contains(" live "), "{screen}");

    daemon.kill9();
    terminal.wait_for("the TUI to notice the daemon is gone", |screen| {
        screen.contains("reconnecting") || screen.contains("cannot reach")
    });
    daemon.restart();
    // Approved at once: step `last` may print while the TUI still backs off, and the view
    // must catch up with it from the last event it saw.
    let approved = daemon.cli(&["approve", &run, "gate"]);
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    daemon.wait_for(&run, "the run to complete", |shown| {
        shown["status"] == "completed"
    });

    let screen = terminal.wait_for(
        "the run view to catch up with the end of the run",
        |screen| {
            screen.contains("● runbookd") && screen.contains(" ended ") && screen.contains("✓ last")
        },
    );
    assert!(screen.contains("Log: first"), "{screen}");
    assert_eq!(
        numbered_lines(&screen),
        (1..=20).collect::<Vec<_>>(),
        "step first's log after the reconnection:\n{screen}"
    );

    terminal.keys(&["j", "j"]);
    let screen = terminal.wait_for_text("Log: last");
    assert_eq!(
        numbered_lines(&screen),
        (21..=40).collect::<Vec<_>>(),
        "step last's log, produced around the reconnection:\n{screen}"
    );
    assert_eq!(
        screen.matches("── attempt 1 started").count(),
        1,
        "{screen}"
    );
}

const STREAM: &str = r#"description = "counts slowly"

[[steps]]
id = "count"
uses = "shell"
with = { command = ["sh", "-c", "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done"] }
"#;

/// The daemon is killed (-9) while a shell step prints: the step becomes ambiguous (a shell
/// command is not idempotent), and the TUI, reconnected, shows exactly the lines the daemon
/// stored before the crash, once each.
#[test]
fn a_crash_in_the_middle_of_a_step_leaves_the_run_view_with_the_stored_lines_once() {
    if !tmux_available() {
        return;
    }
    let mut daemon = Daemon::start_process(
        &[("stream.toml", STREAM)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let terminal = Terminal::open(&daemon);
    terminal.wait_for("the runbook list, connected", |screen| {
        screen.contains("● runbookd") && screen.contains("counts slowly")
    });
    terminal.keys(&["r"]);
    terminal.wait_for_text("This runbook has no params.");
    terminal.keys(&["Enter"]);
    let screen = terminal.wait_for_text("line-10");
    let run = run_id(&screen);

    daemon.kill9();
    terminal.wait_for("the TUI to notice the daemon is gone", |screen| {
        screen.contains("reconnecting") || screen.contains("cannot reach")
    });
    daemon.restart();
    let shown = daemon.wait_for(&run, "the step to be found ambiguous", |shown| {
        runbook_e2e::step_status(shown, "count") == "ambiguous"
    });
    let logs = daemon.cli(&["logs", &run]);
    let stored = numbered_lines(&String::from_utf8_lossy(&logs.stdout));
    assert!(stored.len() >= 10, "{shown:#}");
    assert_eq!(stored, (1..=*stored.last().unwrap()).collect::<Vec<_>>());

    let screen = terminal.wait_for("the run view to show the step ambiguous", |screen| {
        screen.contains("● runbookd") && screen.contains("? count")
    });
    assert_eq!(numbered_lines(&screen), stored, "{screen}");
}

#[test]
fn a_failed_run_is_retried_and_a_runbook_rolled_back_from_the_tui() {
    if !tmux_available() {
        return;
    }
    let gate = tempfile::tempdir().unwrap();
    let gate = gate.path().join("open");
    let first = format!(
        r#"description = "gated from the tui"

[[steps]]
id = "through"
uses = "shell"
with = {{ script = 'test -e "$GATE" && echo passed-the-gate', env = {{ GATE = "{}" }} }}
"#,
        gate.display()
    );
    let daemon = Daemon::start(&[("gated.toml", &first)], "[approvals]\nshell = \"auto\"\n");
    let terminal = Terminal::open(&daemon);
    terminal.wait_for("the runbook list, connected", |screen| {
        screen.contains("● runbookd") && screen.contains("gated from the tui")
    });

    // The run fails at the closed gate; `T`, then `y`, retries it in place once it is open.
    terminal.keys(&["r"]);
    terminal.wait_for_text("This runbook has no params.");
    terminal.keys(&["Enter"]);
    let screen = terminal.wait_for("the run to fail", |screen| {
        screen.contains("Run ") && screen.contains("failed")
    });
    let run = run_id(&screen);
    std::fs::write(&gate, "").unwrap();
    terminal.keys(&["T"]);
    terminal.wait_for_text("(failed steps run again, completed ones keep their outputs)? y/n");
    terminal.keys(&["y"]);
    terminal.wait_for("the same run completed", |screen| {
        screen.contains(&format!("Run {run}"))
            && screen.contains("completed")
            && screen.contains("passed-the-gate")
    });
    let shown = daemon.json(&["show", &run]);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["retries"][0]["steps"], serde_json::json!(["through"]));

    // A second version of the file; `b` on the runbook's screen offers the first one back.
    runbook_e2e::save_by_rename(
        &daemon.runbooks.join("gated.toml"),
        &first.replace("gated from the tui", "gated, edited"),
    );
    terminal.keys(&["Escape"]);
    terminal.wait_for_text("gated, edited");
    terminal.keys(&["Enter"]);
    terminal.wait_for_text("Versions (2)");
    terminal.keys(&["b"]);
    terminal.wait_for_text("roll gated back to version (Enter, Esc to keep it): 1");
    terminal.keys(&["Enter"]);
    terminal.wait_for_text("rolled back gated: now #3");
    let versions = daemon.json(&["versions", "gated"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(3), "{versions:#}");
    assert_eq!(
        std::fs::read_to_string(daemon.runbooks.join("gated.toml")).unwrap(),
        first,
        "the file holds the first version's content again"
    );
}

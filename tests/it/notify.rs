//! The service manager's readiness protocol, on the real binary: `READY=1` once the daemon
//! serves (every [`Daemon::start_process`] waits for it), `STOPPING=1` when a stop begins,
//! whether asked for by `runbook daemon stop` or by SIGTERM, and a manager that cannot be told
//! never stops the daemon.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

use runbook_e2e::{Daemon, PATIENCE};

#[test]
fn the_daemon_says_ready_then_stopping_on_a_stop_request_and_on_sigterm() {
    // Returns once the binary said READY=1 on the harness's socket.
    let mut daemon = Daemon::start_process(&[], "");
    assert!(daemon.cli(&["status"]).status.success());
    assert_eq!(daemon.notifications(), Vec::<String>::new());

    assert!(daemon.cli(&["daemon", "stop"]).status.success());
    assert!(daemon.wait_exit().success());
    assert_eq!(daemon.notifications(), ["STOPPING=1\n"]);

    daemon.restart();
    assert!(daemon.cli(&["status"]).status.success());
    assert!(daemon.terminate().success());
    assert_eq!(daemon.notifications(), ["STOPPING=1\n"]);
}

/// Kills the process when the test ends, however it ends.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_service_manager_that_cannot_be_told_is_logged_and_the_daemon_serves() {
    let daemon = Daemon::prepare(&[], "");
    let nobody = daemon.root.path().join("nobody-listens.sock");
    let mut spawned = Spawned(
        daemon
            .command()
            .env("NOTIFY_SOCKET", &nobody)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its log on stderr, line by line: the failed READY=1 is logged once it is ready.
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = spawned.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = logged
            .recv_timeout(left)
            .expect("runbookd logged no failed READY=1 (or exited)");
        if line.contains("cannot notify the service manager") && line.contains("READY=1") {
            assert!(line.contains("nobody-listens.sock"), "{line}");
            break;
        }
    }

    let status = daemon.cli(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(daemon.cli(&["daemon", "stop"]).status.success());
    assert!(spawned.0.wait().unwrap().success());
}

//! Integration tests of the `runbook` binary that need no daemon: flags, exit codes and the
//! messages for a daemon that is not there. Tests against the real daemon live in the
//! workspace's `tests/` crate.

mod offline;

use std::path::Path;
use std::process::{Command, Output};

/// `runbook --socket SOCKET --no-autostart`, isolated from the caller's environment.
pub fn command(socket: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runbook"));
    command
        .arg("--socket")
        .arg(socket)
        .arg("--no-autostart")
        .env_remove("RUNBOOK_SOCKET")
        .env_remove("RUNBOOK_RUNBOOKS")
        .env_remove("RUNBOOK_DATA_DIR");
    command
}

/// Runs `runbook` with `args`, pointed at a socket in a fresh temp dir where nothing listens.
pub fn runbook(args: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = command(&dir.path().join("runbookd.sock"))
        .args(args)
        .output()
        .expect("runs the binary");
    (output, dir)
}

/// The standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

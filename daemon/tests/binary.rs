//! The `runbookd` binary's own boundary: its flags, and a bad config file refused, with where
//! and why, before anything starts. Everything else the daemon does is tested end to end in
//! `tests/`, which also starts this binary where the process is the point.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn runbookd(dir: &Path, config: &str) -> Output {
    let file = dir.join("runbookd.toml");
    std::fs::write(&file, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_runbookd"))
        .arg("--config")
        .arg(&file)
        .arg("--socket")
        .arg(dir.join("run/runbookd.sock"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--runbooks")
        .arg(dir.join("runbooks"))
        .output()
        .unwrap()
}

#[test]
fn version_and_help_name_the_daemon_and_its_flags() {
    let version = Command::new(env!("CARGO_BIN_EXE_runbookd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("runbookd {}", env!("CARGO_PKG_VERSION"))
    );
    let help = Command::new(env!("CARGO_BIN_EXE_runbookd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--data-dir",
        "--runbooks",
        "--socket",
        "--config",
        "--cache-dir",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn a_bad_config_file_is_refused_with_its_place_before_the_socket_is_bound() {
    let dir = tempfile::tempdir().unwrap();

    let mistyped = runbookd(dir.path(), "[limits]\nplugin_cpu = 5\n");
    assert!(!mistyped.status.success());
    let stderr = String::from_utf8_lossy(&mistyped.stderr);
    assert!(
        stderr.contains("runbookd.toml:2:"),
        "file and line: {stderr}"
    );

    let unreadable_duration = runbookd(dir.path(), "[limits]\nplugin_cpu = \"soon\"\n");
    assert!(!unreadable_duration.status.success());
    let stderr = String::from_utf8_lossy(&unreadable_duration.stderr);
    assert!(stderr.contains("limits.plugin_cpu"), "the field: {stderr}");

    assert!(!dir.path().join("run/runbookd.sock").exists());
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

//! Tests that need no daemon: argument checking, exit codes, the unreachable-daemon message.

use std::process::Command;

use crate::{runbook, stderr};

#[test]
fn an_absent_daemon_exits_3_with_a_hint() {
    let (output, dir) = runbook(&["status"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: cannot reach runbookd at "),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().join("runbookd.sock").display().to_string()),
        "{message}"
    );
    assert!(message.contains("runbook daemon start"), "{message}");
}

#[test]
fn daemon_status_never_starts_a_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Even with autostart on, `daemon status` only looks.
    let output = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("--socket")
        .arg(dir.path().join("runbookd.sock"))
        .args(["daemon", "status"])
        .output()
        .expect("runs the binary");
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
fn a_param_without_a_value_exits_2_naming_the_flag() {
    let (output, _dir) = runbook(&["run", "x", "-p", "novalue"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("--param"), "{message}");
    assert!(message.contains("novalue"), "{message}");
}

#[test]
fn an_unknown_resolve_action_exits_2_listing_the_valid_ones() {
    let (output, _dir) = runbook(&["resolve", "r", "s", "bogus"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("retry, skip, fail"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unknown_status_filter_exits_2_listing_the_valid_ones() {
    let (output, _dir) = runbook(&["runs", "--status", "bogus"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("timed_out"), "{}", stderr(&output));
}

#[test]
fn validating_a_missing_file_exits_2() {
    let (output, _dir) = runbook(&["validate", "/nonexistent/runbook.toml"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn diff_and_rollback_without_a_version_exit_2_before_any_daemon() {
    for (args, missing) in [
        (&["diff", "deploy"][..], "<FROM>"),
        (&["rollback", "deploy"][..], "<VERSION>"),
    ] {
        let (output, _dir) = runbook(args);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(missing), "{}", stderr(&output));
    }
}

#[test]
fn help_lists_the_subcommands() {
    let output = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("--help")
        .output()
        .expect("runs the binary");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "status", "ls", "validate", "versions", "diff", "rollback", "run", "runs", "show", "logs",
        "watch", "approve", "deny", "resolve", "cancel", "daemon",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "`{command}` missing from:\n{help}"
        );
    }
    for flag in [
        "--socket",
        "--no-autostart",
        "--json",
        "--runbooks",
        "--data-dir",
    ] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
    }
}

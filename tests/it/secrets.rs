//! The secret vault through the real binaries: `runbook secret set|ls|rm|log`, that a value
//! never shows up in any output, log or database file, the 0600 rule for `vault.key`, and
//! that secrets outlive a restart.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, PATIENCE};

/// Values distinctive enough that finding one anywhere can only be a leak.
const VALUE: &str = "s3cr3t-Vault-Value-7f2c91";
const OTHER_VALUE: &str = "another-Hidden-Value-0b8e4d";

/// Every output of the CLI seen by this test, to check that no value was ever printed.
#[derive(Default)]
struct Seen(String);

impl Seen {
    fn cli(&mut self, daemon: &Daemon, args: &[&str]) -> Output {
        self.record(daemon.cli(args))
    }

    /// `runbook secret set NAME` with `stdin` piped in.
    fn set(&mut self, daemon: &Daemon, name: &str, stdin: &str) -> Output {
        let mut child = daemon
            .cli_command(&["secret", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command refused before it reads stdin (a bad name) closes it: not this test's error.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        self.record(child.wait_with_output().unwrap())
    }

    fn record(&mut self, output: Output) -> Output {
        self.0.push_str(&String::from_utf8_lossy(&output.stdout));
        self.0.push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Fails if any file below `dir` holds one of `values`.
fn assert_nowhere_in(dir: &Path, values: &[&str]) {
    let found = files(dir);
    assert!(!found.is_empty(), "{} is empty", dir.display());
    for file in found {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for value in values {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds a secret value",
                file.display()
            );
        }
    }
}

#[test]
fn secrets_are_set_listed_audited_and_removed_without_ever_showing_a_value() {
    let mut daemon = Daemon::start(&[], "");
    let mut seen = Seen::default();

    // From stdin: one trailing newline is not part of the value.
    let set = seen.set(&daemon, "API_TOKEN", &format!("{VALUE}\n"));
    assert_eq!(ok(&set), "set secret API_TOKEN\n");
    let set = seen.set(&daemon, "db_password", OTHER_VALUE);
    ok(&set);

    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "UPDATED", "BY"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert!(rows[0].starts_with("API_TOKEN "), "{ls}");
    assert!(rows[1].starts_with("db_password "), "{ls}");
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    assert!(rows[0].contains(&user), "the setter is named: {ls}");

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["secret", "ls", "--json"]))).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "API_TOKEN");
    assert!(listed[0]["updated_at"].is_string(), "{listed:?}");
    assert!(listed[0].get("value").is_none());

    // Bad input is refused with exit code 2 and names what is wrong.
    let bad = seen.set(&daemon, "9lives", VALUE);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let empty = seen.set(&daemon, "EMPTY", "\n");
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
    assert!(
        text(&empty.stderr).contains("empty"),
        "{}",
        text(&empty.stderr)
    );
    let unknown = seen.cli(&daemon, &["secret", "rm", "NOPE"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no secret named `NOPE`"));

    let rm = seen.cli(&daemon, &["secret", "rm", "db_password"]);
    assert_eq!(ok(&rm), "removed secret db_password\n");
    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    assert!(
        ls.contains("API_TOKEN") && !ls.contains("db_password"),
        "{ls}"
    );

    let log = ok(&seen.cli(&daemon, &["secret", "log"]));
    let actions: Vec<Vec<&str>> = log
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().skip(2).take(3).collect())
        .collect();
    assert_eq!(
        actions,
        [
            ["set", "API_TOKEN", user.as_str()],
            ["set", "db_password", user.as_str()],
            ["rm", "db_password", user.as_str()],
        ],
        "{log}"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["secret", "log", "--json"]))).unwrap();
    assert_eq!(audit[2]["action"], "rm");
    assert_eq!(audit[2]["name"], "db_password");
    assert!(audit[2]["at"].is_string());

    // A clean stop, so that the log files and the database are complete on disk.
    ok(&seen.cli(&daemon, &["daemon", "stop"]));
    for value in [VALUE, OTHER_VALUE] {
        assert!(!seen.0.contains(value), "a CLI output shows a value");
    }
    assert_nowhere_in(&daemon.data_dir.join("logs"), &[VALUE, OTHER_VALUE]);
    assert_nowhere_in(&daemon.data_dir.join("db"), &[VALUE, OTHER_VALUE]);

    // The secret survives a restart.
    daemon.restart();
    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    assert!(
        ls.contains("API_TOKEN") && !ls.contains("db_password"),
        "{ls}"
    );
    assert!(!seen.0.contains(VALUE));
}

#[test]
fn a_vault_key_open_to_others_stops_the_daemon() {
    let mut daemon = Daemon::start(&[], "");
    let key = daemon.data_dir.join("vault.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is created private");
    ok(&daemon.cli(&["daemon", "stop"]));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut refused = daemon
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("runbookd started with a vault key of mode 644");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = text(&refused.wait_with_output().unwrap().stderr);
    assert!(!status.success());
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("mode 644"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );

    // Following the advice is enough.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    daemon.restart();
    ok(&daemon.cli(&["secret", "ls"]));
}

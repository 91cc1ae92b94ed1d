//! `runbook validate` through the CLI: it prints the golden text of `runbooks/invalid` (the
//! loader's rendering, which `golden.rs` checks for every file) with file:line:column and
//! exits 2. And files built to hurt the loader (too large, nested too deeply, too many steps,
//! not UTF-8): each is refused with a located diagnostic, in `validate`, at start-up and on
//! hot reload, and the daemon lives on.

use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, PATIENCE, workspace_root};

/// Cases of `runbooks/invalid` checked through the CLI as well: one the TOML parser reports,
/// one a plugin reports about its `with` table, one whose line number widens the gutter.
const THROUGH_THE_CLI: [&str; 3] = ["toml-syntax", "plugin-config", "graphql-syntax"];

#[test]
fn validate_prints_what_the_loader_renders_and_exits_2() {
    let daemon = Daemon::start(&[], "");
    let root = workspace_root();
    let cases: Vec<_> = crate::golden::cases()
        .into_iter()
        .filter(|case| {
            THROUGH_THE_CLI
                .iter()
                .any(|name| case.file == format!("runbooks/invalid/{name}.toml"))
        })
        .collect();
    assert_eq!(cases.len(), THROUGH_THE_CLI.len());
    for case in cases {
        let output = daemon
            .cli_command(&["validate", &case.file])
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "validate {} exits 2",
            case.file
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains(&format!("{}:", case.file)),
            "the message names the file: {stderr}"
        );
        let golden = std::fs::read_to_string(&case.golden).unwrap();
        assert_eq!(stderr, golden, "{}", case.file);
    }
}

#[test]
fn bundled_runbooks_are_valid() {
    let daemon = Daemon::start(&[], "");
    let root = workspace_root();
    for entry in std::fs::read_dir(root.join("runbooks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let output = daemon.cli(&["validate", path.to_str().unwrap()]);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A valid one-step runbook followed by `rest`.
fn runbook_then(rest: &str) -> String {
    format!("[[steps]]\nid = \"a\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n{rest}")
}

/// A runbook whose only step has this `if`.
fn with_condition(condition: &str) -> String {
    format!(
        "[[steps]]\nid = \"a\"\nuses = \"shell\"\nif = \"{condition}\"\nwith = {{ command = [\"true\"] }}\n"
    )
}

/// `steps` shell steps, each needing the one before it, written in reverse order when
/// `reverse`. Without `with` tables: 50,000 of them fit within the size limit, and the step
/// limit refuses them before a plugin would find `with` missing.
fn chain(steps: usize, reverse: bool) -> String {
    let mut blocks: Vec<String> = (0..steps)
        .map(|i| {
            let needs = if i == 0 {
                String::new()
            } else {
                format!("needs = [\"s{}\"]\n", i - 1)
            };
            format!("[[steps]]\nid = \"s{i}\"\nuses = \"shell\"\n{needs}")
        })
        .collect();
    if reverse {
        blocks.reverse();
    }
    blocks.concat()
}

#[test]
fn validate_refuses_a_file_too_large_with_exit_2() {
    let daemon = Daemon::start(&[], "");
    let file = daemon.root.path().join("huge.toml");
    // Valid but for its size: 10 MB of comment.
    std::fs::write(
        &file,
        runbook_then(&format!("# {}\n", "x".repeat(10 << 20))),
    )
    .unwrap();
    let output = daemon.cli(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: the file is too large: a runbook may be at most 4194304 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:5:", file.display())),
        "it points where the limit is crossed: {stderr}"
    );
    assert!(
        stderr.len() < 2_000,
        "the snippet is cut: {} bytes",
        stderr.len()
    );
}

#[test]
fn validate_refuses_nesting_and_chains_past_the_limits_with_exit_2() {
    let daemon = Daemon::start(&[], "");
    let cases = [
        (
            "nots.toml",
            with_condition(&format!("{}true", "not ".repeat(5_000))),
            "step `a`: if: the expression nests too deeply: 5000 levels",
            ":4:6",
        ),
        (
            "filters.toml",
            runbook_then("").replace(
                "[\"true\"]",
                &format!("[\"echo\", \"{{{{ run.id{} }}}}\"]", "|trim".repeat(5_000)),
            ),
            "step `a`: with.command[1]: the template nests too deeply: 5001 levels",
            ":4:29",
        ),
        (
            "forward.toml",
            chain(50_000, false),
            "too many steps: a runbook may have at most 10000, and this is step 10001 of 50000",
            ":40000:1",
        ),
        (
            "reverse.toml",
            chain(50_000, true),
            "too many steps: a runbook may have at most 10000, and this is step 10001 of 50000",
            ":40001:1",
        ),
    ];
    for (name, source, message, location) in cases {
        let file = daemon.root.path().join(name);
        std::fs::write(&file, source).unwrap();
        let started = Instant::now();
        let output = daemon.cli(&["validate", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("validate {name}: {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}{location}", file.display())),
            "{name}: {stderr}"
        );
    }
}

/// The `ls --json` entry of the runbook from file `file_name`, once it is listed.
fn listed(daemon: &Daemon, file_name: &str) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = daemon
            .json(&["ls"])
            .as_array()
            .unwrap()
            .iter()
            .find(|rb| {
                rb["path"]
                    .as_str()
                    .is_some_and(|path| path.ends_with(file_name))
            })
            .cloned();
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "{file_name} is never listed");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Asserts that `file_name` is listed as invalid with a first diagnostic at `line`:`column`
/// whose message starts with `message`.
fn assert_refused(daemon: &Daemon, file_name: &str, message: &str, line: u64, column: u64) {
    let entry = listed(daemon, file_name);
    assert_eq!(entry["valid"], false, "{entry:#}");
    let first = &entry["diagnostics"][0];
    assert!(
        first["message"].as_str().unwrap().starts_with(message),
        "{file_name}: {entry:#}"
    );
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(line), Some(column)),
        "{file_name}: {entry:#}"
    );
}

#[test]
fn hostile_files_at_start_up_and_on_reload_are_refused_and_the_daemon_lives_on() {
    // The daemon used to die of each of these while loading its directory, and so on every
    // start after: 16,000 `not`s overflow a thread's stack in a debug build, and so does the
    // TOML whose own count of the nesting a few misplaced braces drive below zero.
    let nots = with_condition(&format!("{}true", "not ".repeat(16_000)));
    let drifting = runbook_then(&format!(
        "neds = [\"x\"{}]\ndeep = {}1{}\n",
        "{{ x }}".repeat(10_000),
        "{ a = ".repeat(50_000),
        " }".repeat(50_000)
    ));
    let forward = chain(50_000, false);
    let started = Instant::now();
    let daemon = Daemon::start(
        &[
            ("nots.toml", &nots),
            ("drifting.toml", &drifting),
            ("forward.toml", &forward),
            ("fine.toml", &runbook_then("")),
        ],
        "[approvals]\nshell = \"auto\"\n",
    );
    daemon.wait_valid("fine");
    eprintln!("start-up with the hostile files: {:?}", started.elapsed());
    assert_refused(
        &daemon,
        "nots.toml",
        "step `a`: if: the expression nests too deeply",
        4,
        6,
    );
    assert_refused(
        &daemon,
        "drifting.toml",
        "arrays and inline tables nest too deeply here",
        6,
        488,
    );
    assert_refused(&daemon, "forward.toml", "too many steps", 40_000, 1);

    // The same on hot reload, with the chain in reverse order and a file that is not UTF-8.
    let started = Instant::now();
    std::fs::write(daemon.runbooks.join("reverse.toml"), chain(50_000, true)).unwrap();
    assert_refused(&daemon, "reverse.toml", "too many steps", 40_001, 1);
    eprintln!("reload of the reverse chain: {:?}", started.elapsed());
    let mut latin1 = runbook_then("description = \"caf\u{e9}\"\n").into_bytes();
    let at = latin1.len() - 4;
    latin1.splice(at..at + 2, [0xe9]);
    std::fs::write(daemon.runbooks.join("latin1.toml"), latin1).unwrap();
    assert_refused(
        &daemon,
        "latin1.toml",
        "the file is not UTF-8: byte 0xe9",
        5,
        19,
    );
    // And it still runs what is valid.
    let done = daemon.run_to_end("fine", &[]);
    assert_eq!(done["status"], "completed", "{done:#}");
}

//! `runbook validate` on every file in `runbooks/invalid`: exit 2 and the golden message (with
//! file:line:column) beside it. Set `UPDATE_GOLDEN=1` to rewrite the golden files.

use runbook_e2e::{Daemon, workspace_root};

#[test]
fn invalid_runbooks_match_their_golden_messages() {
    let daemon = Daemon::start(&[], "");
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("runbooks/invalid"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "at least ten invalid runbooks");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().display().to_string();
        let output = daemon
            .cli_command(&["validate", &relative])
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "validate {relative} exits 2");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains(&format!("{relative}:")),
            "the message names the file: {stderr}"
        );
        let golden = file.with_extension("stderr");
        if update {
            std::fs::write(&golden, &stderr).unwrap();
        } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(stderr.as_str()) {
            mismatches.push(format!("{relative}:\n{stderr}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "messages differ from the golden files (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.join("\n")
    );
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

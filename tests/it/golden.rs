//! Golden diagnostics, as Spin's manifest `ui` tests: every file in `runbooks/invalid` is loaded
//! by the runbook loader with the real built-in plugins, in this process (no daemon, no CLI),
//! and its diagnostics must render exactly as the `.stderr` file beside it, which is also what
//! `runbook validate` prints for it (`validate.rs` checks that on a few of them).
//! `UPDATE_GOLDEN=1` rewrites the files from what the loader renders.

use std::path::PathBuf;

use runbook_e2e::{builtin_plugins, workspace_root};

/// One invalid runbook and its expected text.
pub struct Case {
    /// The file as diagnostics name it: relative to the workspace root.
    pub file: String,
    pub source: PathBuf,
    pub golden: PathBuf,
}

/// Every `runbooks/invalid/*.toml`, sorted.
pub fn cases() -> Vec<Case> {
    let root = workspace_root();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("runbooks/invalid"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    sources.sort();
    sources
        .into_iter()
        .map(|source| Case {
            file: source.strip_prefix(&root).unwrap().display().to_string(),
            golden: source.with_extension("stderr"),
            source,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_runbook_renders_the_diagnostics_beside_it() {
    let plugins = builtin_plugins().await;
    let cases = cases();
    assert!(cases.len() >= 10, "at least ten invalid runbooks");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for case in &cases {
        let bytes = std::fs::read(&case.source).unwrap();
        let diagnostics = match runbookd::runbook::load_bytes(&case.file, bytes, &plugins).await {
            Ok(_) => panic!("{} loads, but it is in runbooks/invalid", case.file),
            Err(diagnostics) => diagnostics,
        };
        // As `runbook validate` prints them: each one's text, then a newline.
        let rendered: String = diagnostics
            .iter()
            .map(|diagnostic| format!("{}\n", diagnostic.rendered.trim_end()))
            .collect();
        assert!(
            rendered.contains(&format!("{}:", case.file)),
            "the message names the file: {rendered}"
        );
        if update {
            std::fs::write(&case.golden, &rendered).unwrap();
        } else if std::fs::read_to_string(&case.golden).ok().as_deref() != Some(rendered.as_str()) {
            mismatches.push(format!("{}:\n{rendered}", case.file));
        }
    }
    assert!(
        mismatches.is_empty(),
        "messages differ from the golden files (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.join("\n")
    );

    // A golden file whose runbook was deleted or renamed would go unchecked.
    let root = workspace_root();
    for entry in std::fs::read_dir(root.join("runbooks/invalid")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "stderr") {
            assert!(
                path.with_extension("toml").exists(),
                "{} has no runbook beside it",
                path.display()
            );
        }
    }
}

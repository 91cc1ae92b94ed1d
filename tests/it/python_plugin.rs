//! A step plugin written in Python (plugin-sdk/python/app.py), built with componentize-py
//! from PyPI against the SDK's WIT, installed into a running daemon and run. componentize-py
//! is found beside `RUNBOOK_TEST_PYTHON` (the CI's virtual environment), else on `PATH`.

use std::path::PathBuf;
use std::process::Command;

use runbook_e2e::{Daemon, required_here, step, workspace_root};

const RUNBOOK: &str = r#"
[[steps]]
id = "count"
uses = "word-count"
with = { text = "the quick brown fox" }
"#;

fn componentize_py() -> PathBuf {
    std::env::var_os("RUNBOOK_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|python| python.parent().map(|dir| dir.join("componentize-py")))
        .filter(|path| path.exists())
        .unwrap_or_else(|| "componentize-py".into())
}

#[test]
fn a_python_plugin_built_with_componentize_py_runs_a_step() {
    let found = Command::new(componentize_py())
        .arg("--version")
        .output()
        .map_err(|err| err.to_string())
        .and_then(|output| {
            output
                .status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned())
        });
    if !required_here("componentize-py (pip install componentize-py)", found) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let component = out.path().join("word_count.wasm");
    let source = workspace_root().join("plugin-sdk/python");
    let built = Command::new(componentize_py())
        .current_dir(&source)
        // The source tree stays as it was checked out.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args([
            "-d",
            "../wit",
            "-w",
            "events-step-plugin",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&component)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "componentize-py failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let daemon = Daemon::start(&[("count.toml", RUNBOOK)], "");
    let installed = daemon.json(&["plugin", "install", component.to_str().unwrap()]);
    let plugin = installed
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["kind"] == "word-count")
        .unwrap_or_else(|| panic!("not installed: {installed:#}"));
    assert_eq!(plugin["loaded"], true, "{plugin:#}");
    assert_eq!(plugin["wit_version"], "0.1.0", "{plugin:#}");
    daemon.wait_valid("count");
    let run = daemon.run_to_end("count", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(
        step(&run, "count")["output"],
        serde_json::json!({ "words": 4 })
    );

    // Its `validate` reports a bad `with` at its field, like any plugin's.
    let bad = daemon.root.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[steps]]\nid = \"c\"\nuses = \"word-count\"\nwith = { txt = \"x\" }\n",
    )
    .unwrap();
    let output = daemon.cli(&["validate", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `txt`"), "{stderr}");
}

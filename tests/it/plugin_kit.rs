//! The SDK's high-level `Step` layer against the real host: the plugin guide's `greet` step
//! (tests/guests/greet, the very file the guide shows) loaded from the plugins directory,
//! validated with its fields' places, planned and run.

use runbook_e2e::{Daemon, step, workspace_root};

const RUNBOOK: &str = r#"
[params]
who = { type = "string", required = true }

[[steps]]
id = "hello"
uses = "greet"
with = { name = "{{ params.who }}", shout = true }
"#;

#[test]
fn a_step_written_with_the_step_trait_validates_plans_and_runs_in_the_daemon() {
    let daemon = Daemon::start_with_test_plugin("greet", &[("hello.toml", RUNBOOK)], "");
    let run = daemon.run_to_end("hello", &["who=ada"]);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(
        step(&run, "hello")["output"],
        serde_json::json!({ "greeting": "HELLO, ADA" })
    );
    let dry = daemon.json(&["run", "hello", "-p", "who=bob", "--dry-run", "--wait"]);
    let planned = step(&dry, "hello")["output"].to_string();
    assert!(planned.contains(r#"say \"HELLO, BOB\""#), "{planned}");

    // The config type's errors and the step's own check, each at its field in the file.
    let bad = daemon.root.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[steps]]\nid = \"a\"\nuses = \"greet\"\nwith = { nme = \"x\" }\n\n[[steps]]\nid = \"b\"\nuses = \"greet\"\nwith = { name = \" \" }\n",
    )
    .unwrap();
    let output = daemon.cli(&["validate", bad.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let diagnostics = result["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 2, "{result:#}");
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nme`"),
        "{result:#}"
    );
    assert_eq!(
        (&diagnostics[0]["line"], &diagnostics[0]["column"]),
        (&4.into(), &16.into())
    );
    assert!(
        diagnostics[1]["message"]
            .as_str()
            .unwrap()
            .ends_with("name: must not be empty"),
        "{result:#}"
    );
    assert_eq!(
        (&diagnostics[1]["line"], &diagnostics[1]["column"]),
        (&9.into(), &17.into())
    );
}

#[test]
fn the_guide_shows_the_greet_plugin_that_is_tested() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).unwrap();
    let tested =
        std::fs::read_to_string(workspace_root().join("tests/guests/greet/src/lib.rs")).unwrap();
    assert!(
        guide.contains(&format!("```rust\n{tested}```")),
        "docs/plugin-guide.md shows tests/guests/greet/src/lib.rs as it is"
    );
}

/// Runs cargo in a scaffolded crate, offline, with the workspace's versions of the crates it
/// shares (its lock file) and the workspace's target directory: the template's dev profile is
/// the workspace's, so most of what the harness needs (wasmtime above all) is already built
/// there. (Cargo holds that directory's lock only while it builds, not while tests run.)
fn cargo(dir: &std::path::Path, args: &[&str]) -> String {
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .arg("--offline")
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", workspace_root().join("target"))
            // The outer build's flags are for the workspace, not for this crate.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?} in the scaffolded crate failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_scaffolded_plugin_passes_its_own_tests_builds_and_runs_in_the_daemon() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ping");
    let sdk = workspace_root().join("plugin-sdk");
    // Needs no daemon: none runs yet.
    let scaffold = || {
        std::process::Command::new(runbook_e2e::binary("runbook"))
            .args(["plugin", "new", "ping-pong", "--dir"])
            .arg(&dir)
            .arg("--sdk-path")
            .arg(&sdk)
            .output()
            .unwrap()
    };
    let daemon_less = scaffold();
    assert!(
        daemon_less.status.success(),
        "{}",
        String::from_utf8_lossy(&daemon_less.stderr)
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("\n[workspace]\n"),
        "standalone: {manifest}"
    );

    // A second scaffold into the same place is refused; nothing is overwritten.
    let again = scaffold();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    std::fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    cargo(
        &dir,
        &["build", "--release", "--quiet", "--target", "wasm32-wasip2"],
    );
    // Its own tests, and its built component's in the daemon's host (tests/component.rs).
    let tested = cargo(&dir, &["test"]);
    assert!(
        tested.contains("test the_built_component_validates_plans_and_runs_in_the_host ... ok"),
        "{tested}"
    );
    let component =
        workspace_root().join("target/wasm32-wasip2/release/runbook_plugin_ping_pong.wasm");
    let runbook = r#"
[[steps]]
id = "say"
uses = "ping-pong"
with = { message = "pong", times = 2 }
"#;
    // Installed into a running daemon, which loads it without a restart.
    let daemon = Daemon::start(&[("ping.toml", runbook)], "");
    let installed = daemon.json(&["plugin", "install", component.to_str().unwrap()]);
    let listed = installed
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["kind"] == "ping-pong")
        .unwrap_or_else(|| panic!("not installed: {installed:#}"));
    assert_eq!(listed["loaded"], true, "{listed:#}");
    assert!(
        listed["path"].as_str().unwrap().ends_with("ping-pong.wasm"),
        "{listed:#}"
    );
    daemon.wait_valid("ping");
    let run = daemon.run_to_end("ping", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(
        step(&run, "say")["output"],
        serde_json::json!({ "said": ["pong", "pong"] })
    );
}

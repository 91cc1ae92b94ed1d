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

//! Hostile param values reach an argv step as one literal argument and a script step as one
//! literal environment variable; nothing they spell out runs.

use runbook_e2e::{Daemon, step};

const HOSTILE: &str = r#"
[params]
value = { type = "string", required = true }

[[steps]]
id = "argv"
uses = "shell"
with = { command = ["printf", "%s", "{{ params.value }}"] }

[[steps]]
id = "script"
uses = "shell"
with = { script = "printf '%s' \"$VALUE\"", env = { VALUE = "{{ params.value }}" } }
"#;

#[test]
fn hostile_values_stay_literal() {
    let daemon = Daemon::start(
        &[("hostile.toml", HOSTILE)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let pwned = daemon.root.path().join("pwned");
    let victim = daemon.root.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    for value in [
        format!("$(touch {}); rm -rf {}", pwned.display(), victim.display()),
        format!("`touch {}`", pwned.display()),
        format!("x\" ; touch {} ; echo \"", pwned.display()),
        format!("{{{{ 7 * 7 }}}} ' ; touch {} #", pwned.display()),
    ] {
        let run_id = daemon.start_run("hostile", &[&format!("value={value}")]);
        let done = daemon.wait_for(&run_id, "completion", |run| run["status"] == "completed");
        assert_eq!(
            step(&done, "argv")["output"]["stdout"],
            value.as_str(),
            "argv step"
        );
        assert_eq!(
            step(&done, "script")["output"]["stdout"],
            value.as_str(),
            "script step"
        );
        assert!(!pwned.exists(), "a command inside {value:?} ran");
        assert!(
            victim.exists(),
            "a command inside {value:?} removed the victim"
        );
    }
}

#[test]
fn a_step_sees_only_the_baseline_environment_and_its_own_env() {
    let runbook = r#"
[[steps]]
id = "env"
uses = "shell"
with = { script = "echo \"log=${RUNBOOK_LOG:-unset} mine=$MINE path=${PATH:+set}\"", env = { MINE = "yes" } }
"#;
    // The harness starts the daemon with RUNBOOK_LOG set: it must not reach the step.
    let daemon = Daemon::start(&[("env.toml", runbook)], "[approvals]\nshell = \"auto\"\n");
    let run_id = daemon.start_run("env", &[]);
    let done = daemon.wait_for(&run_id, "completion", |run| run["status"] == "completed");
    assert_eq!(
        step(&done, "env")["output"]["stdout"],
        "log=unset mine=yes path=set\n"
    );
}

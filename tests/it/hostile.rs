//! Hostile param values reach an argv step as one literal argument and a script step as one
//! literal environment variable; nothing they spell out runs. A runaway template fails its
//! step instead of spinning a worker.

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

/// Nested loops over 100,000 characters each: 10^10 iterations if nothing stops them.
const RUNAWAY: &str =
    "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{{ a }}{% endfor %}{% endfor %}";

#[test]
fn a_runaway_template_fails_its_step_and_the_daemon_stays_responsive() {
    let runbook = format!(
        r#"
[[steps]]
id = "with_loop"
uses = "shell"
timeout = "2s"
with = {{ command = ["echo", "{RUNAWAY}"] }}

[[steps]]
id = "if_loop"
uses = "shell"
if = "('y' * 1000000000) | length > 0"
with = {{ command = ["true"] }}

[[steps]]
id = "fine"
uses = "shell"
with = {{ command = ["echo", "{{{{ 'still here' }}}}"] }}
"#
    );
    let daemon = Daemon::start(
        &[("runaway.toml", &runbook)],
        "[approvals]\nshell = \"auto\"\n",
    );
    daemon.wait_valid("runaway");
    let done = daemon.run_to_end("runaway", &[]);
    let error = step(&done, "with_loop")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("command[1]") && error.contains("used up its budget"),
        "{error}"
    );
    let error = step(&done, "if_loop")["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("cannot evaluate `if`") && error.contains("used up its budget"),
        "{error}"
    );
    assert_eq!(step(&done, "fine")["output"]["stdout"], "still here\n");
    assert!(daemon.cli(&["status"]).status.success());
}

//! The built-in `instruction` step: its templated Markdown is shown to the operator, the run
//! waits for `runbook confirm` across a kill -9, the inputs it declares are typed and checked
//! by the daemon (nothing wrong is accepted), and what was confirmed is the step's output that
//! a later step reads.

use runbook_e2e::{Daemon, step, step_status};

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

const DRAIN: &str = r#"
[params]
env = { type = "string", default = "staging" }

[[steps]]
id = "check"
uses = "instruction"
with = { text = """
## Drain the nodes of {{ params.env }}

1. Open the **{{ params.env }}** console.
2. Drain every node, then note the change ticket.
""" }

[steps.inputs]
ticket = { type = "string", required = true, description = "the change ticket" }
replicas = { type = "integer", default = 3 }
mode = { type = "string", allowed = ["drain", "cordon"], default = "drain" }

[[steps]]
id = "after"
uses = "shell"
needs = ["check"]
with = { command = ["echo", "{{ steps.check.output.ticket }}/{{ steps.check.output.replicas }}/{{ steps.check.output.mode }}"] }
"#;

/// `runbook confirm RUN check -i VALUE...`.
fn confirm(daemon: &Daemon, run: &str, inputs: &[&str]) -> std::process::Output {
    let mut args = vec!["confirm", run, "check"];
    for input in inputs {
        args.extend(["-i", input]);
    }
    daemon.cli(&args)
}

fn failure(output: &std::process::Output) -> String {
    assert!(
        !output.status.success(),
        "expected a refusal: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_instruction_confirmed_with_inputs_hands_them_to_a_later_step_across_a_kill_9() {
    let mut daemon = Daemon::start_process(&[("drain.toml", DRAIN)], AUTO);
    let run = daemon.start_run("drain", &["env=prod"]);
    let waiting = daemon.wait_for(&run, "the instruction to wait", |shown| {
        step_status(shown, "check") == "waiting"
    });
    let approval = &step(&waiting, "check")["approval"];
    assert_eq!(approval["instruction"], true, "{approval:#}");
    assert_eq!(
        approval["summary"], "by hand: Drain the nodes of prod",
        "{approval:#}"
    );

    // What the operator reads: the rendered text, the inputs, how to confirm.
    let shown = daemon.cli(&["show", &run]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("Open the **prod** console."), "{text}");
    assert!(
        text.contains("input ticket (string, required): the change ticket"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "confirm with: runbook confirm {run} check -i ticket=<string> [-i replicas=<integer>] [-i mode=<string>]"
        )),
        "{text}"
    );

    // Durable like an approval: still waiting after a kill -9.
    daemon.kill9();
    daemon.spawn();
    let back = daemon.json(&["show", &run]);
    assert_eq!(step_status(&back, "check"), "waiting", "{back:#}");

    // Nothing wrong is accepted, and each refusal says what is wrong.
    let missing = failure(&daemon.cli(&["approve", &run, "check"]));
    assert!(
        missing.contains("input `ticket` is required (-i ticket=<string>)"),
        "{missing}"
    );
    let mistyped = failure(&confirm(&daemon, &run, &["ticket=OPS-7", "replicas=many"]));
    assert!(mistyped.contains("input `replicas`"), "{mistyped}");
    let unknown = failure(&confirm(&daemon, &run, &["ticket=OPS-7", "tiket=x"]));
    assert!(
        unknown.contains("unknown input `tiket`; step `check` takes: ticket, replicas, mode"),
        "{unknown}"
    );
    let not_allowed = failure(&confirm(&daemon, &run, &["ticket=OPS-7", "mode=delete"]));
    assert!(not_allowed.contains("is not one of"), "{not_allowed}");
    assert_eq!(
        step_status(&daemon.json(&["show", &run]), "check"),
        "waiting"
    );

    let confirmed = confirm(&daemon, &run, &["ticket=OPS-7", "replicas=5"]);
    assert!(
        confirmed.status.success(),
        "{}",
        String::from_utf8_lossy(&confirmed.stderr)
    );
    let ended = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    let check = step(&ended, "check");
    assert_eq!(
        check["output"],
        serde_json::json!({ "ticket": "OPS-7", "replicas": 5, "mode": "drain" }),
        "typed values, defaults filled in: {check:#}"
    );
    assert_eq!(check["approval"]["confirmed"], check["output"]);
    assert_eq!(step(&ended, "after")["output"]["stdout"], "OPS-7/5/drain\n");

    let audit = daemon.json(&["audit", "--action", "confirm"]);
    assert!(
        audit.to_string().contains(&run),
        "the confirmation is audited: {audit:#}"
    );
}

#[test]
fn only_instruction_steps_take_inputs() {
    let gated = r#"
[[steps]]
id = "s"
uses = "shell"
approval = true
with = { command = ["true"] }
"#;
    let daemon = Daemon::start(&[("gated.toml", gated)], AUTO);
    let run = daemon.start_run("gated", &[]);
    daemon.wait_for(&run, "the approval", |shown| {
        step_status(shown, "s") == "waiting"
    });
    let refused = failure(&daemon.cli(&["confirm", &run, "s", "-i", "a=b"]));
    assert!(
        refused.contains("only instruction steps take inputs"),
        "{refused}"
    );
    // Without inputs, confirming a plan approves it.
    assert!(daemon.cli(&["confirm", &run, "s"]).status.success());
    let ended = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step(&ended, "s")["approval"]["approved"], true);
}

#[test]
fn a_policy_that_would_confirm_instructions_by_itself_is_refused() {
    let stderr = runbook_e2e::refused_config("[approvals]\ninstruction = \"auto\"\n");
    assert!(
        stderr.contains("approvals.instruction: an instruction step always waits for an operator"),
        "{stderr}"
    );
}

//! Control characters from runs never reach the terminal raw: a param holding `ESC[2K` (erase
//! the line) and a CR, echoed by one step and planned by another, prints escaped in `show`,
//! `logs`, `watch` and the approval plan, while `--json` keeps the exact text.

use runbook_e2e::{Daemon, step, step_status};

/// One step echoes the param on stdout and stderr; the next waits for approval with the param
/// in its argv, so the plan an approver reads holds it too.
const ECHO: &str = r#"
[params]
msg = { type = "string" }

[[steps]]
id = "say"
uses = "shell"
with = { command = ["sh", "-c", "printf '%s\n' \"$1\"; printf '%s\n' \"$1\" >&2", "sh", "{{ params.msg }}"] }

[[steps]]
id = "gate"
uses = "shell"
needs = ["say"]
approval = true
with = { command = ["echo", "{{ params.msg }}"] }
"#;

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

/// What the param holds: erase the line, then return to its start, so a raw print would show
/// only `hidden` where `innocent` was.
const RAW: &str = "innocent\u{1b}[2K\rhidden";
/// How the CLI shows it.
const ESCAPED: &str = r"innocent\e[2K\rhidden";

/// The text of one stream, after checking that no ESC or CR byte is in it.
fn escaped_text(what: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    assert!(
        !bytes.contains(&0x1b) && !bytes.contains(&b'\r'),
        "{what} printed a raw ESC or CR:\n{text:?}"
    );
    text
}

/// Runs `runbook ARGS`, expects success, and returns its stdout and stderr, each checked for raw
/// control characters.
fn cli(daemon: &Daemon, args: &[&str]) -> (String, String) {
    let output = daemon.cli(args);
    let what = format!("runbook {}", args.join(" "));
    let stdout = escaped_text(&format!("{what} (stdout)"), &output.stdout);
    let stderr = escaped_text(&format!("{what} (stderr)"), &output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stdout}{stderr}");
    (stdout, stderr)
}

#[test]
fn a_param_with_control_characters_prints_escaped_everywhere() {
    let daemon = Daemon::start(&[("echo.toml", ECHO)], AUTO);
    let param = format!("msg={RAW}");
    let run = daemon.start_run("echo", &[&param]);
    let waiting = daemon.wait_for(&run, "the gate to wait for approval", |shown| {
        step_status(shown, "gate") == "waiting"
    });
    // JSON carries the exact text, escaped by JSON alone.
    assert_eq!(waiting["params"]["msg"], RAW, "{waiting:#}");
    assert!(
        step(&waiting, "gate")["approval"]["summary"]
            .as_str()
            .unwrap()
            .contains(RAW),
        "the plan holds the raw param: {waiting:#}"
    );

    // `show`: the params (JSON-escaped) and the plan waiting for approval.
    let (shown, _) = cli(&daemon, &["show", &run]);
    assert!(
        shown.contains(r#"params    {"msg":"innocent\u001b[2K\rhidden"}"#),
        "show prints the params:\n{shown}"
    );
    assert!(
        shown.contains(&format!("    run echo '{ESCAPED}'\n")),
        "show prints the plan escaped:\n{shown}"
    );

    // `logs`: prefixed across steps, bare for one step (with its stderr on stderr).
    let (logs, _) = cli(&daemon, &["logs", &run]);
    assert!(logs.contains(&format!("say | {ESCAPED}\n")), "{logs}");
    assert!(logs.contains(&format!("say ! {ESCAPED}\n")), "{logs}");
    let (stdout, stderr) = cli(&daemon, &["logs", &run, "--step", "say"]);
    assert_eq!(stdout, format!("{ESCAPED}\n"));
    assert_eq!(stderr, format!("{ESCAPED}\n"));
    let json = daemon.cli(&["logs", &run, "--json"]);
    let first: serde_json::Value = serde_json::from_slice(
        json.stdout
            .split(|byte| *byte == b'\n')
            .next()
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(first["line"], RAW, "--json keeps the exact line");

    let (approved, _) = cli(&daemon, &["approve", &run, "gate"]);
    assert_eq!(approved, format!("approved step gate of run {run}\n"));
    daemon.wait_for(&run, "the run to complete", |shown| {
        shown["status"] == "completed"
    });

    // `watch` replays the whole run: the output of both steps and the plan it waited on.
    let (watched, _) = cli(&daemon, &["watch", &run]);
    for line in [
        format!("say | {ESCAPED}\n"),
        format!("say ! {ESCAPED}\n"),
        format!("    run echo '{ESCAPED}'\n"),
        format!("gate | {ESCAPED}\n"),
    ] {
        assert!(watched.contains(&line), "watch prints `{line}`:\n{watched}");
    }
}

#[test]
fn errors_quoting_a_param_print_escaped() {
    let daemon = Daemon::start(&[("echo.toml", ECHO)], AUTO);
    // An unknown param is refused by name: the name carries the control characters.
    let output = daemon.cli(&["run", "echo", "-p", &format!("{RAW}=x")]);
    let stderr = escaped_text("runbook run (stderr)", &output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(ESCAPED),
        "the error quotes the name escaped: {stderr}"
    );
}

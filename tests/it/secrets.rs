//! The secret vault through the real binaries: `runbook secret set|ls|rm|log`, that a value
//! never shows up in any output, log or database file, the 0600 rule for `vault.key`, that
//! secrets outlive a restart, and that a canary used by every kind of step (an http header,
//! URL and body, a failing expectation, a process argument, a third-party guest) leaks
//! nowhere: not in outputs, errors, events, CLI output, daemon logs or the database, and
//! never reaches the guest.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, PATIENCE, probe_plugin, step};

/// Values distinctive enough that finding one anywhere can only be a leak.
const VALUE: &str = "s3cr3t-Vault-Value-7f2c91";
const OTHER_VALUE: &str = "another-Hidden-Value-0b8e4d";

/// Every output of the CLI seen by this test, to check that no value was ever printed.
#[derive(Default)]
struct Seen(String);

impl Seen {
    fn cli(&mut self, daemon: &Daemon, args: &[&str]) -> Output {
        self.record(daemon.cli(args))
    }

    /// `runbook secret set NAME` with `stdin` piped in.
    fn set(&mut self, daemon: &Daemon, name: &str, stdin: &str) -> Output {
        let mut child = daemon
            .cli_command(&["secret", "set", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command refused before it reads stdin (a bad name) closes it: not this test's error.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        self.record(child.wait_with_output().unwrap())
    }

    fn record(&mut self, output: Output) -> Output {
        self.0.push_str(&String::from_utf8_lossy(&output.stdout));
        self.0.push_str(&String::from_utf8_lossy(&output.stderr));
        output
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Fails if any file below `dir` holds one of `values`.
fn assert_nowhere_in(dir: &Path, values: &[&str]) {
    let found = files(dir);
    assert!(!found.is_empty(), "{} is empty", dir.display());
    for file in found {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for value in values {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds a secret value",
                file.display()
            );
        }
    }
}

#[test]
fn secrets_are_set_listed_audited_and_removed_without_ever_showing_a_value() {
    let mut daemon = Daemon::start_process(&[], "");
    let mut seen = Seen::default();

    // From stdin: one trailing newline is not part of the value.
    let set = seen.set(&daemon, "API_TOKEN", &format!("{VALUE}\n"));
    assert_eq!(ok(&set), "set secret API_TOKEN\n");
    let set = seen.set(&daemon, "db_password", OTHER_VALUE);
    ok(&set);

    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "UPDATED", "BY"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert!(rows[0].starts_with("API_TOKEN "), "{ls}");
    assert!(rows[1].starts_with("db_password "), "{ls}");
    // The peer's own name, from its uid: not whatever `$USER` says.
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let user = String::from_utf8(user.stdout).unwrap().trim().to_owned();
    assert!(
        rows[0].contains(&format!("{user} (uid ")),
        "the setter is named: {ls}"
    );

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["secret", "ls", "--json"]))).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "API_TOKEN");
    assert!(listed[0]["updated_at"].is_string(), "{listed:?}");
    assert!(listed[0].get("value").is_none());

    // Bad input is refused with exit code 2 and names what is wrong.
    let bad = seen.set(&daemon, "9lives", VALUE);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let empty = seen.set(&daemon, "EMPTY", "\n");
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
    assert!(
        text(&empty.stderr).contains("empty"),
        "{}",
        text(&empty.stderr)
    );
    let unknown = seen.cli(&daemon, &["secret", "rm", "NOPE"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no secret named `NOPE`"));

    let rm = seen.cli(&daemon, &["secret", "rm", "db_password"]);
    assert_eq!(ok(&rm), "removed secret db_password\n");
    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    assert!(
        ls.contains("API_TOKEN") && !ls.contains("db_password"),
        "{ls}"
    );

    let log = ok(&seen.cli(&daemon, &["secret", "log"]));
    let actions: Vec<Vec<&str>> = log
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().skip(2).take(3).collect())
        .collect();
    assert_eq!(
        actions,
        [
            ["set", "API_TOKEN", user.as_str()],
            ["set", "db_password", user.as_str()],
            ["rm", "db_password", user.as_str()],
        ],
        "{log}"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["secret", "log", "--json"]))).unwrap();
    assert_eq!(audit[2]["action"], "rm");
    assert_eq!(audit[2]["name"], "db_password");
    assert!(audit[2]["at"].is_string());

    // A clean stop, so that the log files and the database are complete on disk.
    ok(&seen.cli(&daemon, &["daemon", "stop"]));
    for value in [VALUE, OTHER_VALUE] {
        assert!(!seen.0.contains(value), "a CLI output shows a value");
    }
    assert_nowhere_in(&daemon.data_dir.join("logs"), &[VALUE, OTHER_VALUE]);
    assert_nowhere_in(&daemon.data_dir.join("db"), &[VALUE, OTHER_VALUE]);

    // The secret survives a restart.
    daemon.restart();
    let ls = ok(&seen.cli(&daemon, &["secret", "ls"]));
    assert!(
        ls.contains("API_TOKEN") && !ls.contains("db_password"),
        "{ls}"
    );
    assert!(!seen.0.contains(VALUE));
}

#[test]
fn a_vault_key_open_to_others_stops_the_daemon() {
    let mut daemon = Daemon::start_process(&[], "");
    let key = daemon.data_dir.join("vault.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is created private");
    ok(&daemon.cli(&["daemon", "stop"]));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut refused = daemon
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("runbookd started with a vault key of mode 644");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = text(&refused.wait_with_output().unwrap().stderr);
    assert!(!status.success());
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("mode 644"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );

    // Following the advice is enough.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    daemon.restart();
    ok(&daemon.cli(&["secret", "ls"]));
}

/// A value distinctive enough that finding it (or its reversal, or its hex) anywhere can
/// only be a leak; made of characters no encoding changes.
const CANARY: &str = "Canary-7Qx9-Zebra-4711";

/// Every kind of step that may see a secret, each using the canary.
const CANARY_RUNBOOK: &str = r#"
[targets.api]
url = "{url}"
headers = { X-Canary = "{{ secrets.CANARY }}" }

# The far side echoes the header and the body that carried the value.
[[steps]]
id = "send"
uses = "http"
with = { target = "api", path = "/echo/canary", json = { token = "{{ secrets.CANARY }}" } }

# Both expectations fail, on a response that echoes the value back.
[[steps]]
id = "expect"
uses = "http"
with = { url = "{url}/echo/expect", headers = { X-Canary = "{{ secrets.CANARY }}" }, expect = { json = { "$.headers['x-canary']" = { equals = "nope" } }, body_contains = "{{ secrets.CANARY }}" } }

# The error names the URL, which holds the value.
[[steps]]
id = "unreachable"
uses = "http"
with = { url = "http://127.0.0.1:1/x?token={{ secrets.CANARY }}" }

[[steps]]
id = "print"
uses = "shell"
with = { command = ["printf", "%s\n", "{{ secrets.CANARY }}"] }

# A guest that tries to read the value and hand it out in a form masking cannot recognise.
[[steps]]
id = "guest"
uses = "probe"
needs = ["send", "print"]
with = { mode = "reveal", value = "{{ secrets.CANARY }}" }
"#;

/// Lower-case hex of `text`'s bytes, as the probe's `reveal` mode writes it.
fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// Fails if `text` holds the canary in any form a leak could take here.
fn assert_no_canary(what: &str, text: &str) {
    let reversed: String = CANARY.chars().rev().collect();
    for form in [CANARY.to_owned(), reversed, hex(CANARY)] {
        assert!(
            !text.contains(&form),
            "{what} holds the canary ({form}): {text}"
        );
    }
}

#[test]
fn a_canary_used_by_every_kind_of_step_shows_up_nowhere() {
    let server = TestServer::start();
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(probe_plugin(), plugins.path().join("probe.wasm")).unwrap();
    let config = format!(
        "plugins_dir = {:?}\n\n[approvals]\nshell = \"auto\"\nprobe = \"auto\"\n",
        plugins.path().display().to_string()
    );
    let runbook = CANARY_RUNBOOK.replace("{url}", &server.url());
    let daemon = Daemon::start_process(&[("canary.toml", &runbook)], &config);
    let mut seen = Seen::default();
    ok(&seen.set(&daemon, "CANARY", CANARY));
    // The plugins directory is loaded before the daemon says READY=1, so the runbook that
    // uses its kind is valid from the first look.
    let listed = daemon.json(&["ls"]);
    assert_eq!(listed[0]["valid"], true, "{listed:#}");

    // `run --wait` prints the run's events as they happen.
    let waited = seen.cli(&daemon, &["run", "canary", "--wait"]);
    let waited_text = text(&waited.stdout);
    assert_eq!(
        waited.status.code(),
        Some(1),
        "the run starts and fails on purpose: {waited_text}{}",
        text(&waited.stderr)
    );
    let runs: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["runs", "--json"]))).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_owned();
    assert!(waited_text.contains(&run_id), "{waited_text}");
    assert!(waited_text.contains("print | ***"), "{waited_text}");
    let run: serde_json::Value =
        serde_json::from_str(&ok(&seen.cli(&daemon, &["show", &run_id, "--json"]))).unwrap();
    assert_eq!(
        run["status"], "failed",
        "two steps fail on purpose: {run:#}"
    );

    // The far side got the value, so there was something to mask.
    let sent = &server.requests_to("/echo/canary")[0];
    assert_eq!(sent.header("x-canary"), Some(CANARY));
    assert_eq!(sent.body_json().unwrap()["token"], CANARY);
    let send = step(&run, "send");
    assert_eq!(send["status"], "completed", "{run:#}");
    assert_eq!(send["output"]["body"]["headers"]["x-canary"], "***");
    assert_eq!(send["output"]["body"]["json"]["token"], "***");

    let expect = step(&run, "expect");
    assert_eq!(expect["status"], "failed", "{run:#}");
    let error = expect["error"].as_str().unwrap();
    assert!(
        error.contains(r#"expected "nope", got "***""#),
        "the echoed value is masked in the error: {error}"
    );
    assert!(
        error.contains(r#"expected the body to contain "***""#),
        "{error}"
    );
    assert_eq!(expect["output"]["body"]["headers"]["x-canary"], "***");

    let unreachable = step(&run, "unreachable");
    assert_eq!(unreachable["status"], "failed", "{run:#}");
    let error = unreachable["error"].as_str().unwrap();
    assert!(error.contains("token=***"), "{error}");

    assert_eq!(step(&run, "print")["output"]["stdout"], "***\n", "{run:#}");

    let guest = step(&run, "guest");
    assert_eq!(guest["status"], "completed", "{run:#}");
    assert_eq!(guest["output"]["value"], "***", "{guest:#}");
    let guest_saw = unhex(guest["output"]["seen_hex"].as_str().unwrap());
    assert!(
        guest_saw.contains("__rb_secret."),
        "the guest was handed a placeholder where the value was written: {guest_saw}"
    );
    assert!(
        guest_saw.contains("\"steps\""),
        "the guest saw the earlier steps' outputs too: {guest_saw}"
    );
    assert_no_canary("what the guest was given", &guest_saw);

    let events = daemon.events(&run_id).join("\n");
    assert!(events.contains("***"), "{events}");
    assert_no_canary("the run's events", &events);

    let shown = ok(&seen.cli(&daemon, &["show", &run_id]));
    assert!(shown.contains("token=***"), "{shown}");
    let logs = ok(&seen.cli(&daemon, &["logs", &run_id]));
    assert!(logs.contains("***"), "the printed value is masked: {logs}");
    // `watch` (like `run --wait`) exits non-zero for a failed run; its output is what counts.
    let watched = text(&seen.cli(&daemon, &["watch", &run_id]).stdout);
    assert!(watched.contains("token=***"), "{watched}");

    // A clean stop, so that the log files and the database are complete on disk.
    ok(&seen.cli(&daemon, &["daemon", "stop"]));
    assert_no_canary("the CLI's output", &seen.0);
    assert_no_canary("`run --wait`", &waited_text);
    assert_nowhere_in(&daemon.data_dir.join("logs"), &[CANARY]);
    assert_nowhere_in(&daemon.data_dir.join("db"), &[CANARY]);
    assert_nowhere_in(&daemon.data_dir, &[CANARY, &hex(CANARY)]);
}

/// A single-line value with characters that JSON, URLs and base64 each write differently.
const TOKEN: &str = "Zq9W\"k&3/+v-Canary-81f?";
/// A multi-line value, as a PEM key is, which commands print one line at a time.
const PEM: &str = "-----BEGIN CANARY KEY-----\nQ2FuYXJ5TGluZU9uZS1hYmNkZWZnaGlqa2xt\nQ2FuYXJ5TGluZVR3by1xcnN0dXZ3eHl6MDEy\n-----END CANARY KEY-----";

const FORMS_RUNBOOK: &str = r#"
[[steps]]
id = "forms"
uses = "shell"
with.env = { PEM = "{{ secrets.pem }}", TOKEN = "{{ secrets.token }}" }
with.script = '''
printf '%s\n' "$PEM"
printf '%s' "$TOKEN" | base64 -w0; echo
printf '%s' "$TOKEN" | base64 -w0 | tr '+/' '-_' | tr -d '='; echo
python3 -c 'import json, os, urllib.parse; t = os.environ["TOKEN"]; print(json.dumps(t)); print(urllib.parse.quote(t, safe=""))'
printf '%016380d%s\n' 0 "$TOKEN"
printf '%s\n' "$PEM" >&2
exit 3
'''

[[steps]]
id = "echoed"
uses = "http"
with = { url = "{url}/echo/basic", auth = { type = "basic", username = "ops", password = "{{ secrets.token }}" } }
"#;

/// Every form of the two values that masking must catch, and the first characters of the
/// token (what a cut made before masking would leave).
fn canary_forms() -> Vec<String> {
    use base64::Engine as _;
    let standard = base64::engine::general_purpose::STANDARD;
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forms = vec![
        TOKEN.to_owned(),
        TOKEN[..4].to_owned(),
        serde_json::to_string(TOKEN)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        "Zq9W%22k%263%2F%2Bv-Canary-81f%3F".to_owned(),
        standard.encode(TOKEN).trim_end_matches('=').to_owned(),
        url_safe.encode(TOKEN),
        standard.encode(format!("ops:{TOKEN}")),
    ];
    forms.extend(
        PEM.lines()
            .filter(|line| line.len() >= 8)
            .map(str::to_owned),
    );
    forms
}

#[test]
fn a_canary_in_every_form_is_masked_in_outputs_events_logs_and_the_data_directory() {
    let server = TestServer::start();
    let runbook = FORMS_RUNBOOK.replace("{url}", &server.url());
    let daemon = Daemon::start(
        &[("forms.toml", &runbook)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let mut seen = Seen::default();
    ok(&seen.set(&daemon, "token", TOKEN));
    ok(&seen.set(&daemon, "pem", PEM));
    let done = daemon.run_to_end("forms", &[]);
    let run_id = done["id"].as_str().unwrap().to_owned();
    let forms = step(&done, "forms");
    assert_eq!(forms["status"], "failed", "exit 3 on purpose: {done:#}");
    let stdout = forms["output"]["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.matches("***").count() >= 6,
        "every form was printed, masked: {stdout}"
    );
    let echoed = step(&done, "echoed");
    assert_eq!(echoed["status"], "completed", "{done:#}");
    assert!(
        echoed["output"]["body"]["headers"]["authorization"]
            .as_str()
            .unwrap_or_default()
            .contains("***"),
        "{echoed:#}"
    );

    let logs = seen.cli(&daemon, &["logs", &run_id]);
    let shown = format!(
        "{done}\n{}\n{}\n{}",
        daemon.events(&run_id).join("\n"),
        text(&logs.stdout),
        seen.0
    );
    for form in canary_forms() {
        assert!(
            !shown.contains(&form),
            "`{form}` shows up in an output, an event or the CLI's output"
        );
    }
    // Four bytes could occur by chance in binary files: the whole forms are looked for there.
    let whole: Vec<String> = canary_forms()
        .into_iter()
        .filter(|form| form.len() > 4)
        .collect();
    assert_nowhere_in(
        daemon.root.path(),
        &whole.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

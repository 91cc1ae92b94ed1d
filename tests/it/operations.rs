//! Operating the daemon: the metrics listener of `[metrics] listen` (`/metrics` in the
//! OpenMetrics text format, checked by Prometheus' own `promtool`; `/healthz`; `/readyz`),
//! and the same counters in `runbook status`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, required_here, step_status};

/// A run with a step that completes, one that fails, and one that fails once and completes
/// when retried; all three independent.
const MIXED: &str = r#"
[params]
mark = { type = "string", required = true }

[[steps]]
id = "fine"
uses = "shell"
with = { command = ["true"] }

[[steps]]
id = "broken"
uses = "shell"
with = { command = ["sh", "-c", "exit 4"] }

[[steps]]
id = "flaky"
uses = "shell"
retry = { attempts = 3, delay = "20ms", jitter = false }
with = { script = "if [ -f \"$MARK\" ]; then echo recovered; else touch \"$MARK\"; exit 3; fi", env = { MARK = "{{ params.mark }}" } }
"#;

/// Shell steps without approvals, and the metrics listener on a port the system picks.
const CONFIG: &str = "[approvals]\nshell = \"auto\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// `GET path` over HTTP/1.1 on `addr`: the status code and the body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    get_with(addr, path, "")
}

/// [`get`] with extra header lines (each ending in CRLF).
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The one sample of `series` (name and labels exactly as written) in an exposition.
fn sample(text: &str, series: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|value| value.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(values.len(), 1, "one sample of {series} in:\n{text}");
    values[0]
}

/// `promtool check metrics` (Debian's `prometheus` package) on an exposition: its problems,
/// or `None` when promtool is not on this machine.
fn promtool_problems(text: &str) -> Option<String> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .map(|_| ())
        .map_err(|err| format!("promtool: {err}"));
    if !required_here("promtool (Debian package `prometheus`)", found) {
        return None;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(if output.status.success() {
        said
    } else {
        format!("exit {:?}: {said}", output.status.code())
    })
}

#[test]
fn metrics_count_a_run_s_completed_failed_and_retried_steps_and_pass_promtool() {
    let daemon = Daemon::start(&[("mixed.toml", MIXED)], CONFIG);
    let mark = daemon.root.path().join("mark");
    let run = daemon.run_to_end("mixed", &[&format!("mark={}", mark.display())]);
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(step_status(&run, "fine"), "completed");
    assert_eq!(step_status(&run, "broken"), "failed");
    assert_eq!(step_status(&run, "flaky"), "completed");

    let status = daemon.json(&["status"]);
    assert_eq!(status["ready"], true, "{status:#}");
    let addr: SocketAddr = status["metrics_listen"]
        .as_str()
        .expect("status names the metrics address")
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    let counters = &status["counters"];
    assert_eq!(counters["runs_started"], 1, "{status:#}");
    assert_eq!(counters["runs_finished"]["failed"], 1, "{status:#}");
    assert_eq!(counters["steps_finished"]["completed"], 2, "{status:#}");
    assert_eq!(counters["steps_finished"]["failed"], 1, "{status:#}");
    assert_eq!(counters["step_attempts"], 4, "{status:#}");
    assert_eq!(counters["step_retries"], 1, "{status:#}");
    assert_eq!(counters["step_timeouts"], 0, "{status:#}");
    assert!(status["store_bytes"].as_u64().unwrap() > 0, "{status:#}");

    let (code, text) = get(addr, "/metrics").unwrap();
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        sample(&text, r#"runbook_runs_started_total{runbook="mixed"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"runbook_runs_finished_total{runbook="mixed",status="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"runbook_steps_total{kind="shell",status="completed"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"runbook_steps_total{kind="shell",status="failed"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"runbook_step_attempts_total{kind="shell"}"#),
        4.0
    );
    assert_eq!(
        sample(&text, r#"runbook_step_retries_total{kind="shell"}"#),
        1.0
    );
    // Every ended step's last attempt is timed; the retried one's first attempt is not
    // counted as an ended step.
    assert_eq!(
        sample(
            &text,
            r#"runbook_step_duration_seconds_count{kind="shell",status="completed"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"runbook_plugin_call_duration_seconds_count{kind="shell",function="execute"}"#
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            r#"runbook_grpc_requests_total{method="runbook.v1.Runbook/StartRun",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(sample(&text, "runbook_active_runs"), 0.0);
    assert_eq!(sample(&text, "runbook_steps_in_flight"), 0.0);
    assert_eq!(sample(&text, "runbook_approvals_waiting"), 0.0);
    assert!(sample(&text, "runbook_store_size_bytes") > 0.0);
    assert!(sample(&text, "runbook_event_publish_lag_seconds_count") >= 1.0);
    // Labels never carry a run id.
    let id = run["id"].as_str().unwrap();
    assert!(!text.contains(id), "a run id in the metrics:\n{text}");

    // Without an Accept header: the Prometheus text format, as promtool reads it.
    assert!(
        text.contains("# TYPE runbook_steps_total counter\n") && !text.contains("# EOF"),
        "{text}"
    );
    if let Some(problems) = promtool_problems(&text) {
        assert!(problems.trim().is_empty(), "promtool: {problems}\n{text}");
    }
    // Prometheus asks for OpenMetrics, and gets it: the same samples.
    let (code, openmetrics) = get_with(
        addr,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        openmetrics.contains("# TYPE runbook_steps counter\n") && openmetrics.ends_with("# EOF\n"),
        "{openmetrics}"
    );
    assert_eq!(
        sample(
            &openmetrics,
            r#"runbook_steps_total{kind="shell",status="completed"}"#
        ),
        2.0
    );
    let (code, body) = get(addr, "/healthz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(addr, "/readyz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ready\n"));
    let (code, _) = get(addr, "/nothing-here").unwrap();
    assert_eq!(code, 404);
}

/// A method the server does not have is counted under one label, whatever its name: a
/// client cannot grow the metrics.
#[test]
fn unknown_grpc_methods_share_one_label() {
    let daemon = Daemon::start(&[], CONFIG);
    runbook_e2e::block_on(async {
        let channel = runbook_protocol::connect(&daemon.socket).await.unwrap();
        let mut client = tonic::client::Grpc::new(channel);
        for name in ["Nope1", "Nope2", "Nope3"] {
            client.ready().await.unwrap();
            let path = format!("/runbook.v1.Runbook/{name}").parse().unwrap();
            let answer: Result<tonic::Response<()>, tonic::Status> = client
                .unary(
                    tonic::Request::new(()),
                    path,
                    tonic_prost::ProstCodec::<(), ()>::default(),
                )
                .await;
            assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
        }
    });
    let status = daemon.json(&["status"]);
    let addr: SocketAddr = status["metrics_listen"].as_str().unwrap().parse().unwrap();
    let (_, text) = get(addr, "/metrics").unwrap();
    assert_eq!(
        sample(
            &text,
            r#"runbook_grpc_requests_total{method="unknown",code="UNIMPLEMENTED"}"#
        ),
        3.0
    );
    assert!(!text.contains("Nope"), "{text}");
}

/// A component's bytes with a custom section appended (`runbook-test-nonce`): the same
/// plugin, but content no cache has seen, so the daemon compiles it while it starts.
fn uncached_copy(wasm: &[u8]) -> Vec<u8> {
    let name = b"runbook-test-nonce";
    let nonce = format!("{:?}", Instant::now());
    let payload_len = 1 + name.len() + nonce.len();
    let mut bytes = wasm.to_vec();
    bytes.push(0);
    // LEB128 of the section's size; the name's length fits one byte.
    let mut size = payload_len;
    loop {
        let byte = u8::try_from(size & 0x7f).unwrap();
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(nonce.as_bytes());
    bytes
}

#[test]
fn readyz_says_503_while_the_daemon_starts_and_200_once_it_is_ready() {
    // The port must be known before the daemon can say it: one the system just gave out.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = format!("[metrics]\nlisten = \"{addr}\"\n");
    let daemon = Daemon::prepare(&[], &config);
    // A plugin to compile keeps the start busy for a while ("loading plugins").
    std::fs::create_dir_all(daemon.plugins_dir()).unwrap();
    let probe = std::fs::read(runbook_e2e::test_plugin("probe")).unwrap();
    std::fs::write(
        daemon.plugins_dir().join("probe.wasm"),
        uncached_copy(&probe),
    )
    .unwrap();

    // Watches /readyz from before the start until it says ready.
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "never ready; saw {seen:?}");
            match get(addr, "/readyz") {
                Ok((200, body)) => {
                    seen.push((200, body));
                    return seen;
                }
                Ok(answer) => {
                    if seen.last() != Some(&answer) {
                        seen.push(answer);
                    }
                }
                // Not listening yet.
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let daemon = daemon.start_prepared();
    let seen = watcher.join().unwrap();
    assert!(
        seen.contains(&(503, "not ready: starting: loading plugins\n".to_owned())),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&(200, "ready\n".to_owned())), "{seen:?}");
    // While it starts, the process answers: healthz says so once it is up too.
    assert_eq!(get(addr, "/healthz").unwrap(), (200, "ok\n".to_owned()));
    let status = daemon.cli(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("ready        yes"), "{text}");
    assert!(
        text.contains(&format!("metrics      http://{addr}/metrics")),
        "{text}"
    );
}

#[test]
fn a_metrics_address_that_is_not_one_stops_the_start_with_the_setting_named() {
    let daemon = Daemon::prepare(&[], "[metrics]\nlisten = \"localhost\"\n");
    let output = daemon.command().output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("metrics.listen"), "{stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
}

//! Resilient HTTP calls against a real server that counts what it receives: retries with
//! their delays, 4xx never retried, Retry-After honoured, circuit breakers that stop traffic
//! and a probe that closes them (or, cancelled, frees the circuit to probe again), and rate
//! limits shared by every step of every run.

use std::time::Duration;

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, step, step_status};

/// Unix milliseconds of a time as the CLI's JSON writes it (RFC 3339).
fn millis(value: &serde_json::Value) -> i64 {
    let time = humantime::parse_rfc3339(value.as_str().unwrap()).unwrap();
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

#[test]
fn a_failing_endpoint_gets_exactly_n_plus_one_attempts_with_the_policy_delays() {
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "exponential"
uses = "http"
retry = { attempts = 5, backoff = "exponential", delay = "150ms", jitter = false }
with = { url = "{url}/flaky/a?fail=3" }

[[steps]]
id = "linear"
uses = "http"
retry = { attempts = 5, backoff = "linear", delay = "100ms", jitter = false }
with = { url = "{url}/flaky/l?fail=3" }

[[steps]]
id = "capped"
uses = "http"
retry = { attempts = 5, backoff = "exponential", delay = "100ms", max_delay = "250ms", jitter = false }
with = { url = "{url}/flaky/c?fail=3" }

[[steps]]
id = "missing"
uses = "http"
retry = { attempts = 5, delay = "50ms", jitter = false }
with = { url = "{url}/status/404" }

[[steps]]
id = "throttled"
uses = "http"
retry = { attempts = 3, delay = "10ms", jitter = false }
with = { url = "{url}/flaky/b?fail=1&status=429&retry_after=1" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("resilient.toml", &runbook)], "");
    let run = daemon.run_to_end("resilient", &[]);
    let events = daemon.events(run["id"].as_str().unwrap());

    for (id, key, delays) in [
        ("exponential", "/flaky/a", [150_u32, 300, 600]),
        ("linear", "/flaky/l", [100, 200, 300]),
        ("capped", "/flaky/c", [100, 200, 250]),
    ] {
        assert_eq!(step_status(&run, id), "completed", "{run:#}");
        assert_eq!(server.count(key), 4, "{id}: 3 failures, then the success");
        assert_eq!(step(&run, id)["attempts"], 4, "{id}");
        let history = step(&run, id)["history"].as_array().unwrap().clone();
        assert_eq!(history.len(), 4, "{id}: {history:#?}");
        for failed in &history[..3] {
            let error = failed["error"].as_str().unwrap_or_default();
            assert!(error.contains("503"), "{id}: {history:#?}");
        }
        assert!(history[3]["error"].is_null(), "{id}: {history:#?}");
        assert_eq!(
            retry_delays(&events, id),
            delays.map(u64::from),
            "{id}: the recorded waits follow the policy"
        );
        // And the waits really happened: the server saw each retry at least that late.
        let arrivals: Vec<f64> = server
            .requests_to(key)
            .iter()
            .map(|r| r.elapsed_ms)
            .collect();
        for (gap, delay) in arrivals.windows(2).zip(delays) {
            assert!(
                gap[1] - gap[0] >= f64::from(delay),
                "{id}: {arrivals:?} against {delays:?}"
            );
        }
        let first_wait = millis(&history[1]["started_at"]) - millis(&history[0]["finished_at"]);
        assert!(first_wait >= i64::from(delays[0]), "{id}: {history:#?}");
    }

    assert_eq!(step_status(&run, "missing"), "failed");
    assert_eq!(server.count("/status/404"), 1, "a 4xx is not retried");
    assert!(retry_delays(&events, "missing").is_empty());

    assert_eq!(step_status(&run, "throttled"), "completed", "{run:#}");
    let throttled: Vec<f64> = server
        .requests_to("/flaky/b")
        .iter()
        .map(|r| r.elapsed_ms)
        .collect();
    assert_eq!(throttled.len(), 2);
    assert!(
        throttled[1] - throttled[0] >= 1000.0,
        "Retry-After: 1 is honoured over a 10ms delay: {throttled:?}"
    );
    assert_eq!(retry_delays(&events, "throttled"), [1000]);
}

/// The `delay_ms` of each `StepRetrying` event of step `id`, in order.
fn retry_delays(events: &[String], id: &str) -> Vec<u64> {
    let marker = format!("StepRetrying(StepRetrying {{ step_id: \"{id}\",");
    events
        .iter()
        .filter(|event| event.contains(&marker))
        .map(|event| {
            let (_, rest) = event
                .split_once("delay_ms: ")
                .unwrap_or_else(|| panic!("no delay_ms in {event}"));
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect()
}

#[test]
fn an_open_circuit_stops_traffic_until_a_probe_succeeds() {
    let server = TestServer::start();
    server.set_failing("cb", true);
    let runbook = r#"
[targets.api]
url = "{url}"
circuit_breaker = { failures = 3, cooldown = "1s" }

[[steps]]
id = "call"
uses = "http"
with = { target = "api", path = "/toggle/cb" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("breaker.toml", &runbook)], "");
    for _ in 0..3 {
        let run = daemon.run_to_end("breaker", &[]);
        assert_eq!(step_status(&run, "call"), "failed");
    }
    assert_eq!(server.count("/toggle/cb"), 3);

    for _ in 0..2 {
        let run = daemon.run_to_end("breaker", &[]);
        let error = step(&run, "call")["error"].as_str().unwrap().to_owned();
        assert!(error.contains("circuit open"), "{error}");
    }
    assert_eq!(
        server.count("/toggle/cb"),
        3,
        "an open circuit sends nothing to the server"
    );
    let targets = daemon.json(&["targets"]);
    assert_eq!(targets[0]["circuit"], "open", "{targets:#}");
    assert_eq!(targets[0]["rejected"], 2);

    server.set_failing("cb", false);
    std::thread::sleep(Duration::from_millis(1100));
    let run = daemon.run_to_end("breaker", &[]);
    assert_eq!(step_status(&run, "call"), "completed", "the probe succeeds");
    assert_eq!(server.count("/toggle/cb"), 4);
    let targets = daemon.json(&["targets"]);
    assert_eq!(targets[0]["circuit"], "closed", "{targets:#}");
    let printed = String::from_utf8_lossy(&daemon.cli(&["targets"]).stdout).into_owned();
    assert!(
        printed.contains("breaker") && printed.contains("closed"),
        "{printed}"
    );
}

#[test]
fn a_probe_cancelled_mid_call_frees_the_circuit_to_probe_again() {
    let server = TestServer::start();
    server.set_failing("cb", true);
    let runbook = r#"
[params]
path = { type = "string", required = true }

[targets.api]
url = "{url}"
circuit_breaker = { failures = 1, cooldown = "200ms" }

[[steps]]
id = "call"
uses = "http"
with = { target = "api", path = "{{ params.path }}" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("probe.toml", &runbook)], "");
    let opened = daemon.run_to_end("probe", &["path=/toggle/cb"]);
    assert_eq!(step_status(&opened, "call"), "failed");
    std::thread::sleep(Duration::from_millis(250));

    // The cooldown is over: this call is the probe, and it is cancelled while it waits.
    let probe = daemon.start_run("probe", &["path=/slow/20000"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.count("/slow") == 0 {
        assert!(std::time::Instant::now() < deadline, "the probe never went");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.cli(&["cancel", &probe]).status.success());
    daemon.wait_for(&probe, "the cancel", |shown| shown["status"] == "cancelled");

    server.set_failing("cb", false);
    let next = daemon.run_to_end("probe", &["path=/toggle/cb"]);
    assert_eq!(
        step_status(&next, "call"),
        "completed",
        "the next call probes instead of waiting on a probe that never reports: {next:#}"
    );
}

/// A runbook of twelve independent steps against the target `api`, limited by `limit`.
fn twelve_limited_steps(server: &TestServer, limit: &str, path: &str) -> String {
    let mut runbook = format!(
        "max_parallel = 12\n\n[targets.api]\nurl = \"{}\"\n{limit}\n",
        server.url()
    );
    for index in 0..12 {
        runbook.push_str(&format!(
            "\n[[steps]]\nid = \"s{index}\"\nuses = \"http\"\nwith = {{ target = \"api\", path = \"{path}\" }}\n"
        ));
    }
    runbook
}

/// When the requests to `path` arrived, in ms since the server started, in order.
fn arrivals(server: &TestServer, path: &str) -> Vec<f64> {
    let mut arrivals: Vec<f64> = server
        .requests_to(path)
        .iter()
        .map(|r| r.elapsed_ms)
        .collect();
    arrivals.sort_by(f64::total_cmp);
    arrivals
}

#[test]
fn a_rate_limit_holds_across_parallel_steps_and_runs() {
    let server = TestServer::start();
    let runbook = twelve_limited_steps(&server, "rate_limit = \"10/s\"\nburst = 3", "/echo/rl");
    let daemon = Daemon::start(&[("limited.toml", &runbook)], "");
    let first = daemon.start_run("limited", &[]);
    let second = daemon.start_run("limited", &[]);
    for run in [&first, &second] {
        let done = daemon.wait_for(run, "the run to end", |shown| {
            shown["status"] == "completed" || shown["status"] == "failed"
        });
        assert_eq!(done["status"], "completed", "{done:#}");
    }
    let arrivals = arrivals(&server, "/echo/rl");
    assert_eq!(arrivals.len(), 24);
    // In any one-second window: at most the rate plus the burst.
    for (index, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[index..]
            .iter()
            .take_while(|at| **at < start + 1000.0)
            .count();
        assert!(
            in_window <= 13,
            "{in_window} requests within 1s from {start}: {arrivals:?}"
        );
    }
    let events = daemon.events(&second).join("\n");
    assert!(
        events.contains("rate-limit permit"),
        "a step held for a permit says so: {events}"
    );
    // And its record says it as data, for clients that show why a step waits.
    assert!(
        events.contains("StepPermitWait(StepPermitWait { step_id: \"s")
            && events.contains("wait: Some(PermitWait { target: \"api\", limit: \"10/s\", until: "),
        "a typed wait event: {events}"
    );
}

#[test]
fn a_sliding_window_lets_a_bunch_go_then_counts_the_whole_window() {
    let server = TestServer::start();
    let runbook = twelve_limited_steps(
        &server,
        r#"rate_limit = { max = 4, window = "1s" }"#,
        "/echo/sw",
    );
    let daemon = Daemon::start(&[("window.toml", &runbook)], "");
    let run = daemon.run_to_end("window", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    let arrivals = arrivals(&server, "/echo/sw");
    assert_eq!(arrivals.len(), 12);
    // A window does not pace: the first four go together (a bucket of 4/s would space them
    // 250 ms apart).
    assert!(
        arrivals[3] - arrivals[0] < 500.0,
        "the first four bunch: {arrivals:?}"
    );
    // Then never more than four within a window. The daemon counts when it grants a permit,
    // the server when the request lands; 100 ms of slack covers the difference.
    for (index, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[index..]
            .iter()
            .take_while(|at| **at < start + 900.0)
            .count();
        assert!(
            in_window <= 4,
            "{in_window} requests within 900 ms from {start}: {arrivals:?}"
        );
    }
    let targets = daemon.json(&["targets"]);
    assert_eq!(targets[0]["rate_limit"], "4 per 1s", "{targets:#}");
    assert_eq!(targets[0]["rate_limit_kind"], "sliding_window");
    let printed = String::from_utf8_lossy(&daemon.cli(&["targets"]).stdout).into_owned();
    assert!(printed.contains("4 per 1s (sliding window)"), "{printed}");
    let events = daemon.events(run["id"].as_str().expect("id")).join("\n");
    assert!(
        events.contains("limit: \"4 per 1s\""),
        "a held step names the window it waits for: {events}"
    );
}

#[test]
fn a_retry_if_retries_what_the_response_says_and_nothing_else() {
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "conflict"
uses = "http"
retry = { attempts = 5, delay = "10ms", jitter = false, if = "output.status == 409" }
with = { url = "{url}/flaky/c?fail=2&status=409" }

[[steps]]
id = "unavailable"
uses = "http"
retry = { attempts = 5, delay = "10ms", jitter = false, if = "output.status == 409" }
with = { url = "{url}/flaky/u?fail=2&status=503" }

[[steps]]
id = "unreadable"
uses = "http"
retry = { attempts = 5, delay = "10ms", jitter = false, if = "output.headers.missing == 'x'" }
with = { url = "{url}/status/409" }

[[steps]]
id = "by_body"
uses = "http"
retry = { attempts = 5, delay = "10ms", jitter = false, if = "output.status == 409 and output.body.ok == false and output.body.attempt < 2" }
with = { url = "{url}/flaky/b?fail=3&status=409" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("conditional.toml", &runbook)], "");
    let run = daemon.run_to_end("conditional", &[]);

    // A 409 is permanent to the http step, but the policy's `if` asks for another attempt.
    assert_eq!(step_status(&run, "conflict"), "completed", "{run:#}");
    assert_eq!(step(&run, "conflict")["attempts"], 3);
    assert_eq!(
        server.count("/flaky/c"),
        3,
        "two conflicts, then the success"
    );
    // A 503 is transient, but the `if` does not name it: `on` no longer applies.
    assert_eq!(step_status(&run, "unavailable"), "failed");
    assert_eq!(server.count("/flaky/u"), 1);
    // The 409's body decides: its first says attempt 1 (tried again), its second attempt 2
    // (not), though the policy would allow five.
    assert_eq!(step_status(&run, "by_body"), "failed");
    assert_eq!(step(&run, "by_body")["attempts"], 2);
    assert_eq!(server.count("/flaky/b"), 2);
    // An `if` that reads what the output does not have retries nothing, and says why.
    assert_eq!(step_status(&run, "unreadable"), "failed");
    assert_eq!(server.count("/status/409"), 1);
    let error = step(&run, "unreadable")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("409")
            && error.contains(
                "; not retried: retry.if `output.headers.missing == 'x'` cannot be evaluated"
            ),
        "{error}"
    );
}

//! Async invocations: a 202 with `X-Invocation-Id` parks the step as `waiting`; the daemon
//! polls the status URL on fresh plugin instances until the work is done, failed or late, an
//! operator may end the wait with `runbook complete`, and a wait survives kill -9.

use runbook_e2e::http_server::TestServer;
use runbook_e2e::{Daemon, step, step_status};

/// A runbook with one async step against `/jobs` with `query`.
fn job_runbook(server: &TestServer, query: &str, timeout: &str) -> String {
    r#"
[[steps]]
id = "job"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?{query}"
with.async = { status_url = "{url}/jobs/{{ invocation_id }}", done_when = "$[?@.state == 'done']", failed_when = "$[?@.state == 'failed']", poll_every = "100ms", timeout = "{timeout}" }
with.capture = { value = "$.result.value" }

[[steps]]
id = "after"
uses = "http"
needs = ["job"]
with = { url = "{url}/echo/after?value={{ steps.job.output.captures.value }}" }
"#
    .replace("{url}", &server.url())
    .replace("{query}", query)
    .replace("{timeout}", timeout)
}

/// A daemon serving `job_runbook` as `jobs`.
fn jobs_daemon(server: &TestServer, query: &str, timeout: &str) -> Daemon {
    Daemon::start_process(&[("jobs.toml", &job_runbook(server, query, timeout))], "")
}

/// Waits until the run's `job` step waits for its invocation; returns the invocation id.
fn invocation_of(daemon: &Daemon, run: &str) -> String {
    // The run waits with its step.
    let waiting = daemon.wait_for(run, "the step and its run to wait", |shown| {
        shown["status"] == "waiting"
            && step_status(shown, "job") == "waiting"
            && !step(shown, "job")["invocation_id"].is_null()
    });
    step(&waiting, "job")["invocation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// How many times the work was started (not polled).
fn started_jobs(server: &TestServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/jobs")
        .count()
}

#[test]
fn a_202_waits_and_completes_with_the_polled_output() {
    let server = TestServer::start();
    let daemon = jobs_daemon(&server, "polls=3&outcome=done", "1m");
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    assert!(invocation.starts_with("job-"), "{invocation}");

    let done = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    let job = step(&done, "job");
    assert_eq!(job["output"]["body"]["state"], "done", "{job:#}");
    assert_eq!(job["output"]["captures"]["value"], 42);
    assert_eq!(
        server.requests_to("/echo/after")[0].query,
        "value=42",
        "a later step reads the polled output"
    );
    let polls = server.requests_to(&format!("/jobs/{invocation}"));
    assert_eq!(
        polls.len(),
        4,
        "three polls see it running, the fourth sees it done, and polling stops there"
    );
    for poll in &polls {
        assert_eq!(poll.method, "GET", "the status URL is read, not posted to");
        assert_eq!(
            poll.header("idempotency-key"),
            Some(format!("{run}-job").as_str()),
            "polls carry the step's idempotency key"
        );
    }
    assert_eq!(started_jobs(&server), 1, "the work is started once");
}

#[test]
fn a_failed_job_fails_the_step_and_a_late_one_times_out() {
    let server = TestServer::start();
    let failing = job_runbook(&server, "polls=1&outcome=failed", "1m");
    let late = job_runbook(&server, "outcome=never", "700ms");
    let daemon = Daemon::start(&[("failing.toml", &failing), ("late.toml", &late)], "");

    let run = daemon.run_to_end("failing", &[]);
    assert_eq!(step_status(&run, "job"), "failed", "{run:#}");
    let error = step(&run, "job")["error"].as_str().unwrap();
    assert!(error.contains("disk full"), "{error}");
    assert_eq!(step_status(&run, "after"), "skipped");

    let run = daemon.run_to_end("late", &[]);
    assert_eq!(step_status(&run, "job"), "timed_out", "{run:#}");
    assert_eq!(run["status"], "failed");
    let error = step(&run, "job")["error"].as_str().unwrap();
    assert!(error.contains("no completion within"), "{error}");
}

#[test]
fn runbook_complete_ends_a_waiting_step_from_outside() {
    let server = TestServer::start();
    let daemon = jobs_daemon(&server, "outcome=never", "10m");
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);

    let wrong = daemon.cli(&["complete", &run, "after"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "only a waiting step can be completed"
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not waiting"));

    let output = r#"{"captures": {"value": 7}, "by": "hand"}"#;
    let done = daemon.cli(&["complete", &run, &invocation, "--output", output]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let run = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step(&run, "job")["output"]["by"], "hand");
    assert_eq!(server.requests_to("/echo/after")[0].query, "value=7");

    let second = daemon.start_run("jobs", &[]);
    invocation_of(&daemon, &second);
    let failed = daemon.cli(&[
        "complete", &second, "job", "--failed", "--reason", "gave up",
    ]);
    assert!(failed.status.success());
    let second = daemon.wait_for(&second, "the run to end", |shown| {
        shown["status"] == "failed"
    });
    let error = step(&second, "job")["error"].as_str().unwrap();
    assert!(error.contains("gave up"), "{error}");
}

#[test]
fn a_wait_survives_kill_9_and_completes_after_the_restart() {
    let server = TestServer::start();
    let mut daemon = jobs_daemon(&server, "polls=15&outcome=done", "2m");
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    daemon.kill9();
    let polled_before = server.count(&format!("/jobs/{invocation}"));
    daemon.restart();

    let done = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed" || shown["status"] == "failed"
    });
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(step(&done, "job")["output"]["captures"]["value"], 42);
    assert!(server.count(&format!("/jobs/{invocation}")) > polled_before);
    assert_eq!(
        started_jobs(&server),
        1,
        "the restarted daemon resumes the wait; it does not start the work again"
    );
}

#[test]
fn a_custom_invocation_header_starts_a_wait_and_a_bare_202_polls_its_location() {
    let server = TestServer::start();
    let runbook = r#"
# A 200 is not a 202: only the configured header makes this step wait.
[[steps]]
id = "custom"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?polls=2&outcome=done&header=X-Job-Ref&code=200"
with.async = { invocation_header = "X-Job-Ref", status_url = "{url}/jobs/{{ invocation_id }}", done_when = "$[?@.state == 'done']", poll_every = "100ms", timeout = "1m" }
with.capture = { value = "$.result.value" }

# The default header on a 200 means nothing to a step that names another one.
[[steps]]
id = "other_header"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?outcome=never&code=200"
with.async = { invocation_header = "X-Job-Ref", status_url = "{url}/jobs/{{ invocation_id }}", poll_every = "100ms", timeout = "1m" }

# A 202 without any invocation header: the step waits and polls the Location.
[[steps]]
id = "bare"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?polls=2&outcome=done&header=none"
with.async = { done_when = "$[?@.state == 'done']", poll_every = "100ms", timeout = "1m" }
with.capture = { value = "$.result.value" }

# A status URL built from the invocation id cannot be built without one.
[[steps]]
id = "no_id"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?outcome=done&header=none"
with.async = { status_url = "{url}/jobs/{{ invocation_id }}", poll_every = "100ms", timeout = "1m" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("custom.toml", &runbook)], "");
    let run = daemon.run_to_end("custom", &[]);

    let custom = step(&run, "custom");
    assert_eq!(custom["status"], "completed", "{run:#}");
    assert_eq!(
        custom["output"]["body"]["state"], "done",
        "the output is the polled status, not the 200 that started the work: {custom:#}"
    );
    assert_eq!(custom["output"]["captures"]["value"], 42);
    let custom_job = custom["output"]["body"]["id"].as_str().unwrap();
    assert_eq!(server.count(&format!("/jobs/{custom_job}")), 3);

    let other = step(&run, "other_header");
    assert_eq!(
        other["status"], "completed",
        "a 200 without the configured header is judged at once: {run:#}"
    );
    assert_eq!(other["output"]["status"], 200);
    let other_job = other["output"]["body"]["id"].as_str().unwrap();
    assert_eq!(
        server.count(&format!("/jobs/{other_job}")),
        0,
        "and never polled"
    );

    let bare = step(&run, "bare");
    assert_eq!(bare["status"], "completed", "{run:#}");
    assert_eq!(bare["output"]["body"]["state"], "done", "{bare:#}");
    assert_eq!(bare["output"]["captures"]["value"], 42);
    let bare_job = bare["output"]["body"]["id"].as_str().unwrap();
    let bare_polls = server.requests_to(&format!("/jobs/{bare_job}"));
    assert_eq!(bare_polls.len(), 3, "the Location was polled until done");
    assert!(
        bare["output"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/jobs/{bare_job}")),
        "{bare:#}"
    );

    let no_id = step(&run, "no_id");
    assert_eq!(no_id["status"], "failed", "{run:#}");
    let error = no_id["error"].as_str().unwrap();
    assert!(
        error.contains("needs the invocation id") && error.contains("X-Invocation-Id"),
        "{error}"
    );

    // What each step said when it started waiting: the id it read, or that it had none.
    let events = daemon.events(run["id"].as_str().unwrap());
    let waited = |id: &str| {
        events
            .iter()
            .filter(|event| {
                event.contains("StepOutput") && event.contains(&format!("step_id: \"{id}\""))
            })
            .find(|event| event.contains("info: waiting for"))
            .cloned()
            .unwrap_or_else(|| panic!("step {id} never waited: {events:#?}"))
    };
    let custom_wait = waited("custom");
    assert!(
        custom_wait.contains(&format!("waiting for invocation {custom_job};")),
        "the id comes from X-Job-Ref: {custom_wait}"
    );
    let bare_wait = waited("bare");
    assert!(
        bare_wait.contains("waiting for the async invocation;"),
        "{bare_wait}"
    );
    assert!(
        !events
            .iter()
            .any(|event| event.contains("step_id: \"other_header\"")
                && event.contains("waiting for")),
        "{events:#?}"
    );
}

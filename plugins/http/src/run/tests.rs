//! The whole step against a scripted host.
#![allow(clippy::unwrap_used)]

use runbook_plugin_sdk::runbook::plugin::http;
use runbook_plugin_sdk::runbook::plugin::types::{Outcome, StepContext};
use runbook_plugin_sdk::web::testing::{FakeHost, step_context};
use serde_json::Value;

use super::{execute, resume};

fn ctx() -> StepContext {
    step_context("01RUN", "deploy", 1)
}

fn done(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Done(json) => serde_json::from_str(&json).unwrap(),
        Outcome::Waiting(waiting) => panic!("waiting: {waiting:?}"),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn a_get_with_captures_completes_with_the_standard_output() {
    let host = FakeHost::new();
    host.respond(
        200,
        &[JSON, ("x-request-id", "r1")],
        r#"{"version": "2", "ok": true}"#,
    );
    let output = done(
        execute(
            &host,
            &ctx(),
            r#"{"url": "http://api/health", "expect": {"status": 200, "json": {"$.version": {"equals": "2"}}},
                "capture": {"version": "$.version", "rid": {"header": "X-Request-Id"}}}"#,
        )
        .unwrap(),
    );
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"]["ok"], true);
    assert_eq!(
        output["captures"],
        serde_json::json!({"version": "2", "rid": "r1"})
    );
    let sent = host.request(0).unwrap();
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.url, "http://api/health");
    assert!(
        sent.headers
            .contains(&("Idempotency-Key".into(), "01RUN-deploy".into()))
    );
}

#[test]
fn a_failed_status_on_a_503_is_transient_with_retry_after() {
    let host = FakeHost::new();
    host.respond(503, &[("retry-after", "7")], "busy");
    let err = execute(
        &host,
        &ctx(),
        r#"{"url": "http://api/x", "expect": {"status": 200}}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "expected status 200, got 503");
    assert!(err.transient);
    assert_eq!(err.retry_after_ms, Some(7000));
    let output: Value = serde_json::from_str(&err.output.unwrap()).unwrap();
    assert_eq!(output["body"], "busy");
}

#[test]
fn a_404_without_expectations_is_permanent_and_lists_other_failures() {
    let host = FakeHost::new();
    host.respond(404, &[JSON], r#"{"error": "no such order"}"#);
    let err = execute(
        &host,
        &ctx(),
        r#"{"url": "http://api/x", "expect": {"body_contains": "order 7"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "expected a status below 400, got 404; expected the body to contain \"order 7\""
    );
    assert!(!err.transient);
}

#[test]
fn connection_errors_are_transient() {
    let host = FakeHost::new();
    host.fail(http::Error::Connect("connection refused".into()));
    let err = execute(&host, &ctx(), r#"{"url": "http://api/x"}"#).unwrap_err();
    assert!(err.transient);
    assert_eq!(
        err.message,
        "GET http://api/x: cannot connect: connection refused"
    );
}

#[test]
fn a_capture_that_finds_nothing_fails_the_step() {
    let host = FakeHost::new();
    host.respond(200, &[JSON], "{}");
    let err = execute(
        &host,
        &ctx(),
        r#"{"url": "http://api/x", "capture": {"v": "$.version"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "capture `v`: $.version matched nothing");
    assert!(!err.transient);
    assert!(err.output.is_some());
}

#[test]
fn secrets_pass_through_unchanged() {
    let host = FakeHost::new();
    host.respond(200, &[], "");
    let secret = "__rb_secret.ab12cd34ef56.PASS__";
    execute(
        &host,
        &ctx(),
        &format!(
            r#"{{"method": "POST", "url": "http://api/x", "json": {{"password": "{secret}"}},
                "auth": {{"type": "basic", "username": "ops", "password": "{secret}"}}}}"#
        ),
    )
    .unwrap();
    let sent = host.request(0).unwrap();
    assert_eq!(sent.basic_auth, Some(("ops".into(), secret.into())));
    assert!(
        String::from_utf8(sent.body.unwrap())
            .unwrap()
            .contains(secret)
    );
}

const ASYNC: &str = r#"{"method": "POST", "url": "http://api/jobs", "json": {"n": 1},
    "async": {"status_url": "http://api/jobs/{{ invocation_id }}", "done_when": "$[?@.state == 'done']",
              "failed_when": "$[?@.state == 'failed']", "poll_every": "3s"},
    "capture": {"result": "$.result"}}"#;

fn start_async(host: &FakeHost) -> String {
    host.respond(202, &[("x-invocation-id", "j-9")], "");
    match execute(host, &ctx(), ASYNC).unwrap() {
        Outcome::Waiting(waiting) => {
            assert_eq!(waiting.invocation_id.as_deref(), Some("j-9"));
            assert_eq!(waiting.poll_after_ms, 3000);
            assert_eq!(waiting.wait_timeout_ms, Some(600_000));
            waiting.resume_token
        }
        Outcome::Done(output) => panic!("done: {output}"),
    }
}

#[test]
fn async_work_is_polled_until_done() {
    let host = FakeHost::new();
    let token = start_async(&host);
    host.respond(200, &[JSON], r#"{"state": "running"}"#);
    let again = resume(&host, &ctx(), ASYNC, &token).unwrap();
    assert!(matches!(&again, Outcome::Waiting(w) if w.resume_token == token));

    host.respond(502, &[("retry-after", "10")], "");
    let Outcome::Waiting(waiting) = resume(&host, &ctx(), ASYNC, &token).unwrap() else {
        panic!("a 502 while polling keeps waiting");
    };
    assert_eq!(waiting.poll_after_ms, 10_000);

    host.respond(200, &[JSON], r#"{"state": "done", "result": 42}"#);
    let output = done(resume(&host, &ctx(), ASYNC, &token).unwrap());
    assert_eq!(output["captures"]["result"], 42);

    let poll = host.request(1).unwrap();
    assert_eq!(poll.method, "GET");
    assert_eq!(poll.url, "http://api/jobs/j-9");
    assert_eq!(poll.body, None);
    assert!(
        poll.headers
            .contains(&("Idempotency-Key".into(), "01RUN-deploy".into()))
    );
    assert!(
        !poll
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    );
}

#[test]
fn async_failure_is_permanent_with_the_body() {
    let host = FakeHost::new();
    let token = start_async(&host);
    host.respond(200, &[JSON], r#"{"state": "failed", "error": "disk full"}"#);
    let err = resume(&host, &ctx(), ASYNC, &token).unwrap_err();
    assert!(!err.transient);
    assert_eq!(
        err.message,
        r#"the invocation failed: $[?@.state == 'failed'] matched the status response: {"error":"disk full","state":"failed"}"#
    );
    assert!(err.output.unwrap().contains("disk full"));
}

#[test]
fn connection_errors_while_polling_keep_waiting() {
    let host = FakeHost::new();
    let token = start_async(&host);
    host.fail(http::Error::Timeout("5s".into()));
    assert!(matches!(
        resume(&host, &ctx(), ASYNC, &token).unwrap(),
        Outcome::Waiting(_)
    ));
    assert!(
        host.logs
            .borrow()
            .iter()
            .any(|(_, line)| line.contains("polling again"))
    );
}

#[test]
fn a_step_without_async_completes_on_a_202() {
    let host = FakeHost::new();
    host.respond(202, &[], "accepted");
    let output = done(execute(&host, &ctx(), r#"{"url": "http://api/x"}"#).unwrap());
    assert_eq!(output["status"], 202);
}

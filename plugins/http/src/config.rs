//! The `with` table of an http step, and turning it into a ready request: checked in full by
//! `validate` (templates skipped), prepared with the resolved target at run time.

use std::collections::BTreeMap;

use runbook_plugin_sdk::runbook::plugin::types::StepContext;
use runbook_plugin_sdk::web::auth::Auth;
use runbook_plugin_sdk::web::capture::{CaptureSet, Captures, compile_captures};
use runbook_plugin_sdk::web::check::{Checks, StepConfig};
use runbook_plugin_sdk::web::expect::{Expect, Expectations};
use runbook_plugin_sdk::web::request::{
    DEFAULT_MAX_REDIRECTS, HttpRequest, IdempotencyKey, check_method, check_pairs,
};
use runbook_plugin_sdk::web::step::{BaseRequest, RequestFields};
use runbook_plugin_sdk::web::target::{Destination, TargetRef};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::body::{self, Body};
use crate::wait::{AsyncConfig, Wait};

/// The `with` table of an http step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Any method token; default GET.
    #[serde(default)]
    pub method: Option<String>,
    /// An absolute URL (or `target` + `path`).
    #[serde(default)]
    pub url: Option<String>,
    /// A named target of the runbook.
    #[serde(default)]
    pub target: Option<TargetRef>,
    /// Path relative to the target's URL.
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameters appended to the URL.
    #[serde(default)]
    pub query: BTreeMap<String, Value>,
    /// Request headers; they override the target's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default, deserialize_with = "present")]
    pub json: Option<Value>,
    /// A form body (`application/x-www-form-urlencoded`).
    #[serde(default)]
    pub form: Option<BTreeMap<String, Value>>,
    /// A text body.
    #[serde(default)]
    pub text: Option<String>,
    /// A binary body, base64-encoded.
    #[serde(default)]
    pub base64: Option<String>,
    /// The body's content type, instead of the one its kind implies.
    #[serde(default)]
    pub content_type: Option<String>,
    /// How to authenticate; replaces the target's.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Per-request timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Whether to follow redirects.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// How many redirects to follow.
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// What the response must look like.
    #[serde(default)]
    pub expect: Expect,
    /// Values to take from the response.
    #[serde(default)]
    pub capture: Captures,
    /// The `Idempotency-Key` header.
    #[serde(default)]
    pub idempotency_key: IdempotencyKey,
    /// Polling for work the far side finishes later.
    #[serde(default, rename = "async")]
    pub wait: Option<AsyncConfig>,
}

fn yes() -> bool {
    true
}

/// Keeps `json = null` as a body of `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A step ready to send: the request without auth, and how to judge the answer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Method, URL with query, headers (target's, then the step's, then the idempotency
    /// key), body, timeout, redirects.
    pub request: HttpRequest,
    /// The auth to apply when sending (the step's, else the target's).
    pub auth: Option<Auth>,
    /// What the body is, for the plan.
    pub body: Option<Body>,
    /// `expect`, compiled.
    pub expectations: Expectations,
    /// `capture`, compiled.
    pub captures: CaptureSet,
    /// `async`, compiled.
    pub wait: Option<Wait>,
}

impl StepConfig for HttpConfig {
    type Prepared = Prepared;

    const KIND: &'static str = "http";

    /// Checks every part; at run time (with a context) also assembles the request.
    fn build(&self, checks: &mut Checks, ctx: Option<&StepContext>) -> Option<Prepared> {
        let method = match &self.method {
            Some(method) => check_method(checks, "method", method),
            None => Some("GET".to_owned()),
        };
        let fields = RequestFields {
            destination: Destination {
                url_field: "url",
                url: self.url.as_deref(),
                target: self.target.as_ref(),
                path: self.path.as_deref(),
            },
            headers: &self.headers,
            auth: self.auth.as_ref(),
            timeout: self.timeout.as_deref(),
            idempotency_key: &self.idempotency_key,
        };
        let base = fields.build(method, checks, ctx);
        let query = check_pairs(checks, "query", &self.query);
        let body = body::build(self, checks);
        if !self.follow_redirects && self.max_redirects.is_some_and(|max| max > 0) {
            checks.push(
                "max_redirects",
                "redirects are not followed (`follow_redirects = false`)",
            );
        }
        let expectations = self.expect.compile("expect", checks);
        let captures = compile_captures(&self.capture, "capture", checks);
        let wait = self
            .wait
            .as_ref()
            .and_then(|wait| wait.compile("async", checks));

        // `base` exists only at run time, once every shared field passed.
        let BaseRequest { mut request, auth } = base?;
        if self.wait.is_some() && wait.is_none() {
            return None;
        }
        if let Some(body) = &body
            && !request.headers.contains("content-type")
        {
            request
                .headers
                .set("Content-Type", body.content_type.clone());
        }
        request.body = body.as_ref().map(|body| body.bytes.clone());
        request.max_redirects = if self.follow_redirects {
            self.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS)
        } else {
            0
        };
        if let Err(message) = request.add_query(&query) {
            checks.push("query", message);
            return None;
        }
        Some(Prepared {
            request,
            auth,
            body,
            expectations,
            captures,
            wait,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::runbook::plugin::types::StepError;
    use runbook_plugin_sdk::web::testing::step_context;

    use super::*;

    fn ctx() -> StepContext {
        step_context("01RUN", "create", 1)
    }

    fn errors(json: &str) -> Vec<String> {
        HttpConfig::validate_config(json)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|err| format!("{}: {}", err.path, err.message))
            .collect()
    }

    fn prepare(json: &str) -> Result<Prepared, StepError> {
        HttpConfig::parse(json)
            .map_err(StepError::from)?
            .prepare(&ctx())
    }

    #[test]
    fn a_minimal_step_is_valid() {
        assert_eq!(
            errors(r#"{"url": "http://127.0.0.1:8080/health"}"#),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(r#"{"target": "api", "path": "/health", "capture": {"v": "$.version"}}"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn templates_pass_validation() {
        assert_eq!(
            errors(
                r#"{"method": "{{ params.m }}", "url": "{{ targets.api.url }}/x", "timeout": "{{ params.t }}",
                    "expect": {"status": "{{ params.code }}", "json": {"{{ params.p }}": {"exists": true}}},
                    "capture": {"v": "{{ params.path }}"}, "base64": "{{ params.blob }}"}"#
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let found = errors(
            r#"{"method": "GET /", "url": "ftp://x", "timeout": "soon", "json": {}, "text": "t",
                "headers": {"Bad Name": "x"}, "capture": {"v": "$["},
                "expect": {"json": {"$.a": {"matches": "("}}}, "follow_redirects": false, "max_redirects": 3}"#,
        );
        let paths: Vec<&str> = found
            .iter()
            .map(|line| line.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "method",
                "url",
                "headers.Bad Name",
                "timeout",
                "text",
                "max_redirects",
                "expect.json.$.a.matches",
                "capture.v",
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn unknown_fields_suggest_the_right_one() {
        assert_eq!(
            errors(r#"{"url": "http://h", "heders": {}}"#),
            ["heders: unknown field `heders`; did you mean `headers`?"]
        );
        assert_eq!(
            errors(r#"{"url": "http://h", "expect": {"stauts": 200}}"#),
            ["expect.stauts: unknown field `stauts`; did you mean `status`?"]
        );
    }

    #[test]
    fn target_headers_are_defaults_and_the_key_is_stable() {
        let prepared = prepare(
            r#"{"method": "post", "target": {"name": "api", "url": "http://127.0.0.1:8080/",
                 "headers": {"X-Env": "staging", "Accept": "text/plain"}, "timeout": "5s",
                 "auth": {"type": "bearer", "token": "t"}},
                "path": "/orders", "query": {"dry": true}, "headers": {"accept": "application/json"},
                "json": {"id": 1}}"#,
        )
        .unwrap();
        let request = &prepared.request;
        assert_eq!(
            request.request_line(),
            "POST http://127.0.0.1:8080/orders?dry=true"
        );
        assert_eq!(
            request.headers.iter().collect::<Vec<_>>(),
            [
                // The step's `accept` replaces the target's `Accept` where it stood.
                ("accept", "application/json"),
                ("X-Env", "staging"),
                ("Idempotency-Key", "01RUN-create"),
                ("Content-Type", "application/json"),
            ]
        );
        assert_eq!(request.body.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(request.timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(prepared.auth, Some(Auth::Bearer { token: "t".into() }));
    }

    #[test]
    fn idempotency_key_can_be_replaced_or_dropped() {
        let prepared = prepare(r#"{"url": "http://h/x", "idempotency_key": "abc"}"#).unwrap();
        assert_eq!(prepared.request.headers.get("idempotency-key"), Some("abc"));
        let prepared = prepare(r#"{"url": "http://h/x", "idempotency_key": false}"#).unwrap();
        assert!(!prepared.request.headers.contains("idempotency-key"));
    }

    #[test]
    fn an_unresolved_target_fails_at_run_time() {
        let err = prepare(r#"{"target": "api", "path": "/x"}"#).unwrap_err();
        assert_eq!(err.message, "target `api` was not resolved by the daemon");
        assert!(!err.transient);
    }

    #[test]
    fn redirects_follow_the_settings() {
        assert_eq!(
            prepare(r#"{"url": "http://h"}"#)
                .unwrap()
                .request
                .max_redirects,
            10
        );
        assert_eq!(
            prepare(r#"{"url": "http://h", "max_redirects": 2}"#)
                .unwrap()
                .request
                .max_redirects,
            2
        );
        assert_eq!(
            prepare(r#"{"url": "http://h", "follow_redirects": false}"#)
                .unwrap()
                .request
                .max_redirects,
            0
        );
    }
}

//! The `async` table: a request the far side accepts now (a 202, or an invocation header) and
//! finishes later. The step waits, and each `resume` polls a status URL until a JSONPath
//! says done or failed.

use std::time::Duration;

use regex::Regex;
use runbook_plugin_sdk::runbook::plugin::types::{Outcome, Waiting};
use runbook_plugin_sdk::web::check::{Checks, join_path};
use runbook_plugin_sdk::web::response::Reply;
use runbook_plugin_sdk::web::status::is_retryable;
use runbook_plugin_sdk::web::target::parse_http_url;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;
use url::Url;

/// `async = { .. }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncConfig {
    /// The response header that carries the invocation id.
    #[serde(default = "default_invocation_header")]
    pub invocation_header: String,
    /// Where to poll; `{{ invocation_id }}` is replaced by the id. Default: the response's
    /// `Location`.
    #[serde(default)]
    pub status_url: Option<String>,
    /// Done when this JSONPath selects something in the status response.
    #[serde(default)]
    pub done_when: Option<String>,
    /// Failed when this JSONPath selects something in the status response.
    #[serde(default)]
    pub failed_when: Option<String>,
    /// How often to poll.
    #[serde(default)]
    pub poll_every: Option<String>,
    /// How long to wait in all.
    #[serde(default)]
    pub timeout: Option<String>,
}

fn default_invocation_header() -> String {
    "X-Invocation-Id".into()
}

/// Default polling interval.
pub const DEFAULT_POLL_EVERY: Duration = Duration::from_secs(2);
/// Default longest wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// [`AsyncConfig`], checked and compiled.
#[derive(Debug, Clone)]
pub struct Wait {
    invocation_header: String,
    status_url: Option<String>,
    done_when: Option<(String, JsonPath)>,
    failed_when: Option<(String, JsonPath)>,
    /// How often to poll.
    pub poll_every: Duration,
    /// How long to wait in all.
    pub timeout: Duration,
}

/// What `resume` keeps between polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeToken {
    /// The far side's id of the work, when it gave one.
    pub invocation_id: Option<String>,
    /// The status URL, id filled in.
    pub status_url: String,
}

/// What one poll decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Finished: the status response is the step's result.
    Done,
    /// The far side says the work failed.
    Failed(String),
    /// Not finished; the reason is worth a log line when there is one.
    Pending(Option<String>),
    /// The status URL answered with an error that will not go away (a 404, say).
    Broken(String),
}

/// Matches `{{ invocation_id }}`, however it is spaced.
fn invocation_placeholder() -> Regex {
    // A literal pattern: it compiles.
    Regex::new(r"\{\{\s*invocation_id\s*\}\}").unwrap_or_else(|_| unreachable!())
}

impl AsyncConfig {
    /// Checks the table found at `path` (`"async"`).
    pub fn compile(&self, path: &str, checks: &mut Checks) -> Option<Wait> {
        let mut ok = true;
        if !runbook_plugin_sdk::web::request::is_token(&self.invocation_header) {
            checks.push(
                join_path(path, "invocation_header"),
                format!("`{}` is not a valid header name", self.invocation_header),
            );
            ok = false;
        }
        if let Some(url) = &self.status_url {
            // The daemon leaves `{{ invocation_id }}` for us; anything else templated is
            // checked once rendered.
            let filled = invocation_placeholder().replace_all(url, "id").into_owned();
            if !checks.deferred(&filled)
                && let Err(message) = parse_http_url(&filled)
            {
                checks.push(join_path(path, "status_url"), message);
                ok = false;
            }
        }
        let mut compile_path = |field: &str, value: &Option<String>| match value {
            Some(text) => {
                let compiled = checks.json_path(&join_path(path, field), text);
                ok &= compiled.is_some() || checks.deferred(text);
                compiled.map(|compiled| (text.clone(), compiled))
            }
            None => None,
        };
        let done_when = compile_path("done_when", &self.done_when);
        let failed_when = compile_path("failed_when", &self.failed_when);
        let mut duration = |field: &str, value: &Option<String>, default: Duration| match value {
            Some(text) => {
                let parsed = checks.duration(&join_path(path, field), text);
                ok &= parsed.is_some();
                parsed.unwrap_or(default)
            }
            None => default,
        };
        let poll_every = duration("poll_every", &self.poll_every, DEFAULT_POLL_EVERY);
        let timeout = duration("timeout", &self.timeout, DEFAULT_TIMEOUT);
        ok.then(|| Wait {
            invocation_header: self.invocation_header.clone(),
            status_url: self.status_url.clone(),
            done_when,
            failed_when,
            poll_every,
            timeout,
        })
    }
}

impl Wait {
    /// What the plan says about the wait.
    pub fn describe(&self) -> String {
        let target = self
            .status_url
            .as_deref()
            .unwrap_or("the Location of the response");
        let until = match &self.done_when {
            Some((text, _)) => format!("until {text} matches"),
            None => "until it stops answering 202".into(),
        };
        format!(
            "async: on a 202 or an {} header, poll {target} every {} {until}, for up to {}",
            self.invocation_header,
            humantime::format_duration(self.poll_every),
            humantime::format_duration(self.timeout)
        )
    }

    /// Whether the first response starts a wait: a 202, or one that carries the invocation
    /// header. Then the token for `resume`; an error when there is nothing to poll.
    pub fn start(&self, reply: &Reply) -> Option<Result<ResumeToken, String>> {
        let invocation_id = reply
            .header(&self.invocation_header)
            .filter(|id| !id.is_empty());
        if reply.status != 202 && invocation_id.is_none() {
            return None;
        }
        Some(
            self.status_url(reply, invocation_id.as_deref())
                .map(|status_url| ResumeToken {
                    invocation_id,
                    status_url,
                }),
        )
    }

    fn status_url(&self, reply: &Reply, invocation_id: Option<&str>) -> Result<String, String> {
        if let Some(template) = &self.status_url {
            let placeholder = invocation_placeholder();
            if !placeholder.is_match(template) {
                return Ok(template.clone());
            }
            let id = invocation_id.ok_or_else(|| {
                format!(
                    "`async.status_url` needs the invocation id, but the response has no {} header",
                    self.invocation_header
                )
            })?;
            return Ok(placeholder
                .replace_all(template, regex::NoExpand(&encode_segment(id)))
                .into_owned());
        }
        let location = reply.header("location").ok_or_else(|| {
            "the response has no Location header to poll; set `async.status_url`".to_owned()
        })?;
        // A relative Location is relative to the URL that answered.
        let base = Url::parse(&reply.url).map_err(|err| format!("invalid response URL: {err}"))?;
        base.join(&location)
            .map(String::from)
            .map_err(|err| format!("invalid Location `{location}`: {err}"))
    }

    /// Reads one status response.
    pub fn decide(&self, reply: &Reply) -> Poll {
        if is_retryable(reply.status) {
            return Poll::Pending(Some(format!(
                "the status URL answered {}; polling again",
                reply.status
            )));
        }
        if reply.status >= 400 {
            return Poll::Broken(format!("the status URL answered {}", reply.status));
        }
        let json = reply.json.as_ref();
        if let (Some((text, path)), Some(json)) = (&self.failed_when, json)
            && selects(text, path, json)
        {
            return Poll::Failed(format!(
                "the invocation failed: {text} matched the status response"
            ));
        }
        match (&self.done_when, json) {
            (Some((text, path)), Some(json)) if selects(text, path, json) => Poll::Done,
            (Some(_), Some(_)) => Poll::Pending(None),
            (Some(_), None) => Poll::Pending(Some("the status response is not JSON".into())),
            (None, _) if reply.status == 202 => Poll::Pending(None),
            (None, _) => Poll::Done,
        }
    }

    /// The `waiting` outcome for `token`.
    pub fn waiting(&self, token: &ResumeToken, poll_after: Option<u64>) -> Outcome {
        Outcome::Waiting(Waiting {
            // A token of two strings always serializes.
            resume_token: serde_json::to_string(token).unwrap_or_default(),
            poll_after_ms: poll_after.unwrap_or_else(|| millis(self.poll_every)),
            invocation_id: token.invocation_id.clone(),
            wait_timeout_ms: Some(millis(self.timeout)),
        })
    }
}

/// Whether `path` selects something in `json`.
///
/// Under RFC 9535 a filter at the root (`$[?@.state == 'done']`) looks at the members of
/// the root, so it never matches a status object `{"state": "done"}` itself; but that is
/// what people write for "done when the state is done" (and what Jayway-style JSONPath
/// does). So a root filter that selects nothing is tried once more on the object wrapped in
/// an array, where the filter sees the object itself.
fn selects(text: &str, path: &JsonPath, json: &Value) -> bool {
    if !path.query(json).is_empty() {
        return true;
    }
    let root_filter = text
        .trim_start()
        .strip_prefix('$')
        .is_some_and(|rest| rest.trim_start().starts_with("[?"));
    root_filter && json.is_object() && !path.query(&Value::Array(vec![json.clone()])).is_empty()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Percent-encodes an id for a URL path segment (RFC 3986 unreserved characters stay).
fn encode_segment(id: &str) -> String {
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::Phase;
    use runbook_plugin_sdk::web::testing::response;

    use super::*;

    fn wait(json: &str) -> Wait {
        let config: AsyncConfig = serde_json::from_str(json).unwrap();
        let mut checks = Checks::new(Phase::Run);
        let wait = config.compile("async", &mut checks);
        assert!(checks.is_ok(), "{:?}", checks.into_errors());
        wait.unwrap()
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut raw = response(status, headers, body);
        raw.url = "http://api/orders".into();
        Reply::from(raw)
    }

    #[test]
    fn a_202_or_the_header_starts_a_wait() {
        let wait = wait(
            r#"{"status_url": "http://api/jobs/{{ invocation_id }}", "done_when": "$[?@.state == 'done']"}"#,
        );
        assert_eq!(wait.start(&reply(200, &[], "{}")), None);
        assert_eq!(
            wait.start(&reply(200, &[("x-invocation-id", "a b/1")], "")),
            Some(Ok(ResumeToken {
                invocation_id: Some("a b/1".into()),
                status_url: "http://api/jobs/a%20b%2F1".into()
            }))
        );
        assert_eq!(
            wait.start(&reply(202, &[], "")),
            Some(Err("`async.status_url` needs the invocation id, but the response has no X-Invocation-Id header".into()))
        );
    }

    #[test]
    fn without_status_url_the_location_is_polled() {
        let wait = wait("{}");
        assert_eq!(
            wait.start(&reply(202, &[("location", "/jobs/7")], "")),
            Some(Ok(ResumeToken {
                invocation_id: None,
                status_url: "http://api/jobs/7".into()
            }))
        );
        assert_eq!(
            wait.start(&reply(202, &[], "")),
            Some(Err(
                "the response has no Location header to poll; set `async.status_url`".into()
            ))
        );
    }

    #[test]
    fn polls_decide_done_failed_or_pending() {
        let wait = wait(
            r#"{"done_when": "$[?@.state == 'done']", "failed_when": "$[?@.state == 'failed']"}"#,
        );
        let json = |body: &str| reply(200, &[("content-type", "application/json")], body);
        assert_eq!(wait.decide(&json(r#"{"state": "done"}"#)), Poll::Done);
        assert_eq!(
            wait.decide(&json(r#"{"state": "failed"}"#)),
            Poll::Failed(
                "the invocation failed: $[?@.state == 'failed'] matched the status response".into()
            )
        );
        assert_eq!(
            wait.decide(&json(r#"{"state": "running"}"#)),
            Poll::Pending(None)
        );
        assert_eq!(
            wait.decide(&reply(503, &[], "")),
            Poll::Pending(Some("the status URL answered 503; polling again".into()))
        );
        assert_eq!(
            wait.decide(&reply(404, &[], "")),
            Poll::Broken("the status URL answered 404".into())
        );
        assert_eq!(
            wait.decide(&reply(200, &[("content-type", "text/plain")], "done")),
            Poll::Pending(Some("the status response is not JSON".into()))
        );
    }

    #[test]
    fn root_filters_test_the_status_object_itself() {
        let root = wait(r#"{"done_when": "$[?@.state == 'done']"}"#);
        let json = |body: &str| reply(200, &[("content-type", "application/json")], body);
        assert_eq!(root.decide(&json(r#"{"state": "done"}"#)), Poll::Done);
        assert_eq!(
            root.decide(&json(r#"{"state": "queued"}"#)),
            Poll::Pending(None)
        );
        assert_eq!(root.decide(&json(r#"[{"state": "done"}]"#)), Poll::Done);
        let nested = wait(r#"{"done_when": "$.jobs[?@.state == 'done']"}"#);
        assert_eq!(
            nested.decide(&json(r#"{"state": "done"}"#)),
            Poll::Pending(None)
        );
        let index = wait(r#"{"done_when": "$[0]"}"#);
        assert_eq!(
            index.decide(&json(r#"{"state": "done"}"#)),
            Poll::Pending(None)
        );
    }

    #[test]
    fn without_done_when_a_non_202_is_done() {
        let wait = wait("{}");
        assert_eq!(wait.decide(&reply(202, &[], "")), Poll::Pending(None));
        assert_eq!(wait.decide(&reply(200, &[], "")), Poll::Done);
    }

    #[test]
    fn waiting_carries_the_token_id_and_timeouts() {
        let wait = wait(r#"{"poll_every": "5s", "timeout": "1m"}"#);
        let token = ResumeToken {
            invocation_id: Some("7".into()),
            status_url: "http://api/jobs/7".into(),
        };
        let Outcome::Waiting(waiting) = wait.waiting(&token, None) else {
            panic!("not waiting");
        };
        assert_eq!(waiting.poll_after_ms, 5000);
        assert_eq!(waiting.wait_timeout_ms, Some(60_000));
        assert_eq!(waiting.invocation_id.as_deref(), Some("7"));
        let back: ResumeToken = serde_json::from_str(&waiting.resume_token).unwrap();
        assert_eq!(back, token);
    }

    #[test]
    fn bad_tables_are_reported() {
        let config: AsyncConfig = serde_json::from_str(
            r#"{"invocation_header": "bad header", "status_url": "ftp://x/{{ invocation_id }}",
                "done_when": "$[", "poll_every": "0s"}"#,
        )
        .unwrap();
        let mut checks = Checks::new(Phase::Validate);
        assert!(config.compile("async", &mut checks).is_none());
        let paths: Vec<String> = checks.into_errors().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "async.invocation_header",
                "async.status_url",
                "async.done_when",
                "async.poll_every"
            ]
        );
    }
}

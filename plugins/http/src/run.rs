//! `execute` and `resume` of an http step against any [`Host`]: send, start or continue an
//! async wait, then judge the final response with `expect` and fill `captures`.

use runbook_plugin_sdk::runbook::plugin::events::Level;
use runbook_plugin_sdk::runbook::plugin::types::{Outcome, StepContext, StepError};
use runbook_plugin_sdk::step_error;
use runbook_plugin_sdk::web::check::StepConfig;
use runbook_plugin_sdk::web::client;
use runbook_plugin_sdk::web::expect::{failures_error, short};
use runbook_plugin_sdk::web::host::Host;
use runbook_plugin_sdk::web::request::HttpRequest;
use runbook_plugin_sdk::web::response::Reply;
use runbook_plugin_sdk::web::status::{is_retryable, retry_after_ms};
use serde_json::Map;

use crate::config::{HttpConfig, Prepared};
use crate::wait::{Poll, ResumeToken, Wait};

/// Sends the step's request; waits when it starts async work, else judges the response.
pub fn execute(host: &impl Host, ctx: &StepContext, config: &str) -> Result<Outcome, StepError> {
    let prepared = HttpConfig::parse(config)?.prepare(ctx)?;
    let reply = client::send(host, &prepared.request, prepared.auth.as_ref())?;
    if let Some(wait) = &prepared.wait
        && let Some(started) = wait.start(&reply)
    {
        let token = started.map_err(|message| failed(format!("async: {message}"), &reply))?;
        host.log(
            Level::Info,
            &format!(
                "{} answered {}{}; polling {} every {}",
                prepared.request.request_line(),
                reply.status,
                token
                    .invocation_id
                    .as_deref()
                    .map(|id| format!(" with invocation {id}"))
                    .unwrap_or_default(),
                token.status_url,
                humantime::format_duration(wait.poll_every)
            ),
        );
        return Ok(wait.waiting(&token, None));
    }
    finish(host, &prepared, &reply)
}

/// Polls the status URL of a waiting step once.
pub fn resume(
    host: &impl Host,
    ctx: &StepContext,
    config: &str,
    token: &str,
) -> Result<Outcome, StepError> {
    let prepared = HttpConfig::parse(config)?.prepare(ctx)?;
    let Some(wait) = &prepared.wait else {
        return Err(step_error(
            "this http step has no `async` table, so there is nothing to resume",
        ));
    };
    let token: ResumeToken = serde_json::from_str(token)
        .map_err(|err| step_error(format!("invalid resume token: {err}")))?;
    let request = status_request(&prepared.request, &token.status_url);
    let reply = match client::send(host, &request, prepared.auth.as_ref()) {
        Ok(reply) => reply,
        // The wait's own timeout bounds how long a flaky status URL is tolerated.
        Err(err) if err.transient => {
            host.log(Level::Warn, &format!("{}; polling again", err.message));
            return Ok(wait.waiting(&token, later(wait, err.retry_after_ms)));
        }
        Err(err) => return Err(err),
    };
    match wait.decide(&reply) {
        Poll::Done => finish(host, &prepared, &reply),
        Poll::Pending(reason) => {
            if let Some(reason) = reason {
                host.log(Level::Warn, &reason);
            }
            let retry_after = is_retryable(reply.status)
                .then(|| retry_after_ms(&reply.headers, host.now()))
                .flatten();
            Ok(wait.waiting(&token, later(wait, retry_after)))
        }
        Poll::Failed(message) => {
            let body = match (&reply.json, reply.text()) {
                (Some(json), _) => short(json),
                (None, Some(text)) => short(&text.into()),
                (None, None) => "(binary body)".into(),
            };
            Err(failed(format!("{message}: {body}"), &reply))
        }
        Poll::Broken(message) => Err(failed(message, &reply)),
    }
}

/// The poll: a GET of the status URL with the step's headers (auth and idempotency key
/// included), without the body or its content type.
fn status_request(request: &HttpRequest, status_url: &str) -> HttpRequest {
    let mut poll = request.clone();
    poll.method = "GET".into();
    poll.url = status_url.to_owned();
    poll.body = None;
    poll.headers.remove("content-type");
    poll
}

/// The next poll: when the far side asked for a later one, then, else the usual interval.
fn later(wait: &Wait, retry_after_ms: Option<u64>) -> Option<u64> {
    let every = u64::try_from(wait.poll_every.as_millis()).unwrap_or(u64::MAX);
    retry_after_ms.map(|ms| ms.max(every))
}

/// Judges the final response: every failed expectation, then the captures.
fn finish(host: &impl Host, prepared: &Prepared, reply: &Reply) -> Result<Outcome, StepError> {
    let subject = reply.subject();
    let failures = prepared.expectations.evaluate(&subject);
    if !failures.is_empty() {
        let output = reply.output(Map::new()).to_string();
        return Err(failures_error(
            &failures,
            &subject,
            host.now(),
            Some(output),
        ));
    }
    match prepared.captures.evaluate(&subject) {
        Ok(captures) => Ok(Outcome::Done(reply.output(captures).to_string())),
        Err(errors) => Err(failed(errors.join("; "), reply)),
    }
}

/// A permanent failure with the response as output.
fn failed(message: String, reply: &Reply) -> StepError {
    StepError {
        message,
        output: Some(reply.output(Map::new()).to_string()),
        transient: false,
        retry_after_ms: None,
    }
}

#[cfg(test)]
mod tests;

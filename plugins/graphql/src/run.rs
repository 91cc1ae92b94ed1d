//! `execute` of a graphql step against any [`Host`]: send the POST, then judge the answer:
//! the HTTP status, GraphQL `errors`, `expect`, and `capture` over `data`.

use runbook_plugin_sdk::runbook::plugin::types::{Outcome, StepContext, StepError};
use runbook_plugin_sdk::web::check::StepConfig;
use runbook_plugin_sdk::web::client;
use runbook_plugin_sdk::web::expect::{Failure, failures_error};
use runbook_plugin_sdk::web::host::Host;
use runbook_plugin_sdk::web::response::{Reply, Subject};
use serde_json::{Map, Value, json};

use crate::config::{GraphqlConfig, Prepared};
use crate::errors;

/// Sends the operation and judges the response.
pub fn execute(host: &impl Host, ctx: &StepContext, config: &str) -> Result<Outcome, StepError> {
    let prepared = GraphqlConfig::parse(config)?.prepare(ctx)?;
    let reply = client::send(host, &prepared.request, prepared.auth.as_ref())?;
    judge(host, &prepared, &reply)
}

/// The parts of a GraphQL response: `data`, `errors`, `extensions`.
struct Answer {
    data: Value,
    errors: Value,
    extensions: Value,
}

impl Answer {
    /// The GraphQL answer in a reply: a JSON object with `data` or `errors`.
    fn read(reply: &Reply) -> Option<Self> {
        let body = reply
            .json
            .as_ref()?
            .as_object()
            .filter(|body| body.contains_key("data") || body.contains_key("errors"))?;
        let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
        Some(Self {
            data: field("data"),
            errors: field("errors"),
            extensions: field("extensions"),
        })
    }

    /// The step's output.
    fn output(&self, reply: &Reply, captures: Map<String, Value>) -> Value {
        json!({
            "status": reply.status,
            "data": self.data,
            "errors": self.errors,
            "extensions": self.extensions,
            "captures": captures,
            "duration_ms": reply.duration_ms,
        })
    }
}

fn judge(host: &impl Host, prepared: &Prepared, reply: &Reply) -> Result<Outcome, StepError> {
    let answer = Answer::read(reply);
    // JSONPaths of `expect` and `capture` run against `data`.
    let subject = Subject {
        json: answer.as_ref().map(|answer| &answer.data),
        ..reply.subject()
    };
    let mut failures = prepared.expectations.evaluate(&subject);
    // A failed status stays first: it decides whether the failure is transient.
    let after_status = failures
        .iter()
        .take_while(|failure| failure.is_status)
        .count();
    match &answer {
        None => failures.insert(
            after_status,
            Failure {
                message: format!(
                    "the response is not a GraphQL JSON response ({})",
                    reply
                        .header("content-type")
                        .unwrap_or_else(|| "no content type".into())
                ),
                is_status: false,
            },
        ),
        Some(answer) if !prepared.allow_errors => {
            if let Some(list) = answer.errors.as_array().filter(|list| !list.is_empty()) {
                failures.insert(
                    after_status,
                    Failure {
                        message: errors::summary(list),
                        is_status: false,
                    },
                );
            }
        }
        Some(_) => {}
    }
    if !failures.is_empty() {
        let output = match &answer {
            Some(answer) => answer.output(reply, Map::new()),
            None => reply.output(Map::new()),
        };
        return Err(failures_error(
            &failures,
            &subject,
            host.now(),
            Some(output.to_string()),
        ));
    }
    // `failures` is empty only when there is an answer.
    let Some(answer) = &answer else {
        return Err(runbook_plugin_sdk::step_error(
            "the response is not a GraphQL JSON response",
        ));
    };
    match prepared.captures.evaluate(&subject) {
        Ok(captures) => Ok(Outcome::Done(answer.output(reply, captures).to_string())),
        Err(messages) => Err(StepError {
            message: messages.join("; "),
            output: Some(answer.output(reply, Map::new()).to_string()),
            transient: false,
            retry_after_ms: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::runbook::plugin::http;
    use runbook_plugin_sdk::web::testing::{FakeHost, step_context};

    use super::*;

    fn ctx() -> StepContext {
        step_context("R", "user", 1)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const STEP: &str = r#"{"endpoint": "http://api/graphql", "query": "query U { user(id: 1) { name email } }",
        "capture": {"name": "$.user.name"}}"#;

    #[test]
    fn data_is_captured_into_the_output() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[JSON],
            r#"{"data": {"user": {"name": "Ada", "email": "a@x"}}, "extensions": {"cost": 3}}"#,
        );
        let Outcome::Done(output) = execute(&host, &ctx(), STEP).unwrap() else {
            panic!("not done");
        };
        let output: Value = serde_json::from_str(&output).unwrap();
        assert_eq!(output["captures"]["name"], "Ada");
        assert_eq!(output["data"]["user"]["email"], "a@x");
        assert_eq!(output["errors"], Value::Null);
        assert_eq!(output["extensions"]["cost"], 3);
        let sent = host.request(0).unwrap();
        assert_eq!(sent.method, "POST");
        assert!(
            sent.headers
                .contains(&("Idempotency-Key".into(), "R-user".into()))
        );
    }

    #[test]
    fn errors_fail_the_step_with_their_paths() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[JSON],
            r#"{"data": {"user": {"name": "Ada", "email": null}},
                "errors": [{"message": "not authorized", "path": ["user", "email"]}]}"#,
        );
        let err = execute(&host, &ctx(), STEP).unwrap_err();
        assert_eq!(err.message, "GraphQL error: user.email: not authorized");
        assert!(!err.transient);
        let output: Value = serde_json::from_str(&err.output.unwrap()).unwrap();
        assert_eq!(output["errors"][0]["message"], "not authorized");
    }

    #[test]
    fn allow_errors_completes_with_them() {
        let host = FakeHost::new();
        host.respond(
            200,
            &[JSON],
            r#"{"data": {"user": {"name": "Ada"}}, "errors": [{"message": "partial"}]}"#,
        );
        let step = STEP.replace("\"capture\"", "\"allow_errors\": true, \"capture\"");
        let Outcome::Done(output) = execute(&host, &ctx(), &step).unwrap() else {
            panic!("not done");
        };
        assert!(output.contains("partial"));
    }

    #[test]
    fn server_errors_and_connection_failures_are_transient() {
        let host = FakeHost::new();
        host.respond(
            503,
            &[("content-type", "text/html"), ("retry-after", "4")],
            "<h1>down</h1>",
        );
        let err = execute(&host, &ctx(), STEP).unwrap_err();
        assert_eq!(
            err.message,
            "expected a status below 400, got 503; the response is not a GraphQL JSON response (text/html)"
        );
        assert!(err.transient);
        assert_eq!(err.retry_after_ms, Some(4000));

        host.fail(http::Error::Timeout("10s".into()));
        assert!(execute(&host, &ctx(), STEP).unwrap_err().transient);
    }

    #[test]
    fn a_400_with_graphql_errors_is_permanent() {
        let host = FakeHost::new();
        host.respond(
            400,
            &[("content-type", "application/graphql-response+json")],
            r#"{"errors": [{"message": "Cannot query field \"nme\"", "locations": [{"line": 1, "column": 20}]}]}"#,
        );
        let err = execute(&host, &ctx(), STEP).unwrap_err();
        assert!(!err.transient);
        assert_eq!(
            err.message,
            "expected a status below 400, got 400; GraphQL error: Cannot query field \"nme\" (line 1, column 20 of the query)"
        );
    }

    #[test]
    fn a_capture_over_null_data_fails() {
        let host = FakeHost::new();
        host.respond(200, &[JSON], r#"{"data": {"user": null}}"#);
        let err = execute(&host, &ctx(), STEP).unwrap_err();
        assert_eq!(err.message, "capture `name`: $.user.name matched nothing");
    }
}

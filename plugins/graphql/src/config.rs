//! The `with` table of a graphql step, and the POST it becomes: checked in full by
//! `validate` (a templated query is parsed later, in `plan`), prepared at run time.

use std::collections::BTreeMap;

use runbook_plugin_sdk::runbook::plugin::types::{ConfigError, StepContext, TextPosition};
use runbook_plugin_sdk::web::auth::Auth;
use runbook_plugin_sdk::web::capture::{CaptureSet, Captures, compile_captures};
use runbook_plugin_sdk::web::check::{Checks, StepConfig};
use runbook_plugin_sdk::web::expect::{Expect, Expectations};
use runbook_plugin_sdk::web::request::{HttpRequest, IdempotencyKey};
use runbook_plugin_sdk::web::step::{BaseRequest, RequestFields};
use runbook_plugin_sdk::web::target::{Destination, TargetRef};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::document::{self, Operation, SelectError};

/// The `with` table of a graphql step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    /// The GraphQL endpoint, an absolute URL (or `target` + `path`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A named target of the runbook.
    #[serde(default)]
    pub target: Option<TargetRef>,
    /// Path relative to the target's URL; default: the target's URL itself.
    #[serde(default)]
    pub path: Option<String>,
    /// The document: a query or a mutation.
    pub query: String,
    /// The operation's variables.
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
    /// Which operation of the document to run.
    #[serde(default)]
    pub operation_name: Option<String>,
    /// Request headers; they override the target's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How to authenticate; replaces the target's.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Per-request timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Values to take from `data` (JSONPaths run against `data`).
    #[serde(default)]
    pub capture: Captures,
    /// What the response must look like (JSONPaths run against `data`).
    #[serde(default)]
    pub expect: Expect,
    /// Whether a response with `errors` still completes the step.
    #[serde(default)]
    pub allow_errors: bool,
    /// The `Idempotency-Key` header.
    #[serde(default)]
    pub idempotency_key: IdempotencyKey,
}

/// A step ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The POST, without auth.
    pub request: HttpRequest,
    /// The auth to apply when sending.
    pub auth: Option<Auth>,
    /// The operation sent.
    pub operation: Operation,
    /// `expect`, compiled.
    pub expectations: Expectations,
    /// `capture`, compiled.
    pub captures: CaptureSet,
    /// Whether `errors` are tolerated.
    pub allow_errors: bool,
}

impl StepConfig for GraphqlConfig {
    type Prepared = Prepared;

    const KIND: &'static str = "graphql";

    /// Checks every part; at run time (with a context) also assembles the POST.
    fn build(&self, checks: &mut Checks, ctx: Option<&StepContext>) -> Option<Prepared> {
        let fields = RequestFields {
            destination: Destination {
                url_field: "endpoint",
                url: self.endpoint.as_deref(),
                target: self.target.as_ref(),
                path: self.path.as_deref(),
            },
            headers: &self.headers,
            auth: self.auth.as_ref(),
            timeout: self.timeout.as_deref(),
            idempotency_key: &self.idempotency_key,
        };
        let base = fields.build(Some("POST".into()), checks, ctx);
        let operation = self.check_document(checks);
        let expectations = self.expect.compile("expect", checks);
        let captures = compile_captures(&self.capture, "capture", checks);

        let BaseRequest { mut request, auth } = base?;
        let operation = operation?;
        if !request.headers.contains("accept") {
            // The GraphQL-over-HTTP media type first; plain JSON for older servers.
            request.headers.set(
                "Accept",
                "application/graphql-response+json, application/json",
            );
        }
        request.headers.set("Content-Type", "application/json");
        request.body = Some(self.body().into_bytes());
        Some(Prepared {
            request,
            auth,
            operation,
            expectations,
            captures,
            allow_errors: self.allow_errors,
        })
    }
}

impl GraphqlConfig {
    /// Parses the document (unless it is still a template) and picks the operation.
    fn check_document(&self, checks: &mut Checks) -> Option<Operation> {
        if self.query.trim().is_empty() {
            checks.push("query", "must hold a GraphQL query or mutation");
            return None;
        }
        if checks.deferred(&self.query) {
            return None;
        }
        let operations = match document::operations(&self.query) {
            Ok(operations) => operations,
            Err(err) => {
                checks.push_error(ConfigError {
                    path: "query".into(),
                    message: format!("syntax error: {}", err.message),
                    position: Some(TextPosition {
                        line: err.line,
                        column: err.column,
                    }),
                });
                return None;
            }
        };
        let wanted = self
            .operation_name
            .as_deref()
            .filter(|name| !checks.deferred(name));
        if self.operation_name.is_some() && wanted.is_none() {
            return None;
        }
        match document::select(&operations, wanted) {
            Ok(operation) if operation.kind == "subscription" => {
                checks.push(
                    "query",
                    "subscriptions need a long-lived connection; a step sends one request",
                );
                None
            }
            Ok(operation) => Some(operation.clone()),
            Err(SelectError::Query(message)) => {
                checks.push("query", message);
                None
            }
            Err(SelectError::OperationName(message)) => {
                checks.push("operation_name", message);
                None
            }
        }
    }

    /// `{"query", "variables", "operationName"}`, the last two only when given.
    fn body(&self) -> String {
        let mut body = Map::new();
        body.insert("query".into(), self.query.clone().into());
        if let Some(variables) = &self.variables {
            body.insert("variables".into(), Value::Object(variables.clone()));
        }
        if let Some(name) = &self.operation_name {
            body.insert("operationName".into(), name.clone().into());
        }
        Value::Object(body).to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::testing::step_context;

    use super::*;

    fn ctx() -> StepContext {
        step_context("R", "user", 1)
    }

    fn errors(json: &str) -> Vec<ConfigError> {
        GraphqlConfig::validate_config(json)
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_step_passes() {
        assert!(
            errors(r#"{"endpoint": "http://api/graphql", "query": "{ user(id: 1) { name } }"}"#)
                .is_empty()
        );
        assert!(
            errors(r#"{"target": "api", "query": "query Q($id: ID!) { user(id: $id) { name } }", "variables": {"id": "1"}}"#)
                .is_empty()
        );
    }

    #[test]
    fn a_syntax_error_points_inside_the_query() {
        let errors = errors(
            r#"{"endpoint": "http://api/graphql", "query": "query {\n  user(id: 1) {\n    name(\n  }\n}"}"#,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "query");
        assert_eq!(
            errors[0].message,
            "syntax error: unexpected `}`, expected Name"
        );
        let position = errors[0].position.as_ref().map(|at| (at.line, at.column));
        assert_eq!(position, Some((4, 3)));
    }

    #[test]
    fn templated_queries_are_parsed_in_plan() {
        let config = r#"{"endpoint": "http://api/graphql", "query": "{ user(id: {{ params.id }}) { name } }"}"#;
        assert!(errors(config).is_empty());
        let rendered = r#"{"endpoint": "http://api/graphql", "query": "{ user(id: ) { name } }"}"#;
        let err = GraphqlConfig::parse(rendered)
            .unwrap()
            .prepare(&ctx())
            .unwrap_err();
        assert_eq!(
            err.message,
            "query (line 1, column 12): syntax error: unexpected `)`, expected IntValue, FloatValue, StringValue, BlockString, true, false, null or Name"
        );
    }

    #[test]
    fn operations_must_be_chosen_and_exist() {
        let several =
            errors(r#"{"endpoint": "http://a/g", "query": "query A { a } query B { b }"}"#);
        assert_eq!(several[0].path, "query");
        let missing = errors(
            r#"{"endpoint": "http://a/g", "query": "query A { a }", "operation_name": "B"}"#,
        );
        assert_eq!(missing[0].path, "operation_name");
        let subscription = errors(r#"{"endpoint": "http://a/g", "query": "subscription S { a }"}"#);
        assert!(subscription[0].message.starts_with("subscriptions need"));
    }

    #[test]
    fn the_request_is_a_json_post_with_the_idempotency_key() {
        let prepared = GraphqlConfig::parse(
            r#"{"endpoint": "http://api/graphql", "query": "mutation M($n: Int) { add(n: $n) }",
                "variables": {"n": 2}, "operation_name": "M", "headers": {"X-Team": "ops"}}"#,
        )
        .unwrap()
        .prepare(&ctx())
        .unwrap();
        let request = &prepared.request;
        assert_eq!(request.request_line(), "POST http://api/graphql");
        assert_eq!(
            request.headers.get("content-type"),
            Some("application/json")
        );
        assert_eq!(request.headers.get("idempotency-key"), Some("R-user"));
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"query": "mutation M($n: Int) { add(n: $n) }", "variables": {"n": 2}, "operationName": "M"})
        );
        assert_eq!(prepared.operation.describe(), "mutation M");
    }

    #[test]
    fn a_target_path_defaults_to_its_url() {
        let prepared = GraphqlConfig::parse(
            r#"{"target": {"name": "api", "url": "http://api/graphql"}, "query": "{ a }"}"#,
        )
        .unwrap()
        .prepare(&ctx())
        .unwrap();
        assert_eq!(prepared.request.url, "http://api/graphql");
    }
}

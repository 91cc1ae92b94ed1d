//! What an approver sees before a graphql step runs: the POST, header names (never values),
//! the operation and its variable names, the body size and the auth kind.

use runbook_plugin_sdk::runbook::plugin::types::{Effect, StepPlan};

use crate::config::{GraphqlConfig, Prepared};

/// The plan of a prepared step; deterministic, like every plan.
pub fn plan(config: &GraphqlConfig, prepared: &Prepared) -> StepPlan {
    let request = &prepared.request;
    let operation = prepared.operation.describe();
    let mut parts = vec![request.request_line()];
    parts.push(format!("headers: {}", request.headers.names().join(", ")));
    let mut body = format!("body: GraphQL {operation}");
    if let Some(variables) = config.variables.as_ref().filter(|vars| !vars.is_empty()) {
        let names: Vec<&str> = variables.keys().map(String::as_str).collect();
        body.push_str(&format!(" with variables {}", names.join(", ")));
    }
    let size = request.body.as_ref().map_or(0, Vec::len);
    body.push_str(&format!(", {size} bytes"));
    parts.push(body);
    if let Some(auth) = &prepared.auth {
        parts.push(format!("auth: {}", auth.describe()));
    }
    StepPlan {
        summary: format!("{} ({operation})", request.request_line()),
        effects: vec![Effect::Note(parts.join("; "))],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::StepConfig;
    use runbook_plugin_sdk::web::testing::step_context;

    use super::*;

    #[test]
    fn the_plan_names_the_operation_and_variables() {
        let config = GraphqlConfig::parse(
            r#"{"endpoint": "http://api/graphql", "query": "mutation Create($n: String) { create(n: $n) { id } }",
                "variables": {"n": "__rb_secret.ab12cd34ef56.NAME__"}, "auth": {"type": "bearer", "token": "t"}}"#,
        )
        .unwrap();
        let ctx = step_context("R", "s", 1);
        let prepared = config.prepare(&ctx).unwrap();
        let plan = plan(&config, &prepared);
        assert_eq!(plan.summary, "POST http://api/graphql (mutation Create)");
        let [Effect::Note(note)] = plan.effects.as_slice() else {
            panic!("one note expected");
        };
        assert!(
            note.starts_with(
                "POST http://api/graphql; headers: Idempotency-Key, Accept, Content-Type; \
             body: GraphQL mutation Create with variables n, "
            ),
            "{note}"
        );
        assert!(note.ends_with("; auth: bearer token"), "{note}");
        assert!(!note.contains("__rb_secret"));
    }
}

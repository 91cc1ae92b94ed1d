//! What an approver sees before an http step runs: the request line, header names (never
//! values), the body's kind and size, the auth kind and any async wait.

use runbook_plugin_sdk::runbook::plugin::types::{Effect, StepPlan};

use crate::config::Prepared;

/// The plan of a prepared step. Deterministic: the same config and context give the same
/// plan, so that an approval stays valid.
pub fn plan(prepared: &Prepared) -> StepPlan {
    let request = &prepared.request;
    let mut parts = vec![request.request_line()];
    if !request.headers.is_empty() {
        parts.push(format!("headers: {}", request.headers.names().join(", ")));
    }
    if let Some(body) = &prepared.body {
        parts.push(format!(
            "body: {}, {} ({})",
            body.kind,
            bytes(body.bytes.len()),
            body.content_type
        ));
    }
    if let Some(auth) = &prepared.auth {
        parts.push(format!("auth: {}", auth.describe()));
    }
    if let Some(wait) = &prepared.wait {
        parts.push(wait.describe());
    }
    StepPlan {
        summary: request.request_line(),
        effects: vec![Effect::Note(parts.join("; "))],
    }
}

fn bytes(count: usize) -> String {
    if count == 1 {
        "1 byte".into()
    } else {
        format!("{count} bytes")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use runbook_plugin_sdk::web::check::StepConfig;
    use runbook_plugin_sdk::web::testing::step_context;

    use crate::config::HttpConfig;

    #[test]
    fn plan_names_headers_but_never_their_values() {
        let config = HttpConfig::parse(
            r#"{"method": "POST", "url": "http://127.0.0.1:8080/orders",
                "headers": {"X-Token": "__rb_secret.ab12cd34ef56.TOKEN__"},
                "json": {"id": 1}, "auth": {"type": "basic", "username": "u", "password": "p"},
                "async": {"status_url": "http://127.0.0.1:8080/jobs/{{ invocation_id }}", "done_when": "$.done"}}"#,
        )
        .unwrap();
        let plan = plan(&config.prepare(&step_context("R", "s", 1)).unwrap());
        assert_eq!(plan.summary, "POST http://127.0.0.1:8080/orders");
        let [Effect::Note(note)] = plan.effects.as_slice() else {
            panic!("one note expected: {:?}", plan.effects);
        };
        assert_eq!(
            note,
            "POST http://127.0.0.1:8080/orders; headers: X-Token, Idempotency-Key, Content-Type; \
             body: json, 8 bytes (application/json); auth: basic; \
             async: on a 202 or an X-Invocation-Id header, poll http://127.0.0.1:8080/jobs/{{ invocation_id }} \
             every 2s until $.done matches, for up to 10m"
        );
        assert!(!note.contains("__rb_secret"));
    }
}

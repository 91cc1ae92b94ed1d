//! The JSON Schema of an http step's `with` table, for `describe` (documentation only).

use runbook_plugin_sdk::web::schema;
use serde_json::json;

/// The schema as JSON text.
pub fn config_schema() -> String {
    json!({
        "type": "object",
        "properties": {
            "method": { "type": "string", "default": "GET" },
            "url": { "type": "string", "description": "an absolute http(s) URL" },
            "target": schema::target(),
            "path": { "type": "string", "description": "relative to the target's URL" },
            "query": schema::pairs(),
            "headers": schema::headers(),
            "json": { "description": "a JSON body" },
            "form": schema::pairs(),
            "text": { "type": "string" },
            "base64": { "type": "string" },
            "content_type": { "type": "string" },
            "auth": schema::auth(),
            "timeout": schema::duration(),
            "follow_redirects": { "type": "boolean", "default": true },
            "max_redirects": { "type": "integer", "minimum": 0, "default": 10 },
            "expect": schema::expect(),
            "capture": schema::capture(),
            "idempotency_key": schema::idempotency_key(),
            "async": {
                "type": "object",
                "properties": {
                    "invocation_header": { "type": "string", "default": "X-Invocation-Id" },
                    "status_url": { "type": "string" },
                    "done_when": { "type": "string", "description": "a JSONPath" },
                    "failed_when": { "type": "string", "description": "a JSONPath" },
                    "poll_every": schema::duration(),
                    "timeout": schema::duration()
                },
                "additionalProperties": false
            }
        },
        "oneOf": [ { "required": ["url"] }, { "required": ["target"] } ],
        "additionalProperties": false
    })
    .to_string()
}

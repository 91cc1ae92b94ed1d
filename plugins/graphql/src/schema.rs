//! The JSON Schema of a graphql step's `with` table, for `describe` (documentation only).

use runbook_plugin_sdk::web::schema;
use serde_json::json;

/// The schema as JSON text.
pub fn config_schema() -> String {
    json!({
        "type": "object",
        "properties": {
            "endpoint": { "type": "string", "description": "an absolute http(s) URL" },
            "target": schema::target(),
            "path": { "type": "string", "default": "", "description": "relative to the target's URL" },
            "query": { "type": "string", "description": "a GraphQL document: a query or a mutation" },
            "variables": { "type": "object" },
            "operation_name": { "type": "string" },
            "headers": schema::headers(),
            "auth": schema::auth(),
            "timeout": schema::duration(),
            "capture": schema::capture(),
            "expect": schema::expect(),
            "allow_errors": { "type": "boolean", "default": false },
            "idempotency_key": schema::idempotency_key()
        },
        "required": ["query"],
        "oneOf": [ { "required": ["endpoint"] }, { "required": ["target"] } ],
        "additionalProperties": false
    })
    .to_string()
}

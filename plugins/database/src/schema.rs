//! The JSON Schema of a database step's `with` table, for `describe` (documentation only).

use serde_json::{Value, json};

use crate::config::DEFAULT_MAX_ROWS;
use crate::param::TYPE_NAMES;

/// The schema as JSON text.
pub fn config_schema() -> String {
    let sql = json!({ "type": "string", "minLength": 1, "description": "SQL with the database's own placeholders ($1 for PostgreSQL, ? for MySQL and SQLite)" });
    let params = params();
    json!({
        "type": "object",
        "properties": {
            "connection": { "type": "string", "description": "a connection name of the daemon config or of the runbook's [connections.NAME]" },
            "query": sql,
            "execute": sql,
            "statements": {
                "type": "array",
                "minItems": 1,
                "description": "run in one transaction, all or nothing",
                "items": {
                    "anyOf": [
                        sql,
                        {
                            "type": "object",
                            "properties": { "sql": sql, "params": params },
                            "required": ["sql"],
                            "additionalProperties": false
                        }
                    ]
                }
            },
            "params": params,
            "max_rows": {
                "type": ["integer", "string"],
                "minimum": 1,
                "default": DEFAULT_MAX_ROWS,
                "description": "the most rows a query keeps"
            },
            "expect": {
                "type": "object",
                "properties": {
                    "row_count": { "type": "integer", "minimum": 0, "description": "rows of a query, or rows affected" },
                    "first_row": { "type": "object", "description": "column to the value the first row holds" },
                    "empty": { "type": "boolean" },
                    "non_empty": { "type": "boolean" }
                },
                "additionalProperties": false
            },
            "capture": {
                "type": "object",
                "additionalProperties": { "type": "string", "description": "a JSONPath over the step's output" }
            }
        },
        "required": ["connection"],
        "oneOf": [ { "required": ["query"] }, { "required": ["execute"] }, { "required": ["statements"] } ],
        "additionalProperties": false
    })
    .to_string()
}

fn params() -> Value {
    json!({
        "type": "array",
        "description": "positional parameters, typed from their value, or { type, value }",
        "items": {
            "anyOf": [
                { "type": ["string", "number", "boolean", "null", "array", "object"] },
                {
                    "type": "object",
                    "properties": {
                        "type": { "enum": TYPE_NAMES },
                        "value": {}
                    },
                    "required": ["type"],
                    "additionalProperties": false
                }
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_schema_is_json_and_lists_every_field() {
        let schema: Value = serde_json::from_str(&config_schema()).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        for name in [
            "connection",
            "query",
            "execute",
            "statements",
            "params",
            "max_rows",
            "expect",
            "capture",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert_eq!(properties["max_rows"]["default"], 10_000);
    }
}

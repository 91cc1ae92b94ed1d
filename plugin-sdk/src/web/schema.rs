//! JSON Schema fragments of the shared `with` pieces, for a plugin's `config-schema`
//! (documentation: `validate` decides).

use serde_json::{Value, json};

/// A duration string such as `"500ms"` or `"1h 30m"`.
pub fn duration() -> Value {
    json!({ "type": "string", "description": "a duration such as \"500ms\", \"30s\" or \"1h 30m\"" })
}

/// A table of header names to values.
pub fn headers() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

/// A table of query parameters (or form fields): strings, numbers, booleans, or arrays of them.
pub fn pairs() -> Value {
    let scalar = json!({ "type": ["string", "number", "boolean"] });
    json!({
        "type": "object",
        "additionalProperties": { "anyOf": [scalar, { "type": "array", "items": scalar }] }
    })
}

/// A target name (resolved by the daemon).
pub fn target() -> Value {
    json!({ "type": "string", "description": "a target of the runbook's [targets] table" })
}

/// The `auth` table.
pub fn auth() -> Value {
    let string = json!({ "type": "string" });
    let assertion = json!({
        "key": { "type": "string", "description": "{{ secrets.NAME }}: a PEM private key, or the shared secret for HS*" },
        "alg": { "enum": super::jwt::ALGORITHMS },
        "claims": { "type": "object", "description": "iat, exp and jti are set by the host" },
        "ttl": { "type": "string", "default": "5m" },
        "key_id": string
    });
    let mut jwt = assertion.clone();
    if let Some(fields) = jwt.as_object_mut() {
        fields.insert("type".into(), json!({ "const": "jwt" }));
        fields.insert(
            "header".into(),
            json!({ "type": "string", "default": "Authorization" }),
        );
        fields.insert(
            "scheme".into(),
            json!({ "type": "string", "default": "Bearer" }),
        );
    }
    json!({
        "oneOf": [
            {
                "type": "object",
                "properties": { "type": { "const": "bearer" }, "token": string },
                "required": ["type", "token"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": { "type": { "const": "basic" }, "username": string, "password": string },
                "required": ["type", "username", "password"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": {
                    "type": { "const": "api_key" },
                    "name": { "type": "string", "default": "X-API-Key" },
                    "value": string,
                    "in": { "enum": ["header", "query"], "default": "header" }
                },
                "required": ["type", "value"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": jwt,
                "required": ["type", "key", "alg"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": {
                    "type": { "const": "oauth2" },
                    "grant": { "enum": ["client_credentials", "jwt_bearer"], "default": "client_credentials" },
                    "token_url": string,
                    "client_id": string,
                    "client_secret": string,
                    "assertion": {
                        "type": "object",
                        "properties": assertion,
                        "required": ["key", "alg"],
                        "additionalProperties": false
                    },
                    "scope": string,
                    "audience": string,
                    "client_auth": { "enum": ["body", "basic"], "default": "body" }
                },
                "required": ["type", "token_url"],
                "additionalProperties": false
            }
        ]
    })
}

/// The `expect` table.
pub fn expect() -> Value {
    let status = json!({ "anyOf": [{ "type": "integer" }, { "type": "string", "pattern": "^([1-5][0-9][0-9]|[1-5][xX][xX])$" }] });
    let selected = json!({
        "type": "object",
        "properties": {
            "equals": {},
            "exists": { "type": "boolean" },
            "matches": { "type": "string", "description": "a regex" }
        },
        "additionalProperties": false
    });
    json!({
        "type": "object",
        "properties": {
            "status": { "anyOf": [status, { "type": "array", "items": status, "minItems": 1 }] },
            "headers": headers(),
            "json": {
                "type": "object",
                "description": "JSONPath to what the selected value must satisfy",
                "additionalProperties": selected
            },
            "xpath": {
                "type": "object",
                "description": "XPath 1.0 over an XML body to the value it must equal, or { equals, exists, matches }",
                "additionalProperties": {
                    "anyOf": [{ "type": ["string", "number", "boolean", "array"] }, selected]
                }
            },
            "body_contains": { "type": "string" },
            "max_duration": duration()
        },
        "additionalProperties": false
    })
}

/// The `capture` table.
pub fn capture() -> Value {
    json!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [
                { "type": "string", "description": "a JSONPath" },
                {
                    "type": "object",
                    "properties": {
                        "json": { "type": "string" },
                        "xpath": { "type": "string", "description": "XPath 1.0 over an XML body" },
                        "header": { "type": "string" },
                        "regex": { "type": "string" },
                        "group": { "type": ["integer", "string"] },
                        "status": { "const": true }
                    },
                    "additionalProperties": false
                }
            ]
        }
    })
}

/// `idempotency_key`: a boolean or the key itself.
pub fn idempotency_key() -> Value {
    json!({ "type": ["boolean", "string"], "default": true })
}

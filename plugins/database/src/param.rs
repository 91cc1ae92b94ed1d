//! Bound parameters: typed from their JSON value, or explicitly with
//! `{ type = "integer", value = "{{ params.n }}" }` so that a rendered template string can be
//! bound as another type. Values are bound by the host, never spliced into the SQL.

use std::fmt;

use runbook_plugin_sdk::runbook::plugin::sql;
use runbook_plugin_sdk::web::check::Checks;
use serde_json::{Map, Value};

/// The names of the explicit types, as written in `type`.
pub const TYPE_NAMES: &[&str] = &["text", "integer", "float", "boolean", "json", "null"];

/// One parameter, ready to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// JSON text, bound as the database's JSON type.
    Json(String),
}

impl Param {
    /// The WIT value the host binds.
    pub fn to_wit(&self) -> sql::Value {
        match self {
            Param::Null => sql::Value::Null,
            Param::Boolean(value) => sql::Value::Boolean(*value),
            Param::Integer(value) => sql::Value::Integer(*value),
            Param::Float(value) => sql::Value::Float(*value),
            Param::Text(value) => sql::Value::Text(value.clone()),
            Param::Json(value) => sql::Value::Json(value.clone()),
        }
    }
}

/// As an approver reads it: text quoted the SQL way, JSON with its type.
impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Null => f.write_str("NULL"),
            Param::Boolean(value) => write!(f, "{value}"),
            Param::Integer(value) => write!(f, "{value}"),
            Param::Float(value) => write!(f, "{value:?}"),
            Param::Text(value) => write!(f, "'{}'", value.replace('\'', "''")),
            Param::Json(value) => write!(f, "json '{}'", value.replace('\'', "''")),
        }
    }
}

/// Checks the `params` array found at `path`; `None` when a problem was recorded or a value
/// must wait for rendering (during `validate`).
pub fn check_params(values: &[Value], path: &str, checks: &mut Checks) -> Option<Vec<Param>> {
    let mut params = Some(Vec::with_capacity(values.len()));
    for (index, value) in values.iter().enumerate() {
        let field = format!("{path}[{index}]");
        match check_param(value, &field, checks) {
            Some(param) => {
                if let Some(params) = &mut params {
                    params.push(param);
                }
            }
            None => params = None,
        }
    }
    params
}

/// One parameter; `None` when a problem was recorded or it is a deferred template.
pub fn check_param(value: &Value, field: &str, checks: &mut Checks) -> Option<Param> {
    match value {
        Value::Object(table) if is_explicit(table) => explicit(table, field, checks),
        other => match implicit(other) {
            Ok(param) => Some(param),
            Err(message) => {
                checks.push(field, message);
                None
            }
        },
    }
}

/// `{ type = .., value = .. }`: a table with `type` and nothing but `value` besides. To bind
/// such a table as JSON, wrap it: `{ type = "json", value = { type = .., value = .. } }`.
fn is_explicit(table: &Map<String, Value>) -> bool {
    table.contains_key("type") && table.keys().all(|key| key == "type" || key == "value")
}

/// The type a JSON value implies.
fn implicit(value: &Value) -> Result<Param, String> {
    Ok(match value {
        Value::Null => Param::Null,
        Value::Bool(value) => Param::Boolean(*value),
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(integer), _) => Param::Integer(integer),
            (None, Some(big)) => {
                return Err(format!(
                    "{big} does not fit a 64-bit signed integer; pass it as text"
                ));
            }
            // Neither: a float (serde_json has no other number).
            (None, None) => Param::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => Param::Text(text.clone()),
        Value::Array(_) | Value::Object(_) => Param::Json(value.to_string()),
    })
}

fn explicit(table: &Map<String, Value>, field: &str, checks: &mut Checks) -> Option<Param> {
    let type_field = format!("{field}.type");
    let Some(Value::String(kind)) = table.get("type") else {
        checks.push(type_field, type_hint("must be a string naming the type"));
        return None;
    };
    if checks.deferred(kind) {
        return None;
    }
    if !TYPE_NAMES.contains(&kind.as_str()) {
        checks.push(type_field, type_hint(&format!("unknown type `{kind}`")));
        return None;
    }
    let value_field = format!("{field}.value");
    let value = match table.get("value") {
        None if kind == "null" => return Some(Param::Null),
        None => {
            checks.push(
                field,
                format!("missing `value` (the {kind} to bind; `null` binds NULL)"),
            );
            return None;
        }
        Some(Value::Null) => return Some(Param::Null),
        Some(value) => value,
    };
    if let Value::String(text) = value
        && checks.deferred(text)
    {
        return None;
    }
    match convert(kind, value) {
        Ok(param) => Some(param),
        Err(message) => {
            checks.push(value_field, message);
            None
        }
    }
}

fn type_hint(problem: &str) -> String {
    format!(
        "{problem}; expected one of {} (to bind this table as JSON, write {{ type = \"json\", value = {{ .. }} }})",
        TYPE_NAMES.join(", ")
    )
}

/// Converts a non-null value to the named type; strings are parsed, which is how a rendered
/// template becomes a number.
fn convert(kind: &str, value: &Value) -> Result<Param, String> {
    let shown = || match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    };
    match (kind, value) {
        ("text", Value::String(text)) => Ok(Param::Text(text.clone())),
        ("text", Value::Number(_) | Value::Bool(_)) => Ok(Param::Text(value.to_string())),
        ("integer", Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => Ok(Param::Integer(integer)),
            (None, Some(float))
                if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 =>
            {
                // Whole and exactly representable: `2.0` is 2. The bound proves the cast exact.
                #[allow(clippy::cast_possible_truncation)]
                Ok(Param::Integer(float as i64))
            }
            _ => Err(format!(
                "{} is not an integer that fits 64 bits",
                shown()
            )),
        },
        ("integer", Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map(Param::Integer)
            .map_err(|_| format!("{} is not an integer", shown())),
        ("float", Value::Number(number)) => number
            .as_f64()
            .map(Param::Float)
            .ok_or_else(|| format!("{} is not a number", shown())),
        ("float", Value::String(text)) => match text.trim().parse::<f64>() {
            Ok(float) if float.is_finite() => Ok(Param::Float(float)),
            _ => Err(format!("{} is not a finite number", shown())),
        },
        ("boolean", Value::Bool(value)) => Ok(Param::Boolean(*value)),
        ("boolean", Value::Number(number)) if number.as_u64().is_some_and(|n| n <= 1) => {
            Ok(Param::Boolean(number.as_u64() == Some(1)))
        }
        ("boolean", Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Param::Boolean(true)),
            "false" | "0" => Ok(Param::Boolean(false)),
            _ => Err(format!(
                "{} is not a boolean (true, false, 1 or 0)",
                shown()
            )),
        },
        // A string is JSON text (what `tojson` renders); anything else is the JSON itself.
        ("json", Value::String(text)) => serde_json::from_str::<Value>(text)
            .map(|parsed| Param::Json(parsed.to_string()))
            .map_err(|err| {
                format!(
                    "{} is not JSON text: {err} (a JSON string is written with its quotes, '\"text\"')",
                    shown()
                )
            }),
        ("json", other) => Ok(Param::Json(other.to_string())),
        ("null", _) => Err("a `null` parameter takes no value".into()),
        _ => Err(format!("{} cannot be bound as {kind}", shown())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::Phase;
    use serde_json::json;

    use super::*;

    fn run(values: Value) -> Result<Vec<Param>, Vec<String>> {
        let mut checks = Checks::new(Phase::Run);
        let values = values.as_array().unwrap().clone();
        let params = check_params(&values, "params", &mut checks);
        let errors: Vec<String> = checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        match params {
            Some(params) if errors.is_empty() => Ok(params),
            _ => Err(errors),
        }
    }

    #[test]
    fn json_values_imply_their_type() {
        assert_eq!(
            run(json!(["ada", 42, -1.5, true, null, {"a": 1}, [1, 2]])).unwrap(),
            [
                Param::Text("ada".into()),
                Param::Integer(42),
                Param::Float(-1.5),
                Param::Boolean(true),
                Param::Null,
                Param::Json(r#"{"a":1}"#.into()),
                Param::Json("[1,2]".into()),
            ]
        );
    }

    #[test]
    fn explicit_types_convert_rendered_strings() {
        assert_eq!(
            run(json!([
                {"type": "integer", "value": " 42 "},
                {"type": "integer", "value": 7},
                {"type": "integer", "value": 2.0},
                {"type": "float", "value": "1.25"},
                {"type": "float", "value": 3},
                {"type": "boolean", "value": "TRUE"},
                {"type": "boolean", "value": "0"},
                {"type": "boolean", "value": 1},
                {"type": "text", "value": 12},
                {"type": "text", "value": "12"},
                {"type": "json", "value": "{\"ids\": [1, 2]}"},
                {"type": "json", "value": {"type": "x", "value": 1}},
                {"type": "json", "value": "\"quoted\""},
                {"type": "null"},
                {"type": "integer", "value": null},
            ]))
            .unwrap(),
            [
                Param::Integer(42),
                Param::Integer(7),
                Param::Integer(2),
                Param::Float(1.25),
                Param::Float(3.0),
                Param::Boolean(true),
                Param::Boolean(false),
                Param::Boolean(true),
                Param::Text("12".into()),
                Param::Text("12".into()),
                Param::Json(r#"{"ids":[1,2]}"#.into()),
                Param::Json(r#"{"type":"x","value":1}"#.into()),
                Param::Json(r#""quoted""#.into()),
                Param::Null,
                Param::Null,
            ]
        );
    }

    #[test]
    fn bad_values_name_their_index_and_say_why() {
        let errors = run(json!([
            {"type": "integer", "value": "forty"},
            {"type": "integer", "value": 1.5},
            {"type": "float", "value": "NaN"},
            {"type": "boolean", "value": "yes"},
            {"type": "json", "value": "{nope"},
            {"type": "null", "value": 1},
            {"type": "decimal", "value": "1.5"},
            {"type": 3, "value": "x"},
            {"type": "text"},
            {"type": "integer", "value": [1]},
            18446744073709551615u64,
        ]))
        .unwrap_err();
        assert_eq!(errors.len(), 11, "{errors:#?}");
        assert_eq!(errors[0], "params[0].value: \"forty\" is not an integer");
        assert_eq!(
            errors[1],
            "params[1].value: 1.5 is not an integer that fits 64 bits"
        );
        assert_eq!(errors[2], "params[2].value: \"NaN\" is not a finite number");
        assert_eq!(
            errors[3],
            "params[3].value: \"yes\" is not a boolean (true, false, 1 or 0)"
        );
        assert!(
            errors[4].starts_with("params[4].value: \"{nope\" is not JSON text"),
            "{}",
            errors[4]
        );
        assert_eq!(
            errors[5],
            "params[5].value: a `null` parameter takes no value"
        );
        assert!(
            errors[6].starts_with(
                "params[6].type: unknown type `decimal`; expected one of text, integer, float, boolean, json, null"
            ),
            "{}",
            errors[6]
        );
        assert!(
            errors[7].starts_with("params[7].type: must be a string"),
            "{}",
            errors[7]
        );
        assert_eq!(
            errors[8],
            "params[8]: missing `value` (the text to bind; `null` binds NULL)"
        );
        assert_eq!(errors[9], "params[9].value: [1] cannot be bound as integer");
        assert_eq!(
            errors[10],
            "params[10]: 18446744073709551615 does not fit a 64-bit signed integer; pass it as text"
        );
    }

    #[test]
    fn tables_that_are_not_the_explicit_form_are_json() {
        assert_eq!(
            run(json!([{"type": "integer", "value": 1, "extra": true}, {"value": 1}])).unwrap(),
            [
                Param::Json(r#"{"extra":true,"type":"integer","value":1}"#.into()),
                Param::Json(r#"{"value":1}"#.into()),
            ]
        );
    }

    #[test]
    fn templates_wait_for_rendering_only_while_validating() {
        let values = vec![
            json!({"type": "integer", "value": "{{ params.n }}"}),
            json!({"type": "{{ params.t }}", "value": "1"}),
            json!("{{ params.name }}"),
        ];
        let mut checks = Checks::new(Phase::Validate);
        assert_eq!(check_params(&values, "params", &mut checks), None);
        assert!(checks.is_ok());
        let mut checks = Checks::new(Phase::Run);
        check_params(&values, "params", &mut checks);
        let errors = checks.into_errors();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "params[0].value");
        assert_eq!(errors[1].path, "params[1].type");
    }

    #[test]
    fn values_display_as_an_approver_reads_them() {
        let shown: Vec<String> = [
            Param::Text("o'brien".into()),
            Param::Integer(-3),
            Param::Float(2.0),
            Param::Boolean(false),
            Param::Null,
            Param::Json(r#"{"a":"it's"}"#.into()),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            shown,
            [
                "'o''brien'",
                "-3",
                "2.0",
                "false",
                "NULL",
                r#"json '{"a":"it''s"}'"#
            ]
        );
    }

    #[test]
    fn params_become_wit_values() {
        assert!(matches!(Param::Integer(5).to_wit(), sql::Value::Integer(5)));
        assert!(matches!(
            Param::Json("[]".into()).to_wit(),
            sql::Value::Json(text) if text == "[]"
        ));
    }
}

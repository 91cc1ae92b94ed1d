//! GraphQL `errors` in a response, as one line each: `user.email: not authorized`.

use serde_json::Value;

/// One error: its path (`user.email`, `users[0].name`) and message; without a path, the
/// message and where in the query it points.
pub fn describe(error: &Value) -> String {
    let message = match error.get("message") {
        Some(Value::String(message)) => message.clone(),
        _ => error.to_string(),
    };
    if let Some(path) = error
        .get("path")
        .and_then(Value::as_array)
        .filter(|path| !path.is_empty())
    {
        return format!("{}: {message}", format_path(path));
    }
    let location = error
        .get("locations")
        .and_then(Value::as_array)
        .and_then(|locations| locations.first())
        .and_then(|first| Some((first.get("line")?.as_u64()?, first.get("column")?.as_u64()?)));
    match location {
        Some((line, column)) => format!("{message} (line {line}, column {column} of the query)"),
        None => message,
    }
}

fn format_path(path: &[Value]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Value::Number(index) => text.push_str(&format!("[{index}]")),
            Value::String(field) if text.is_empty() => text.push_str(field),
            Value::String(field) => {
                text.push('.');
                text.push_str(field);
            }
            other => {
                text.push('.');
                text.push_str(&other.to_string());
            }
        }
    }
    text
}

/// All errors in one line: `GraphQL error: ..` or `3 GraphQL errors: ..; ..; ..`.
pub fn summary(errors: &[Value]) -> String {
    let lines: Vec<String> = errors.iter().map(describe).collect();
    match lines.len() {
        1 => format!("GraphQL error: {}", lines[0]),
        count => format!("{count} GraphQL errors: {}", lines.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn errors_read_as_path_and_message() {
        assert_eq!(
            describe(&json!({"message": "not authorized", "path": ["user", "email"]})),
            "user.email: not authorized"
        );
        assert_eq!(
            describe(&json!({"message": "boom", "path": ["users", 0, "name"]})),
            "users[0].name: boom"
        );
        assert_eq!(
            describe(&json!({"message": "Unknown field", "locations": [{"line": 2, "column": 3}]})),
            "Unknown field (line 2, column 3 of the query)"
        );
        assert_eq!(describe(&json!({"message": "plain"})), "plain");
        assert_eq!(describe(&json!({"code": 1})), r#"{"code":1}"#);
    }

    #[test]
    fn summaries_count_errors() {
        assert_eq!(summary(&[json!({"message": "a"})]), "GraphQL error: a");
        assert_eq!(
            summary(&[
                json!({"message": "a"}),
                json!({"message": "b", "path": ["x"]})
            ]),
            "2 GraphQL errors: a; x: b"
        );
    }
}

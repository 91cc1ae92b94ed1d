//! Checks and types the params of a new run against the runbook's `[params]`, before the run
//! exists.

use std::collections::HashMap;

use crate::runbook::Runbook;

/// Turns raw `key=value` texts into typed params, applying defaults. Errors name the param
/// and say what was expected.
pub fn resolve(
    runbook: &Runbook,
    raw: &HashMap<String, String>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut problems = Vec::new();
    for name in raw.keys() {
        if !runbook.params.iter().any(|param| &param.name == name) {
            let known: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            problems.push(if known.is_empty() {
                format!(
                    "unknown param `{name}`: runbook `{}` takes no params",
                    runbook.name
                )
            } else {
                format!(
                    "unknown param `{name}`; `{}` takes: {}",
                    runbook.name,
                    known.join(", ")
                )
            });
        }
    }
    let mut params = serde_json::Map::new();
    for param in &runbook.params {
        let value = match raw.get(&param.name) {
            Some(text) => match param.kind.parse_text(text) {
                Ok(value) => Some(value),
                Err(err) => {
                    problems.push(format!("param `{}`: {err}", param.name));
                    continue;
                }
            },
            None => param.default.clone(),
        };
        let Some(value) = value else {
            if param.required {
                problems.push(format!(
                    "param `{}` is required (-p {}=<{}>)",
                    param.name,
                    param.name,
                    param.kind.label()
                ));
            }
            continue;
        };
        if !param.allowed.is_empty() && !param.allowed.iter().any(|a| same_value(a, &value)) {
            problems.push(format!(
                "param `{}`: {value} is not one of {}",
                param.name,
                serde_json::Value::Array(param.allowed.clone())
            ));
            continue;
        }
        params.insert(param.name.clone(), value);
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(problems.join("; "))
    }
}

/// Equality where numbers compare by value: `3` given on the command line matches an allowed
/// `3.0` in the file, and the other way round.
fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

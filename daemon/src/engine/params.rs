//! Checks and types the params of a new run against the runbook's `[params]`, before the run
//! exists, and the inputs an operator gives an `instruction` step against its `inputs`.

use std::collections::HashMap;

use crate::runbook::{Param, Runbook};

/// Turns raw `key=value` texts into typed params, applying defaults. Errors name the param
/// and say what was expected.
pub fn resolve(
    runbook: &Runbook,
    raw: &HashMap<String, String>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let owner = format!("runbook `{}`", runbook.name);
    resolve_declared(&runbook.params, raw, &Declared::PARAMS, &owner)
}

/// Turns the raw `key=value` texts an operator confirmed an instruction step with into its
/// typed inputs, applying defaults.
pub fn resolve_inputs(
    step_id: &str,
    inputs: &[Param],
    raw: &HashMap<String, String>,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let owner = format!("step `{step_id}`");
    resolve_declared(inputs, raw, &Declared::INPUTS, &owner)
}

/// How messages name one kind of declared value.
struct Declared {
    noun: &'static str,
    plural: &'static str,
    /// The command-line flag that gives one.
    flag: &'static str,
}

impl Declared {
    const PARAMS: Self = Self {
        noun: "param",
        plural: "params",
        flag: "-p",
    };
    const INPUTS: Self = Self {
        noun: "input",
        plural: "inputs",
        flag: "-i",
    };
}

fn resolve_declared(
    declared: &[Param],
    raw: &HashMap<String, String>,
    names: &Declared,
    owner: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let Declared { noun, plural, flag } = names;
    let mut problems = Vec::new();
    let mut unknown: Vec<&String> = raw
        .keys()
        .filter(|name| !declared.iter().any(|param| &param.name == *name))
        .collect();
    unknown.sort();
    for name in unknown {
        let known: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
        problems.push(if known.is_empty() {
            format!("unknown {noun} `{name}`: {owner} takes no {plural}")
        } else {
            format!(
                "unknown {noun} `{name}`; {owner} takes: {}",
                known.join(", ")
            )
        });
    }
    let mut values = serde_json::Map::new();
    for param in declared {
        let value = match raw.get(&param.name) {
            Some(text) => match param.kind.parse_text(text) {
                Ok(value) => Some(value),
                Err(err) => {
                    problems.push(format!("{noun} `{}`: {err}", param.name));
                    continue;
                }
            },
            None => param.default.clone(),
        };
        let Some(value) = value else {
            if param.required {
                problems.push(format!(
                    "{noun} `{}` is required ({flag} {}=<{}>)",
                    param.name,
                    param.name,
                    param.kind.label()
                ));
            }
            continue;
        };
        if !param.allowed.is_empty() && !param.allowed.iter().any(|a| same_value(a, &value)) {
            problems.push(format!(
                "{noun} `{}`: {value} is not one of {}",
                param.name,
                serde_json::Value::Array(param.allowed.clone())
            ));
            continue;
        }
        values.insert(param.name.clone(), value);
    }
    if problems.is_empty() {
        Ok(values)
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

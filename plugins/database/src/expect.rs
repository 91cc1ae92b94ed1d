//! The `expect` table of a database step: how many rows came or were affected, whether there
//! were any, and what the first row holds; a message per failed expectation.

use std::collections::BTreeMap;

use runbook_plugin_sdk::web::check::{Checks, join_path};
use runbook_plugin_sdk::web::expect::short;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The `expect` table as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exactly this many rows (a query) or affected rows (`execute`, `statements`: in all).
    #[serde(default)]
    pub row_count: Option<u64>,
    /// Column to the value the first row must hold there.
    #[serde(default)]
    pub first_row: Option<BTreeMap<String, Value>>,
    /// `true`: no row (affected). `false`: at least one.
    #[serde(default)]
    pub empty: Option<bool>,
    /// `true`: at least one row (affected). `false`: none.
    #[serde(default)]
    pub non_empty: Option<bool>,
}

/// [`Expect`], checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    row_count: Option<u64>,
    first_row: Option<Vec<(String, Value)>>,
    /// Whether there must be no row (`Some(true)`) or some (`Some(false)`).
    empty: Option<bool>,
}

/// What came back, as expectations see it.
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    /// A query's rows (objects of column to value), and whether `max_rows` cut them.
    Rows {
        /// The rows kept.
        rows: &'a [Value],
        /// Whether more came and were dropped.
        truncated: bool,
    },
    /// The rows affected by `execute` or by all of `statements`.
    Affected(u64),
}

impl Expect {
    /// Checks the table found at `path`; `returns_rows` says whether the step is a query.
    pub fn compile(&self, path: &str, returns_rows: bool, checks: &mut Checks) -> Expectations {
        let empty = match (self.empty, self.non_empty) {
            (Some(empty), Some(non_empty)) if empty == non_empty => {
                checks.push(
                    join_path(path, "non_empty"),
                    format!("contradicts `empty = {empty}`"),
                );
                None
            }
            (Some(empty), _) => Some(empty),
            (None, Some(non_empty)) => Some(!non_empty),
            (None, None) => None,
        };
        if let (Some(count), Some(empty)) = (self.row_count, empty)
            && (count == 0) != empty
        {
            let name = if self.empty.is_some() {
                "empty"
            } else {
                "non_empty"
            };
            checks.push(
                join_path(path, name),
                format!("contradicts `row_count = {count}`"),
            );
        }
        if self.first_row.is_some() && !returns_rows {
            checks.push(
                join_path(path, "first_row"),
                "goes with `query`: `execute` and `statements` return no rows",
            );
        }
        if self.first_row.is_some() && (self.row_count == Some(0) || empty == Some(true)) {
            checks.push(
                join_path(path, "first_row"),
                "expects a row, but the step expects none",
            );
        }
        Expectations {
            row_count: self.row_count,
            first_row: self
                .first_row
                .as_ref()
                .map(|row| row.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            empty,
        }
    }
}

impl Expectations {
    /// Every failed expectation, in the order of the table; empty when all pass.
    pub fn evaluate(&self, result: Observed<'_>) -> Vec<String> {
        let mut failures = Vec::new();
        let (count, truncated, noun) = match result {
            Observed::Rows { rows, truncated } => (rows.len() as u64, truncated, "row"),
            Observed::Affected(count) => (count, false, "affected row"),
        };
        let got = |count: u64| {
            if truncated {
                format!("more than {count} (cut at max_rows)")
            } else {
                count.to_string()
            }
        };
        if let Some(expected) = self.row_count
            && (expected != count || truncated)
        {
            failures.push(format!(
                "expected {}, got {}",
                plural(expected, noun),
                got(count)
            ));
        }
        match self.empty {
            Some(true) if count > 0 => {
                failures.push(format!("expected no {noun}s, got {}", got(count)));
            }
            Some(false) if count == 0 => {
                failures.push(format!("expected at least one {noun}, got none"));
            }
            _ => {}
        }
        if let (Some(columns), Observed::Rows { rows, .. }) = (&self.first_row, result) {
            match rows.first() {
                None => failures.push("first_row: expected a row, got none".into()),
                Some(row) => check_row(columns, row, &mut failures),
            }
        }
        failures
    }
}

fn check_row(columns: &[(String, Value)], row: &Value, failures: &mut Vec<String>) {
    let empty = Map::new();
    let row = row.as_object().unwrap_or(&empty);
    for (column, expected) in columns {
        match row.get(column) {
            Some(actual) if same(expected, actual) => {}
            Some(actual) => failures.push(format!(
                "first_row.{column}: expected {}, got {}",
                short(expected),
                short(actual)
            )),
            None => {
                let mut names: Vec<&str> = row.keys().map(String::as_str).collect();
                names.sort_unstable();
                failures.push(format!(
                    "first_row.{column}: the row has no column `{column}` (columns: {})",
                    names.join(", ")
                ));
            }
        }
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Equality as a runbook author means it: numbers by value (TOML's `1` is a column's `1.0`,
/// and a decimal the database returned as a string to keep its precision, `"12.50"`, is
/// `12.5`), and `true`/`false` are the `1`/`0` that MySQL and SQLite store booleans as.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Number(x), Value::String(text)) => {
            is_decimal(text) && text.trim().parse::<f64>().ok() == x.as_f64()
        }
        (Value::Bool(flag), Value::Number(n)) => n.as_u64() == Some(u64::from(*flag)),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, value)| y.get(key).is_some_and(|other| same(value, other)))
        }
        _ => expected == actual,
    }
}

/// Digits with an optional sign and decimal point: what a database writes for a decimal
/// (not `"inf"` or `"1e3"`, which `f64` would also parse).
fn is_decimal(text: &str) -> bool {
    let digits = text.trim().trim_start_matches(['-', '+']);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next().unwrap_or("");
    (!whole.is_empty() || !fraction.is_empty())
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::Phase;
    use serde_json::json;

    use super::*;

    fn compile(table: Value, returns_rows: bool) -> Expectations {
        let expect: Expect = serde_json::from_value(table).unwrap();
        let mut checks = Checks::new(Phase::Run);
        let compiled = expect.compile("expect", returns_rows, &mut checks);
        assert!(checks.is_ok(), "{:?}", checks.into_errors());
        compiled
    }

    fn errors(table: Value, returns_rows: bool) -> Vec<String> {
        let expect: Expect = serde_json::from_value(table).unwrap();
        let mut checks = Checks::new(Phase::Validate);
        expect.compile("expect", returns_rows, &mut checks);
        checks
            .into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    fn rows(rows: &[Value]) -> Observed<'_> {
        Observed::Rows {
            rows,
            truncated: false,
        }
    }

    #[test]
    fn passing_expectations_give_no_failure() {
        let expect = compile(
            json!({"row_count": 1, "non_empty": true,
                   "first_row": {"id": 7, "name": "ada", "total": 12.5, "active": true,
                                 "tags": ["a"], "meta": {"n": 1.0}, "gone": null}}),
            true,
        );
        let data = [
            json!({"id": 7.0, "name": "ada", "total": "12.50", "active": 1,
                           "tags": ["a"], "meta": {"n": 1}, "gone": null}),
        ];
        assert_eq!(expect.evaluate(rows(&data)), Vec::<String>::new());
        let expect = compile(json!({"row_count": 3, "empty": false}), false);
        assert_eq!(expect.evaluate(Observed::Affected(3)), Vec::<String>::new());
    }

    #[test]
    fn every_failure_is_listed() {
        let expect = compile(
            json!({"row_count": 1, "first_row": {"name": "ada", "nme": 1, "total": 12.5, "on": true}}),
            true,
        );
        let data = [
            json!({"name": "bob", "total": "12.6", "on": 0}),
            json!({"name": "eve", "total": "1", "on": 1}),
        ];
        assert_eq!(
            expect.evaluate(rows(&data)),
            [
                "expected 1 row, got 2",
                "first_row.name: expected \"ada\", got \"bob\"",
                "first_row.nme: the row has no column `nme` (columns: name, on, total)",
                "first_row.on: expected true, got 0",
                "first_row.total: expected 12.5, got \"12.6\"",
            ]
        );
    }

    #[test]
    fn no_rows_fail_row_expectations() {
        let expect = compile(json!({"row_count": 1, "first_row": {"id": 1}}), true);
        assert_eq!(
            expect.evaluate(rows(&[])),
            [
                "expected 1 row, got 0",
                "first_row: expected a row, got none"
            ]
        );
        let expect = compile(json!({"non_empty": true}), true);
        assert_eq!(
            expect.evaluate(rows(&[])),
            ["expected at least one row, got none"]
        );
        let expect = compile(json!({"empty": true}), true);
        assert_eq!(
            expect.evaluate(rows(&[json!({}), json!({})])),
            ["expected no rows, got 2"]
        );
    }

    #[test]
    fn affected_rows_have_their_own_words() {
        let expect = compile(json!({"row_count": 1}), false);
        assert_eq!(
            expect.evaluate(Observed::Affected(0)),
            ["expected 1 affected row, got 0"]
        );
        let expect = compile(json!({"empty": true}), false);
        assert_eq!(
            expect.evaluate(Observed::Affected(4)),
            ["expected no affected rows, got 4"]
        );
        let expect = compile(json!({"non_empty": true}), false);
        assert_eq!(
            expect.evaluate(Observed::Affected(0)),
            ["expected at least one affected row, got none"]
        );
    }

    #[test]
    fn truncated_results_never_pass_a_row_count() {
        let expect = compile(json!({"row_count": 2}), true);
        let data = [json!({}), json!({})];
        assert_eq!(
            expect.evaluate(Observed::Rows {
                rows: &data,
                truncated: true
            }),
            ["expected 2 rows, got more than 2 (cut at max_rows)"]
        );
    }

    #[test]
    fn contradictions_are_config_errors() {
        assert_eq!(
            errors(json!({"empty": true, "non_empty": true}), true),
            ["expect.non_empty: contradicts `empty = true`"]
        );
        assert_eq!(
            errors(json!({"empty": true, "row_count": 2}), true),
            ["expect.empty: contradicts `row_count = 2`"]
        );
        assert_eq!(
            errors(json!({"non_empty": true, "row_count": 0}), true),
            ["expect.non_empty: contradicts `row_count = 0`"]
        );
        assert_eq!(
            errors(json!({"first_row": {"a": 1}}), false),
            ["expect.first_row: goes with `query`: `execute` and `statements` return no rows"]
        );
        assert_eq!(
            errors(json!({"first_row": {"a": 1}, "empty": true}), true),
            ["expect.first_row: expects a row, but the step expects none"]
        );
        assert_eq!(
            errors(json!({"empty": false, "non_empty": true}), true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn decimals_compare_by_value_but_other_strings_do_not() {
        assert!(same(&json!(12.5), &json!("12.50")));
        assert!(same(&json!(-3), &json!("-3.000")));
        assert!(!same(&json!(1000), &json!("1e3")));
        assert!(!same(&json!(1), &json!("one")));
        assert!(!same(&json!("1"), &json!(1)));
        assert!(!same(&json!(true), &json!(2)));
        assert!(same(&json!(false), &json!(0)));
    }
}

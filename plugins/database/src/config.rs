//! The `with` table of a database step, and turning it into what runs: checked in full by
//! `validate` (templates skipped), prepared with rendered values at run time.

use std::collections::BTreeMap;
use std::fmt;

use runbook_plugin_sdk::runbook::plugin::sql;
use runbook_plugin_sdk::runbook::plugin::types::StepContext;
use runbook_plugin_sdk::web::capture::{CaptureSet, CaptureSpec, Captures, compile_captures};
use runbook_plugin_sdk::web::check::{Checks, StepConfig, join_path};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::classify;
use crate::expect::{Expect, Expectations};
use crate::param::{Param, check_params};

/// How many rows a query keeps when `max_rows` is not given.
pub const DEFAULT_MAX_ROWS: u32 = 10_000;

/// The `with` table of a database step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A connection name of the daemon config or the runbook's `[connections.NAME]`.
    #[serde(default)]
    pub connection: Option<String>,
    /// A statement returning rows.
    #[serde(default)]
    pub query: Option<String>,
    /// A statement returning an affected-row count.
    #[serde(default)]
    pub execute: Option<String>,
    /// Statements run in one transaction.
    #[serde(default)]
    pub statements: Option<Vec<StatementSpec>>,
    /// Positional parameters of `query` or `execute`.
    #[serde(default)]
    pub params: Option<Vec<Value>>,
    /// The most rows a query keeps: an integer, or a string that renders to one.
    #[serde(default)]
    pub max_rows: Option<Value>,
    /// What the result must look like.
    #[serde(default)]
    pub expect: Expect,
    /// Name to a JSONPath over the step's output.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

/// One item of `statements`: the SQL alone, or `{ sql = .., params = [..] }`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementSpec {
    /// The SQL text.
    pub sql: String,
    /// Its positional parameters.
    pub params: Vec<Value>,
    /// Whether it was written as a table (so that errors name `.sql`).
    pub table: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementTable {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

impl<'de> Deserialize<'de> for StatementSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = StatementSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an SQL string or a table { sql = \"..\", params = [..] }")
            }

            fn visit_str<E: de::Error>(self, sql: &str) -> Result<StatementSpec, E> {
                Ok(StatementSpec {
                    sql: sql.to_owned(),
                    params: Vec::new(),
                    table: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StatementSpec, A::Error> {
                StatementTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(
                    |table| StatementSpec {
                        sql: table.sql,
                        params: table.params,
                        table: true,
                    },
                )
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

/// One statement, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL exactly as written (after templating): the plugin never rewrites it.
    pub sql: String,
    /// Its parameters, typed.
    pub params: Vec<Param>,
}

impl Statement {
    /// The WIT statement the host runs.
    pub fn to_wit(&self) -> sql::Statement {
        sql::Statement {
            sql: self.sql.clone(),
            params: self.params.iter().map(Param::to_wit).collect(),
        }
    }
}

/// What the step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `query`: one statement's rows, at most `max_rows`.
    Query {
        /// The statement.
        statement: Statement,
        /// The most rows kept.
        max_rows: u32,
    },
    /// `execute`: one statement's affected-row count.
    Execute(Statement),
    /// `statements`: several, in one transaction.
    Statements(Vec<Statement>),
}

impl Action {
    /// The statements, in order.
    pub fn statements(&self) -> Vec<&Statement> {
        match self {
            Action::Query { statement, .. } | Action::Execute(statement) => vec![statement],
            Action::Statements(statements) => statements.iter().collect(),
        }
    }

    /// Whether any statement writes data or changes the schema.
    pub fn writes(&self) -> bool {
        self.statements()
            .iter()
            .any(|statement| classify::writes(&statement.sql))
    }
}

/// A step ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The connection's name.
    pub connection: String,
    /// What runs.
    pub action: Action,
    /// `expect`, checked.
    pub expectations: Expectations,
    /// `capture`, compiled.
    pub captures: CaptureSet,
}

impl StepConfig for DatabaseConfig {
    type Prepared = Prepared;

    const KIND: &'static str = "database";

    fn build(&self, checks: &mut Checks, ctx: Option<&StepContext>) -> Option<Prepared> {
        let connection = self.check_connection(checks);
        let action = self.check_action(checks);
        let expectations = self.expect.compile(
            "expect",
            self.statements.is_none() && self.execute.is_none(),
            checks,
        );
        let captures: Captures = self
            .capture
            .iter()
            .map(|(name, path)| (name.clone(), CaptureSpec::Path(path.clone())))
            .collect();
        let captures = compile_captures(&captures, "capture", checks);
        // While validating there is nothing to assemble.
        ctx?;
        Some(Prepared {
            connection: connection?,
            action: action?,
            expectations,
            captures,
        })
    }
}

impl DatabaseConfig {
    fn check_connection(&self, checks: &mut Checks) -> Option<String> {
        let Some(name) = &self.connection else {
            checks.push(
                "connection",
                "missing: name a connection of the daemon config or of the runbook's [connections.NAME]",
            );
            return None;
        };
        if checks.deferred(name) {
            return None;
        }
        if name.trim().is_empty() {
            checks.push("connection", "must name a connection");
            return None;
        }
        if name.contains("://") {
            checks.push(
                "connection",
                "names a connection, not a URL: define the connection in the daemon config or in the runbook's [connections.NAME] and name it here",
            );
            return None;
        }
        Some(name.clone())
    }

    fn check_action(&self, checks: &mut Checks) -> Option<Action> {
        let given: Vec<&str> = [
            ("query", self.query.is_some()),
            ("execute", self.execute.is_some()),
            ("statements", self.statements.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        match given.as_slice() {
            [] => {
                checks.push(
                    "",
                    "set one of `query` (a statement returning rows), `execute` (a statement returning an affected-row count) or `statements` (several, in one transaction)",
                );
                return None;
            }
            [_] => {}
            many => {
                checks.push(
                    "",
                    format!(
                        "set only one of `query`, `execute` and `statements`; found `{}`",
                        many.join("` and `")
                    ),
                );
                return None;
            }
        }
        let max_rows = self.check_max_rows(checks);
        if let Some(query) = &self.query {
            let statement = self.single(query, "query", checks);
            return Some(Action::Query {
                statement: statement?,
                max_rows: max_rows?,
            });
        }
        if self.max_rows.is_some() {
            checks.push("max_rows", "goes with `query`");
        }
        if let Some(execute) = &self.execute {
            return self.single(execute, "execute", checks).map(Action::Execute);
        }
        let items = self.statements.as_deref().unwrap_or_default();
        if self.params.is_some() {
            checks.push(
                "params",
                "goes with `query` or `execute`; give each item of `statements` its own: { sql = \"..\", params = [..] }",
            );
        }
        if items.is_empty() {
            checks.push("statements", "must hold at least one statement");
            return None;
        }
        let mut statements = Some(Vec::with_capacity(items.len()));
        for (index, item) in items.iter().enumerate() {
            let field = format!("statements[{index}]");
            let sql_field = if item.table {
                join_path(&field, "sql")
            } else {
                field.clone()
            };
            let sql = check_sql(&item.sql, &sql_field, checks);
            let params = check_params(&item.params, &join_path(&field, "params"), checks);
            match (sql, params, &mut statements) {
                (Some(sql), Some(params), Some(list)) => list.push(Statement { sql, params }),
                _ => statements = None,
            }
        }
        statements.map(Action::Statements)
    }

    /// `query` or `execute` with the top-level `params`.
    fn single(&self, sql: &str, field: &str, checks: &mut Checks) -> Option<Statement> {
        let sql = check_sql(sql, field, checks);
        let params = check_params(self.params.as_deref().unwrap_or_default(), "params", checks);
        Some(Statement {
            sql: sql?,
            params: params?,
        })
    }

    fn check_max_rows(&self, checks: &mut Checks) -> Option<u32> {
        let Some(value) = &self.max_rows else {
            return Some(DEFAULT_MAX_ROWS);
        };
        let count = match value {
            Value::String(text) if checks.deferred(text) => return None,
            Value::String(text) => text.trim().parse::<i64>().ok(),
            Value::Number(number) => number.as_i64(),
            _ => None,
        };
        match count.map(u32::try_from) {
            Some(Ok(count)) if count >= 1 => Some(count),
            Some(_) => {
                checks.push(
                    "max_rows",
                    format!("must be between 1 and {}, got {value}", u32::MAX),
                );
                None
            }
            None => {
                checks.push("max_rows", format!("must be an integer, got {value}"));
                None
            }
        }
    }
}

/// An SQL text: not empty, not only comments. It is kept exactly as written.
fn check_sql(sql: &str, field: &str, checks: &mut Checks) -> Option<String> {
    if checks.deferred(sql) {
        return None;
    }
    if sql.trim().is_empty() {
        checks.push(field, "must not be empty");
        return None;
    }
    if classify::first_keyword(sql).is_none() {
        checks.push(field, "holds no statement (only comments or punctuation)");
        return None;
    }
    Some(sql.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::runbook::plugin::types::StepError;
    use runbook_plugin_sdk::web::testing::step_context;

    use super::*;

    fn errors(json: &str) -> Vec<String> {
        DatabaseConfig::validate_config(json)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|err| format!("{}: {}", err.path, err.message))
            .collect()
    }

    fn prepare(json: &str) -> Result<Prepared, StepError> {
        DatabaseConfig::parse(json)
            .map_err(StepError::from)?
            .prepare(&step_context("01RUN", "orders", 1))
    }

    #[test]
    fn minimal_steps_are_valid() {
        for json in [
            r#"{"connection": "orders", "query": "select 1"}"#,
            r#"{"connection": "orders", "execute": "delete from t where id = $1", "params": [1]}"#,
            r#"{"connection": "orders", "statements": ["insert into t values (1)",
                {"sql": "update t set n = ?", "params": [{"type": "integer", "value": "2"}]}]}"#,
            r#"{"connection": "orders", "query": "select id from t", "max_rows": 5,
                "expect": {"row_count": 1, "first_row": {"id": 1}}, "capture": {"id": "$.rows[0].id"}}"#,
        ] {
            assert_eq!(errors(json), Vec::<String>::new(), "{json}");
        }
    }

    #[test]
    fn templates_pass_validation() {
        assert_eq!(
            errors(
                r#"{"connection": "{{ params.db }}", "query": "{{ params.sql }}",
                    "params": [{"type": "integer", "value": "{{ params.n }}"}, "{{ params.name }}"],
                    "max_rows": "{{ params.limit }}", "capture": {"x": "{{ params.path }}"}}"#
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let found = errors(
            r#"{"connection": "postgres://u:p@h/db", "query": "  -- nothing\n",
                "params": [{"type": "integer", "value": "x"}], "max_rows": 0,
                "expect": {"empty": true, "non_empty": true}, "capture": {"id": "$["}}"#,
        );
        let paths: Vec<&str> = found
            .iter()
            .map(|line| line.split(": ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "connection",
                "max_rows",
                "query",
                "params[0].value",
                "expect.non_empty",
                "capture.id"
            ],
            "{found:#?}"
        );
        assert!(found[0].contains("not a URL"), "{}", found[0]);
        assert_eq!(
            found[2],
            "query: holds no statement (only comments or punctuation)"
        );
    }

    #[test]
    fn exactly_one_kind_of_statement() {
        assert_eq!(
            errors(r#"{"connection": "c"}"#),
            [
                ": set one of `query` (a statement returning rows), `execute` (a statement returning an affected-row count) or `statements` (several, in one transaction)"
            ]
        );
        assert_eq!(
            errors(r#"{"connection": "c", "query": "select 1", "execute": "delete from t"}"#),
            [": set only one of `query`, `execute` and `statements`; found `query` and `execute`"]
        );
        assert_eq!(
            errors(r#"{"query": "select 1"}"#),
            [
                "connection: missing: name a connection of the daemon config or of the runbook's [connections.NAME]"
            ]
        );
    }

    #[test]
    fn statements_are_checked_one_by_one() {
        assert_eq!(
            errors(
                r#"{"connection": "c", "statements": ["", {"sql": " "}, {"sql": "update t", "params": [{"type": "float", "value": "a"}]}],
                    "params": [1], "max_rows": 3}"#
            ),
            [
                "max_rows: goes with `query`",
                "params: goes with `query` or `execute`; give each item of `statements` its own: { sql = \"..\", params = [..] }",
                "statements[0]: must not be empty",
                "statements[1].sql: must not be empty",
                "statements[2].params[0].value: \"a\" is not a finite number",
            ]
        );
        assert_eq!(
            errors(r#"{"connection": "c", "statements": []}"#),
            ["statements: must hold at least one statement"]
        );
    }

    #[test]
    fn unknown_fields_suggest_the_right_one() {
        assert_eq!(
            errors(r#"{"connection": "c", "querry": "select 1"}"#),
            ["querry: unknown field `querry`; did you mean `query`?"]
        );
        assert_eq!(
            errors(r#"{"connection": "c", "query": "select 1", "expect": {"rowcount": 1}}"#),
            ["expect.rowcount: unknown field `rowcount`; did you mean `row_count`?"]
        );
        let found = errors(r#"{"connection": "c", "statements": [{"sql": "x", "parms": []}]}"#);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("unknown field `parms`; did you mean `params`?"),
            "{found:?}"
        );
    }

    #[test]
    fn wrong_shapes_are_named() {
        let found = errors(r#"{"connection": "c", "statements": [1]}"#);
        assert!(
            found[0].contains("expected an SQL string or a table"),
            "{found:?}"
        );
        let found = errors(r#"{"connection": "c", "query": "select 1", "max_rows": true}"#);
        assert_eq!(found, ["max_rows: must be an integer, got true"]);
        let found = errors(
            r#"{"connection": "c", "query": "select 1", "capture": {"id": {"json": "$.x"}}}"#,
        );
        assert!(
            found[0].starts_with("capture.id: invalid type"),
            "{found:?}"
        );
    }

    #[test]
    fn prepared_steps_keep_the_sql_exactly() {
        let prepared = prepare(
            r#"{"connection": "orders", "query": "select *\n  from t where id = $1", "params": [{"type": "integer", "value": "7"}],
                "max_rows": "50"}"#,
        )
        .unwrap();
        assert_eq!(prepared.connection, "orders");
        assert_eq!(
            prepared.action,
            Action::Query {
                statement: Statement {
                    sql: "select *\n  from t where id = $1".into(),
                    params: vec![Param::Integer(7)],
                },
                max_rows: 50,
            }
        );
        assert!(!prepared.action.writes());
        let prepared = prepare(r#"{"connection": "orders", "query": "select 1"}"#).unwrap();
        assert!(matches!(
            prepared.action,
            Action::Query {
                max_rows: DEFAULT_MAX_ROWS,
                ..
            }
        ));
    }

    #[test]
    fn statements_prepare_in_order_and_write() {
        let prepared = prepare(
            r#"{"connection": "orders", "statements": ["select 1", {"sql": "insert into t values (?)", "params": ["a"]}]}"#,
        )
        .unwrap();
        let Action::Statements(statements) = &prepared.action else {
            panic!("{:?}", prepared.action);
        };
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1].params, [Param::Text("a".into())]);
        assert!(prepared.action.writes());
    }

    #[test]
    fn rendered_values_that_do_not_convert_fail_permanently() {
        let err = prepare(
            r#"{"connection": "orders", "execute": "delete from t where id = $1", "params": [{"type": "integer", "value": "seven"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.message, "params[0].value: \"seven\" is not an integer");
        assert!(!err.transient);
        let err = prepare(r#"{"connection": "orders", "query": "select 1", "max_rows": "lots"}"#)
            .unwrap_err();
        assert_eq!(err.message, "max_rows: must be an integer, got \"lots\"");
    }
}

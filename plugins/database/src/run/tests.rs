//! The whole step against a scripted host.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::VecDeque;

use runbook_plugin_sdk::runbook::plugin::events::Level;
use runbook_plugin_sdk::runbook::plugin::sql;
use runbook_plugin_sdk::runbook::plugin::types::{Outcome, StepContext};
use runbook_plugin_sdk::web::testing::step_context;
use serde_json::{Value, json};

use super::{SqlHost, execute};

/// What the fake was asked to do.
#[derive(Debug)]
enum Call {
    Query {
        connection: String,
        statement: sql::Statement,
        max_rows: u32,
    },
    Execute {
        connection: String,
        statements: Vec<sql::Statement>,
    },
}

/// A host that answers from a script and records every call and log line.
#[derive(Default)]
struct FakeSql {
    rows: RefCell<VecDeque<Result<sql::Rows, sql::Error>>>,
    counts: RefCell<VecDeque<Result<Vec<u64>, sql::Error>>>,
    calls: RefCell<Vec<Call>>,
    logs: RefCell<Vec<(Level, String)>>,
}

impl FakeSql {
    fn with_rows(columns: &[&str], rows: Value, truncated: bool) -> Self {
        let host = Self::default();
        host.rows.borrow_mut().push_back(Ok(sql::Rows {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows_json: rows.to_string(),
            truncated,
        }));
        host
    }

    fn with_counts(counts: &[u64]) -> Self {
        let host = Self::default();
        host.counts.borrow_mut().push_back(Ok(counts.to_vec()));
        host
    }

    fn failing(error: sql::Error) -> Self {
        let host = Self::default();
        host.rows.borrow_mut().push_back(Err(error.clone()));
        host.counts.borrow_mut().push_back(Err(error));
        host
    }
}

impl SqlHost for FakeSql {
    fn query(
        &self,
        connection: &str,
        statement: &sql::Statement,
        max_rows: u32,
    ) -> Result<sql::Rows, sql::Error> {
        self.calls.borrow_mut().push(Call::Query {
            connection: connection.to_owned(),
            statement: statement.clone(),
            max_rows,
        });
        self.rows
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(sql::Error::Denied("nothing scripted".into())))
    }

    fn execute(
        &self,
        connection: &str,
        statements: &[sql::Statement],
    ) -> Result<Vec<u64>, sql::Error> {
        self.calls.borrow_mut().push(Call::Execute {
            connection: connection.to_owned(),
            statements: statements.to_vec(),
        });
        self.counts
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(sql::Error::Denied("nothing scripted".into())))
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
}

fn ctx() -> StepContext {
    step_context("01RUN", "orders", 1)
}

fn done(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Done(json) => serde_json::from_str(&json).unwrap(),
        Outcome::Waiting(waiting) => panic!("waiting: {waiting:?}"),
    }
}

fn params(statement: &sql::Statement) -> Vec<String> {
    statement
        .params
        .iter()
        .map(|value| format!("{value:?}"))
        .collect()
}

#[test]
fn a_query_returns_columns_rows_and_captures() {
    let host = FakeSql::with_rows(
        &["id", "name"],
        json!([{"id": 7, "name": "ada"}, {"id": 8, "name": "bob"}]),
        false,
    );
    let output = done(
        execute(
            &host,
            &ctx(),
            r#"{"connection": "orders", "query": "select id, name from t where status = $1",
                "params": ["open"], "max_rows": 100,
                "expect": {"row_count": 2, "first_row": {"name": "ada"}},
                "capture": {"first_id": "$.rows[0].id", "names": "$.rows[*].name", "n": "$.row_count"}}"#,
        )
        .unwrap(),
    );
    assert_eq!(
        output,
        json!({
            "columns": ["id", "name"],
            "rows": [{"id": 7, "name": "ada"}, {"id": 8, "name": "bob"}],
            "row_count": 2,
            "truncated": false,
            "captures": {"first_id": 7, "names": ["ada", "bob"], "n": 2}
        })
    );
    let calls = host.calls.borrow();
    let Call::Query {
        connection,
        statement,
        max_rows,
    } = &calls[0]
    else {
        panic!("{calls:?}");
    };
    assert_eq!(connection, "orders");
    assert_eq!(statement.sql, "select id, name from t where status = $1");
    assert_eq!(params(statement), ["Value::Text(\"open\")"]);
    assert_eq!(*max_rows, 100);
    assert_eq!(
        host.logs.borrow().as_slice(),
        [(Level::Info, "query on orders: 2 rows".to_owned())]
    );
}

#[test]
fn a_truncated_query_says_so() {
    let host = FakeSql::with_rows(&["n"], json!([{"n": 1}]), true);
    let output = done(
        execute(
            &host,
            &ctx(),
            r#"{"connection": "c", "query": "select n from t", "max_rows": 1}"#,
        )
        .unwrap(),
    );
    assert_eq!(output["truncated"], true);
    assert_eq!(output["row_count"], 1);
    assert_eq!(host.logs.borrow()[0].0, Level::Warn);
}

#[test]
fn an_execute_returns_the_affected_count() {
    let host = FakeSql::with_counts(&[3]);
    let output = done(
        execute(
            &host,
            &ctx(),
            r#"{"connection": "orders", "execute": "update t set n = ? where id = ?",
                "params": [{"type": "integer", "value": "5"}, 9], "expect": {"row_count": 3},
                "capture": {"changed": "$.rows_affected"}}"#,
        )
        .unwrap(),
    );
    assert_eq!(
        output,
        json!({"rows_affected": 3, "captures": {"changed": 3}})
    );
    let calls = host.calls.borrow();
    let Call::Execute { statements, .. } = &calls[0] else {
        panic!("{calls:?}");
    };
    assert_eq!(statements.len(), 1);
    assert_eq!(
        params(&statements[0]),
        ["Value::Integer(5)", "Value::Integer(9)"]
    );
}

#[test]
fn statements_run_in_one_call_and_return_every_count() {
    let host = FakeSql::with_counts(&[1, 0, 4]);
    let output = done(
        execute(
            &host,
            &ctx(),
            r#"{"connection": "orders", "statements": [
                    {"sql": "insert into t (name) values ($1)", "params": ["ada"]},
                    "delete from t where false",
                    "update t set seen = true"],
                "expect": {"row_count": 5, "non_empty": true}}"#,
        )
        .unwrap(),
    );
    assert_eq!(output, json!({"rows_affected": [1, 0, 4], "captures": {}}));
    let calls = host.calls.borrow();
    assert_eq!(calls.len(), 1);
    let Call::Execute {
        connection,
        statements,
    } = &calls[0]
    else {
        panic!("{calls:?}");
    };
    assert_eq!(connection, "orders");
    let texts: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(
        texts,
        [
            "insert into t (name) values ($1)",
            "delete from t where false",
            "update t set seen = true"
        ]
    );
}

#[test]
fn failed_expectations_are_permanent_list_every_one_and_carry_the_output() {
    let host = FakeSql::with_rows(&["name"], json!([{"name": "bob"}, {"name": "eve"}]), false);
    let err = execute(
        &host,
        &ctx(),
        r#"{"connection": "c", "query": "select name from t",
            "expect": {"row_count": 1, "first_row": {"name": "ada"}}, "capture": {"x": "$.rows[0].name"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "expected 1 row, got 2; first_row.name: expected \"ada\", got \"bob\""
    );
    assert!(!err.transient);
    let output: Value = serde_json::from_str(&err.output.unwrap()).unwrap();
    assert_eq!(output["row_count"], 2);
    assert_eq!(output["captures"], json!({}));

    let host = FakeSql::with_counts(&[0]);
    let err = execute(
        &host,
        &ctx(),
        r#"{"connection": "c", "execute": "delete from t where id = 1", "expect": {"non_empty": true}}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "expected at least one affected row, got none");
    assert_eq!(
        serde_json::from_str::<Value>(&err.output.unwrap()).unwrap(),
        json!({"rows_affected": 0, "captures": {}})
    );
}

#[test]
fn captures_that_find_nothing_fail_with_the_output() {
    let host = FakeSql::with_rows(&["id"], json!([]), false);
    let err = execute(
        &host,
        &ctx(),
        r#"{"connection": "c", "query": "select id from t", "capture": {"id": "$.rows[0].id"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "capture `id`: $.rows[0].id matched nothing");
    assert!(!err.transient);
    assert!(err.output.is_some());
}

#[test]
fn host_errors_map_to_transient_or_permanent() {
    let cases = [
        (
            sql::Error::Connect("connection refused".into()),
            "cannot connect to `orders`: connection refused",
            true,
        ),
        (
            sql::Error::Timeout("no answer within 30s".into()),
            "timed out on `orders`: no answer within 30s",
            true,
        ),
        (
            sql::Error::Database("relation \"t\" does not exist".into()),
            "database error: relation \"t\" does not exist",
            false,
        ),
        (
            sql::Error::UnknownConnection(String::new()),
            "unknown connection `orders` (define it in the daemon config or in the runbook's [connections.orders])",
            false,
        ),
        (
            sql::Error::Denied("statement not in the approved plan".into()),
            "denied: statement not in the approved plan",
            false,
        ),
    ];
    for (error, message, transient) in cases {
        for config in [
            r#"{"connection": "orders", "query": "select * from t"}"#,
            r#"{"connection": "orders", "execute": "delete from t"}"#,
            r#"{"connection": "orders", "statements": ["delete from t"]}"#,
        ] {
            let host = FakeSql::failing(error.clone());
            let err = execute(&host, &ctx(), config).unwrap_err();
            assert_eq!(err.message, message, "{config}");
            assert_eq!(err.transient, transient, "{message}");
            assert_eq!(err.output, None);
        }
    }
}

#[test]
fn rows_that_are_not_a_json_array_are_an_error() {
    let host = FakeSql::default();
    host.rows.borrow_mut().push_back(Ok(sql::Rows {
        columns: vec![],
        rows_json: "{}".into(),
        truncated: false,
    }));
    let err = execute(&host, &ctx(), r#"{"connection": "c", "query": "select 1"}"#).unwrap_err();
    assert_eq!(
        err.message,
        "the host returned rows that are not a JSON array"
    );
}

#[test]
fn a_bad_rendered_config_fails_before_any_call() {
    let host = FakeSql::default();
    let err = execute(
        &host,
        &ctx(),
        r#"{"connection": "c", "query": "select $1", "params": [{"type": "integer", "value": "abc"}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.message, "params[0].value: \"abc\" is not an integer");
    assert!(!err.transient);
    assert!(host.calls.borrow().is_empty());
}

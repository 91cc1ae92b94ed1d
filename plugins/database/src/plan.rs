//! What an approver sees before a database step runs: the connection, each statement with
//! its parameter values inline, and one `sql` effect with the exact texts and whether they
//! write (the daemon's `approvals.database_writes` policy decides from that flag).

use runbook_plugin_sdk::runbook::plugin::types::{Effect, SqlSpec, StepPlan};

use crate::config::{Action, Prepared, Statement};

/// The plan of a prepared step. Deterministic: the same config gives the same plan, so that
/// an approval stays valid.
pub fn plan(prepared: &Prepared) -> StepPlan {
    let statements = prepared.action.statements();
    let shown: Vec<String> = statements.iter().map(|s| describe(s)).collect();
    let place = match &prepared.action {
        Action::Statements(_) => format!("on {}, in one transaction", prepared.connection),
        Action::Query { .. } | Action::Execute(_) => format!("on {}", prepared.connection),
    };
    StepPlan {
        summary: format!("{place}: {}", shown.join("; ")),
        effects: vec![Effect::Sql(SqlSpec {
            connection: prepared.connection.clone(),
            statements: statements.iter().map(|s| s.sql.clone()).collect(),
            writes: prepared.action.writes(),
        })],
    }
}

/// `insert into t (name) values ($1) with $1 = 'ada'`.
fn describe(statement: &Statement) -> String {
    let sql = one_line(&statement.sql);
    if statement.params.is_empty() {
        return sql;
    }
    let sigil = if uses_dollar_placeholders(&statement.sql) {
        '$'
    } else {
        '?'
    };
    let values: Vec<String> = statement
        .params
        .iter()
        .enumerate()
        .map(|(index, value)| format!("{sigil}{} = {value}", index + 1))
        .collect();
    format!("{sql} with {}", values.join(", "))
}

/// The SQL on one line, when that cannot change how it reads: with a `--` or `#` comment
/// the line breaks end the comment, so the text stays as it is.
fn one_line(sql: &str) -> String {
    let sql = sql.trim();
    if !sql.contains('\n') || sql.contains("--") || sql.contains('#') {
        return sql.to_owned();
    }
    let mut line = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut pending_space = false;
    for c in sql.chars() {
        if !quoted && c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space {
            line.push(' ');
            pending_space = false;
        }
        if c == '\'' {
            quoted = !quoted;
        }
        line.push(c);
    }
    line
}

/// PostgreSQL numbers its placeholders `$1`; MySQL and SQLite use `?`.
fn uses_dollar_placeholders(sql: &str) -> bool {
    sql.as_bytes()
        .windows(2)
        .any(|pair| pair[0] == b'$' && pair[1].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use runbook_plugin_sdk::web::check::StepConfig;
    use runbook_plugin_sdk::web::testing::step_context;

    use super::*;
    use crate::config::DatabaseConfig;

    fn plan_of(json: &str) -> StepPlan {
        let config = DatabaseConfig::parse(json).unwrap();
        plan(&config.prepare(&step_context("R", "s", 1)).unwrap())
    }

    fn sql_spec(plan: &StepPlan) -> &SqlSpec {
        match plan.effects.as_slice() {
            [Effect::Sql(spec)] => spec,
            other => panic!("one sql effect expected: {other:?}"),
        }
    }

    #[test]
    fn an_insert_shows_its_values_and_writes() {
        let plan = plan_of(
            r#"{"connection": "orders", "execute": "insert into t (name, n, meta) values ($1, $2, $3)",
                "params": ["ada", {"type": "integer", "value": "2"}, {"k": "o'k"}]}"#,
        );
        assert_eq!(
            plan.summary,
            r#"on orders: insert into t (name, n, meta) values ($1, $2, $3) with $1 = 'ada', $2 = 2, $3 = json '{"k":"o''k"}'"#
        );
        let spec = sql_spec(&plan);
        assert_eq!(spec.connection, "orders");
        assert_eq!(
            spec.statements,
            ["insert into t (name, n, meta) values ($1, $2, $3)"]
        );
        assert!(spec.writes);
    }

    #[test]
    fn a_query_reads_and_question_marks_are_numbered() {
        let plan = plan_of(
            r#"{"connection": "shop", "query": "select *\n  from t\n  where a = ? and b = 'x  y'", "params": [true, null]}"#,
        );
        assert_eq!(
            plan.summary,
            "on shop: select * from t where a = ? and b = 'x  y' with ?1 = true, ?2 = NULL"
        );
        let spec = sql_spec(&plan);
        // The effect carries the text exactly as it will be sent.
        assert_eq!(
            spec.statements,
            ["select *\n  from t\n  where a = ? and b = 'x  y'"]
        );
        assert!(!spec.writes);
    }

    #[test]
    fn statements_are_one_transaction_in_order() {
        let plan = plan_of(
            r#"{"connection": "orders", "statements": ["select 1",
                {"sql": "update t set n = $1 where id = $2", "params": [1.5, 7]},
                "-- tidy up\ndelete from t where n > 10"]}"#,
        );
        assert_eq!(
            plan.summary,
            "on orders, in one transaction: select 1; update t set n = $1 where id = $2 with $1 = 1.5, $2 = 7; -- tidy up\ndelete from t where n > 10"
        );
        let spec = sql_spec(&plan);
        assert_eq!(spec.statements.len(), 3);
        assert!(spec.writes);
    }

    #[test]
    fn reads_only_do_not_write() {
        let plan =
            plan_of(r#"{"connection": "orders", "statements": ["select 1", "show tables"]}"#);
        assert!(!sql_spec(&plan).writes);
    }
}

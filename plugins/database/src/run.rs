//! `execute` of a database step against any [`SqlHost`]: run the statement(s), build the
//! output, judge it with `expect` and fill `captures`.

use runbook_plugin_sdk::runbook::plugin::events::{self, Level};
use runbook_plugin_sdk::runbook::plugin::sql;
use runbook_plugin_sdk::runbook::plugin::types::{Outcome, StepContext, StepError};
use runbook_plugin_sdk::web::check::StepConfig;
use runbook_plugin_sdk::web::response::Subject;
use runbook_plugin_sdk::{step_error, transient_error};
use serde_json::{Map, Value, json};

use crate::config::{Action, DatabaseConfig, Prepared, Statement};
use crate::expect::Observed;

/// What a database step needs from the daemon: the `sql` and `events` imports.
pub trait SqlHost {
    /// Runs one statement and returns its rows, at most `max_rows` (`sql.query`).
    fn query(
        &self,
        connection: &str,
        statement: &sql::Statement,
        max_rows: u32,
    ) -> Result<sql::Rows, sql::Error>;
    /// Runs statements in one transaction; each one's affected row count (`sql.execute`).
    fn execute(
        &self,
        connection: &str,
        statements: &[sql::Statement],
    ) -> Result<Vec<u64>, sql::Error>;
    /// A message for whoever watches the run (`events.log`).
    fn log(&self, level: Level, message: &str);
}

/// The real host: the component's imports. Only usable inside the daemon (on the host target
/// the imports exist but cannot be called).
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmSql;

impl SqlHost for WasmSql {
    fn query(
        &self,
        connection: &str,
        statement: &sql::Statement,
        max_rows: u32,
    ) -> Result<sql::Rows, sql::Error> {
        sql::query(connection, statement, max_rows)
    }

    fn execute(
        &self,
        connection: &str,
        statements: &[sql::Statement],
    ) -> Result<Vec<u64>, sql::Error> {
        sql::execute(connection, statements)
    }

    fn log(&self, level: Level, message: &str) {
        events::log(level, message);
    }
}

/// Runs the step: the statement(s), then expectations and captures over the output.
pub fn execute(host: &impl SqlHost, ctx: &StepContext, config: &str) -> Result<Outcome, StepError> {
    let prepared = DatabaseConfig::parse(config)?.prepare(ctx)?;
    let connection = prepared.connection.as_str();
    let (output, affected) = match &prepared.action {
        Action::Query {
            statement,
            max_rows,
        } => {
            let rows = host
                .query(connection, &statement.to_wit(), *max_rows)
                .map_err(|err| host_error(connection, err))?;
            let output = query_output(rows)?;
            let count = output["row_count"].as_u64().unwrap_or(0);
            if output["truncated"] == Value::Bool(true) {
                host.log(
                    Level::Warn,
                    &format!(
                        "query on {connection}: more than {max_rows} rows; the rest were dropped (raise `max_rows` to keep them)"
                    ),
                );
            } else {
                host.log(
                    Level::Info,
                    &format!("query on {connection}: {}", plural(count, "row")),
                );
            }
            (output, None)
        }
        Action::Execute(statement) => {
            let counts = run_statements(host, connection, std::slice::from_ref(statement))?;
            let count = counts.first().copied().unwrap_or(0);
            host.log(
                Level::Info,
                &format!("execute on {connection}: {} affected", plural(count, "row")),
            );
            (json!({ "rows_affected": count }), Some(count))
        }
        Action::Statements(statements) => {
            let counts = run_statements(host, connection, statements)?;
            host.log(
                Level::Info,
                &format!(
                    "{} on {connection} in one transaction; rows affected: {}",
                    plural(statements.len() as u64, "statement"),
                    counts
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            let total = counts.iter().sum();
            (json!({ "rows_affected": counts }), Some(total))
        }
    };
    finish(&prepared, output, affected)
}

fn run_statements(
    host: &impl SqlHost,
    connection: &str,
    statements: &[Statement],
) -> Result<Vec<u64>, StepError> {
    let statements: Vec<sql::Statement> = statements.iter().map(Statement::to_wit).collect();
    host.execute(connection, &statements)
        .map_err(|err| host_error(connection, err))
}

/// `{ columns, rows, row_count, truncated }` from the host's rows.
fn query_output(rows: sql::Rows) -> Result<Value, StepError> {
    let list = match serde_json::from_str::<Value>(&rows.rows_json) {
        Ok(Value::Array(list)) => list,
        Ok(_) => {
            return Err(step_error(
                "the host returned rows that are not a JSON array",
            ));
        }
        Err(err) => {
            return Err(step_error(format!(
                "the host returned rows that are not JSON: {err}"
            )));
        }
    };
    Ok(json!({
        "columns": rows.columns,
        "row_count": list.len(),
        "rows": list,
        "truncated": rows.truncated,
    }))
}

/// Judges the output, then captures from it; both failures are permanent and carry it.
fn finish(
    prepared: &Prepared,
    mut output: Value,
    affected: Option<u64>,
) -> Result<Outcome, StepError> {
    let observed = match affected {
        Some(count) => Observed::Affected(count),
        None => Observed::Rows {
            rows: output["rows"].as_array().map_or(&[], Vec::as_slice),
            truncated: output["truncated"] == Value::Bool(true),
        },
    };
    let failures = prepared.expectations.evaluate(observed);
    if !failures.is_empty() {
        return Err(failed(failures.join("; "), output));
    }
    let subject = Subject {
        status: 0,
        headers: &[],
        text: None,
        json: Some(&output),
        duration_ms: 0,
    };
    match prepared.captures.evaluate(&subject) {
        Ok(captures) => {
            set_captures(&mut output, captures);
            Ok(Outcome::Done(output.to_string()))
        }
        Err(errors) => Err(failed(errors.join("; "), output)),
    }
}

fn set_captures(output: &mut Value, captures: Map<String, Value>) {
    if let Value::Object(fields) = output {
        fields.insert("captures".into(), Value::Object(captures));
    }
}

/// A permanent failure with the output (and empty captures) for the operator.
fn failed(message: String, mut output: Value) -> StepError {
    set_captures(&mut output, Map::new());
    StepError {
        message,
        output: Some(output.to_string()),
        transient: false,
        retry_after_ms: None,
    }
}

/// A host error as a step error: an unreachable database and a timeout may pass on another
/// attempt (the step's retry policy decides); the rest fail the same way every time.
pub fn host_error(connection: &str, error: sql::Error) -> StepError {
    let detail = |prefix: String, message: String| {
        if message.trim().is_empty() {
            prefix
        } else {
            format!("{prefix}: {message}")
        }
    };
    match error {
        sql::Error::UnknownConnection(message) => step_error(detail(
            format!(
                "unknown connection `{connection}` (define it in the daemon config or in the runbook's [connections.{connection}])"
            ),
            message,
        )),
        sql::Error::Connect(message) => transient_error(
            detail(format!("cannot connect to `{connection}`"), message),
            None,
        ),
        sql::Error::Timeout(message) => transient_error(
            detail(format!("timed out on `{connection}`"), message),
            None,
        ),
        sql::Error::Database(message) => step_error(detail("database error".into(), message)),
        sql::Error::Denied(message) => step_error(detail("denied".into(), message)),
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests;

//! The `sql` capability: statements run for plugins on daemon-owned sqlx pools (PostgreSQL,
//! MySQL/MariaDB, SQLite), found by connection name. Pools are created on first use and
//! shared by every step of every run; each call is bounded by the step's deadline; results
//! are capped. A plugin names a connection and statements, never a URL or a password, and
//! only statements its approved plan named run. Statements the daemon judged read-only (and so
//! ran without an approval) run where the database itself refuses writes: in a read-only
//! transaction (PostgreSQL, MySQL) or on a connection set to `query_only` (SQLite).

pub mod convert;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::TryStreamExt as _;
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::time::Instant;

use super::bindings::sql::{Error as SqlError, Rows, Statement, Value};
use super::secrets::{Encoding, SecretScope};
use convert::Param;

/// Connections one pool keeps open at most.
const POOL_SIZE: u32 = 8;
/// How long getting a connection may take. sqlx retries a refused connection until then,
/// which rides out a database restart; a server that stays down is a connect error after it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a step may run on one connection: the URL to reach it (secret placeholders in it are
/// put in by the host) and the statements of its approved plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlGrant {
    pub connection: String,
    pub url: ConnectionUrl,
    pub statements: Vec<String>,
    /// The daemon judged every statement read-only and no human approved them: the database
    /// must refuse any write, so that a statement the classifier misjudged (a function with
    /// side effects) cannot write without the approval a write needs.
    pub read_only: bool,
}

/// How PostgreSQL and MySQL start a transaction in which the server refuses writes.
const PG_READ_ONLY: &str = "BEGIN READ ONLY";
const MYSQL_READ_ONLY: &str = "START TRANSACTION READ ONLY";

/// Where a connection's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionUrl {
    /// Written out (possibly with secret placeholders from a runbook's templates).
    Text(String),
    /// The value of a secret in the vault (`url_secret` in the daemon config).
    Secret(String),
}

/// A pool of one of the supported databases.
#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// The daemon's pools, keyed by connection name, a hash of the URL they were made for (so
/// that a changed URL gets a new pool and the URL itself is never kept as a key) and whether
/// they serve read-only grants.
#[derive(Default)]
pub struct SqlPools {
    pools: Mutex<HashMap<(String, String, bool), Pool>>,
}

/// One call's view of the pools.
pub struct SqlCall<'a> {
    pub grants: &'a [SqlGrant],
    pub secrets: &'a SecretScope,
    pub deadline: Option<Instant>,
}

impl SqlPools {
    /// Runs one statement that returns rows, keeping at most `max_rows`.
    pub async fn query(
        &self,
        call: &SqlCall<'_>,
        connection: &str,
        statement: Statement,
        max_rows: u32,
    ) -> Result<Rows, SqlError> {
        // Only statements of the approved plan get this far, so the text `convert` hands to
        // sqlx as audited is the runbook author's; every value is bound, never spliced in.
        let grant = granted(call, connection, std::slice::from_ref(&statement))?;
        let pool = self.pool(call, grant).await?;
        let params = params(&statement.params)?;
        let limit = usize::try_from(max_rows).unwrap_or(usize::MAX);
        let work = async {
            match &pool {
                Pool::Postgres(pool) if grant.read_only => {
                    let mut tx = pool.begin_with(PG_READ_ONLY).await.map_err(sql_error)?;
                    let stream = convert::pg_query(&statement.sql, &params).fetch(&mut *tx);
                    collect(stream, limit, convert::pg_row).await
                }
                Pool::Postgres(pool) => {
                    collect(
                        convert::pg_query(&statement.sql, &params).fetch(pool),
                        limit,
                        convert::pg_row,
                    )
                    .await
                }
                Pool::MySql(pool) if grant.read_only => {
                    let mut tx = pool.begin_with(MYSQL_READ_ONLY).await.map_err(sql_error)?;
                    let stream = convert::mysql_query(&statement.sql, &params).fetch(&mut *tx);
                    collect(stream, limit, convert::mysql_row).await
                }
                Pool::MySql(pool) => {
                    collect(
                        convert::mysql_query(&statement.sql, &params).fetch(pool),
                        limit,
                        convert::mysql_row,
                    )
                    .await
                }
                // A read-only grant's SQLite pool sets `query_only` on its connections.
                Pool::Sqlite(pool) => {
                    collect(
                        convert::sqlite_query(&statement.sql, &params).fetch(pool),
                        limit,
                        convert::sqlite_row,
                    )
                    .await
                }
            }
        };
        let rows = bounded(call.deadline, work).await?;
        Ok(rows)
    }

    /// Runs statements in one transaction, all or nothing.
    pub async fn execute(
        &self,
        call: &SqlCall<'_>,
        connection: &str,
        statements: Vec<Statement>,
    ) -> Result<Vec<u64>, SqlError> {
        let grant = granted(call, connection, &statements)?;
        let pool = self.pool(call, grant).await?;
        let bound: Vec<(String, Vec<Param>)> = statements
            .iter()
            .map(|statement| Ok((statement.sql.clone(), params(&statement.params)?)))
            .collect::<Result<_, SqlError>>()?;
        let work = async {
            macro_rules! in_transaction {
                ($pool:expr, $query:path, $read_only:expr) => {{
                    let mut tx = match $read_only {
                        Some(begin) if grant.read_only => $pool.begin_with(begin).await,
                        _ => $pool.begin().await,
                    }
                    .map_err(sql_error)?;
                    let mut affected = Vec::with_capacity(bound.len());
                    for (sql, params) in &bound {
                        let done = $query(sql, params)
                            .execute(&mut *tx)
                            .await
                            .map_err(sql_error)?;
                        affected.push(done.rows_affected());
                    }
                    // Dropping `tx` on an error above rolls everything back.
                    tx.commit().await.map_err(sql_error)?;
                    Ok(affected)
                }};
            }
            match &pool {
                Pool::Postgres(pool) => {
                    in_transaction!(pool, convert::pg_query, Some(PG_READ_ONLY))
                }
                Pool::MySql(pool) => {
                    in_transaction!(pool, convert::mysql_query, Some(MYSQL_READ_ONLY))
                }
                // A read-only grant's SQLite pool sets `query_only` on its connections.
                Pool::Sqlite(pool) => in_transaction!(pool, convert::sqlite_query, None::<&str>),
            }
        };
        bounded(call.deadline, work).await
    }

    /// Whether a connection can be reached now (for `runbook connections`).
    pub async fn probe(&self, call: &SqlCall<'_>, grant: &SqlGrant) -> Result<(), String> {
        let pool = self
            .pool(call, grant)
            .await
            .map_err(|err| error_text(&err))?;
        let work = async {
            match &pool {
                Pool::Postgres(pool) => pool.acquire().await.map(drop),
                Pool::MySql(pool) => pool.acquire().await.map(drop),
                Pool::Sqlite(pool) => pool.acquire().await.map(drop),
            }
            .map_err(sql_error)
        };
        bounded(call.deadline, work)
            .await
            .map_err(|err| error_text(&err))
    }

    /// The URL a grant reaches, with its secrets put in.
    pub fn resolve_url(call: &SqlCall<'_>, grant: &SqlGrant) -> Result<String, SqlError> {
        match &grant.url {
            ConnectionUrl::Text(text) => call
                .secrets
                .substitute(text, Encoding::Url)
                .map_err(SqlError::Connect),
            ConnectionUrl::Secret(name) => call
                .secrets
                .reveal(name)
                .map_err(SqlError::Connect)?
                .ok_or_else(|| {
                    SqlError::Connect(format!(
                        "connection `{}` reads its URL from secret `{name}`, which is not in the vault",
                        grant.connection
                    ))
                }),
        }
    }

    /// The pool of a granted connection, created on first use. Read-only grants get pools of
    /// their own, so that nothing a read-only session does is ever seen by a writing one.
    async fn pool(&self, call: &SqlCall<'_>, grant: &SqlGrant) -> Result<Pool, SqlError> {
        let url = Self::resolve_url(call, grant)?;
        let key = (
            grant.connection.clone(),
            hex::encode(Sha256::digest(url.as_bytes())),
            grant.read_only,
        );
        if let Some(pool) = lock(&self.pools).get(&key) {
            return Ok(pool.clone());
        }
        let pool = connect_lazy(&grant.connection, &url, grant.read_only)?;
        Ok(lock(&self.pools).entry(key).or_insert(pool).clone())
    }
}

/// What a connection URL says, without its credentials: the database kind and where it is.
pub fn describe_url(url: &str) -> (String, String) {
    let Ok(parsed) = url::Url::parse(url) else {
        return (String::new(), String::new());
    };
    let database = match parsed.scheme() {
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        "sqlite" => "sqlite",
        other => other,
    }
    .to_owned();
    let location = if database == "sqlite" {
        url.trim_start_matches("sqlite:")
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        format!(
            "{}{}{}",
            parsed.host_str().unwrap_or_default(),
            parsed
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default(),
            parsed.path()
        )
    };
    (database, location)
}

/// A pool that connects when first used, so that creating one never blocks.
fn connect_lazy(name: &str, url: &str, read_only: bool) -> Result<Pool, SqlError> {
    let scheme = url.split(':').next().unwrap_or_default();
    let invalid = |err: sqlx::Error| {
        SqlError::Connect(format!(
            "connection `{name}` has an invalid URL: {}",
            redact_url(&err.to_string(), url)
        ))
    };
    Ok(match scheme {
        "postgres" | "postgresql" => Pool::Postgres(
            PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy(url)
                .map_err(invalid)?,
        ),
        "mysql" | "mariadb" => Pool::MySql(
            MySqlPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy(&url.replacen("mariadb:", "mysql:", 1))
                .map_err(invalid)?,
        ),
        "sqlite" => {
            let options: SqliteConnectOptions = url.parse().map_err(invalid)?;
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(if read_only {
                        // Not `read_only(true)`: that cannot open a file that does not exist
                        // yet, where `select 1` should still answer.
                        options.create_if_missing(true).pragma("query_only", "ON")
                    } else {
                        options.create_if_missing(true)
                    }),
            )
        }
        other => {
            return Err(SqlError::Connect(format!(
                "connection `{name}`: unsupported database `{other}`; use postgres://, mysql://, mariadb:// or sqlite:"
            )));
        }
    })
}

/// The grant of `connection`, if every statement is one its plan named.
fn granted<'a>(
    call: &'a SqlCall<'_>,
    connection: &str,
    statements: &[Statement],
) -> Result<&'a SqlGrant, SqlError> {
    let grant = call
        .grants
        .iter()
        .find(|grant| grant.connection == connection)
        .ok_or_else(|| {
            SqlError::Denied(format!(
                "connection `{connection}` is not named in the step's approved plan"
            ))
        })?;
    if let Some(statement) = statements
        .iter()
        .find(|statement| !grant.statements.contains(&statement.sql))
    {
        return Err(SqlError::Denied(format!(
            "refused to run `{}`: it is not a statement named in the step's approved plan",
            call.secrets.mask(&statement.sql)
        )));
    }
    Ok(grant)
}

fn params(values: &[Value]) -> Result<Vec<Param>, SqlError> {
    values
        .iter()
        .map(|value| {
            Ok(match value {
                Value::Null => Param::Null,
                Value::Boolean(value) => Param::Bool(*value),
                Value::Integer(value) => Param::Int(*value),
                Value::Float(value) => Param::Float(*value),
                Value::Text(value) => Param::Text(value.clone()),
                Value::Json(text) => Param::Json(serde_json::from_str(text).map_err(|err| {
                    SqlError::Denied(format!("a json parameter is not JSON: {err}"))
                })?),
            })
        })
        .collect()
}

/// Bytes of JSON one query's rows may take, whatever its row limit: a few wide rows can be
/// as large as many narrow ones, and the result goes into the plugin's memory and the store.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// Reads rows until `limit` rows or [`MAX_RESULT_BYTES`]; one more row tells that the
/// result was cut.
async fn collect<R>(
    mut rows: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    limit: usize,
    to_json: fn(&R) -> Result<serde_json::Map<String, serde_json::Value>, String>,
) -> Result<Rows, SqlError>
where
    R: sqlx::Row,
{
    let mut columns = Vec::new();
    let mut rows_json = String::from("[");
    let mut count = 0;
    let mut truncated = false;
    while let Some(row) = rows.try_next().await.map_err(sql_error)? {
        if columns.is_empty() {
            columns = convert::column_names(&row);
        }
        if count == limit {
            truncated = true;
            break;
        }
        let text =
            serde_json::Value::Object(to_json(&row).map_err(SqlError::Database)?).to_string();
        if rows_json.len() + text.len() + 2 > MAX_RESULT_BYTES {
            truncated = true;
            break;
        }
        if count > 0 {
            rows_json.push(',');
        }
        rows_json.push_str(&text);
        count += 1;
    }
    rows_json.push(']');
    Ok(Rows {
        columns,
        rows_json,
        truncated,
    })
}

/// Runs `work` within the step's deadline.
async fn bounded<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    let Some(deadline) = deadline else {
        return work.await;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, work).await {
        Ok(result) => result,
        Err(_) => Err(SqlError::Timeout(format!(
            "no answer within the step's remaining {}",
            humantime::format_duration(Duration::from_millis(
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            ))
        ))),
    }
}

/// sqlx's error as the plugin sees it: the database's own message for a refused statement,
/// a connect error for anything on the way there.
fn sql_error(err: sqlx::Error) -> SqlError {
    match err {
        sqlx::Error::Database(db) => SqlError::Database(db.message().to_owned()),
        sqlx::Error::PoolTimedOut => SqlError::Connect(format!(
            "cannot get a connection within {}: the server refused or did not answer, or every \
             connection of the pool stayed busy",
            humantime::format_duration(ACQUIRE_TIMEOUT)
        )),
        sqlx::Error::RowNotFound => SqlError::Database("no row returned".to_owned()),
        sqlx::Error::ColumnDecode { index, source } => {
            SqlError::Database(format!("column {index}: {source}"))
        }
        other => SqlError::Connect(other.to_string()),
    }
}

fn error_text(err: &SqlError) -> String {
    match err {
        SqlError::UnknownConnection(text)
        | SqlError::Connect(text)
        | SqlError::Timeout(text)
        | SqlError::Database(text)
        | SqlError::Denied(text) => text.clone(),
    }
}

/// `text` without the password of `url`, should an error quote it.
fn redact_url(text: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) if !password.is_empty() => text.replace(password, super::MASK),
            _ => text.to_owned(),
        },
        Err(_) => text.to_owned(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Conversion between plugin values and SQL: binding [`Param`]s to sqlx queries and turning
//! result rows into JSON objects, for PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! The mapping is documented for users in `docs/database-steps.md` ("Type mapping"); keep the
//! two in step.

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::mysql::{MySql, MySqlArguments, MySqlRow};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgRow, PgTypeInfo, PgTypeKind, PgValueFormat, Postgres,
};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteRow};
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Json, Uuid};
use sqlx::{AssertSqlSafe, Column as _, Decode, Encode, Row, Type, TypeInfo as _, ValueRef as _};

/// A parameter to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL `NULL`, accepted wherever the statement puts it.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer (`BIGINT`).
    Int(i64),
    /// A 64-bit float (`DOUBLE PRECISION`).
    Float(f64),
    /// Text.
    Text(String),
    /// A JSON document (`jsonb` on PostgreSQL, JSON text elsewhere).
    Json(Value),
}

/// Builds a PostgreSQL query for `sql` with `params` bound. Prefer it to [`bind_pg`]: it keeps
/// differently typed calls of the same SQL apart.
///
/// sqlx caches a connection's prepared statements by SQL text alone and sends later calls'
/// values in binary against the parameter types of the first call, so an `int8` bound where
/// the statement was prepared for `float8` (or for an untyped `NULL` the server typed) is
/// misread, sometimes silently. A trailing comment naming the parameter types makes each type
/// combination its own statement. (`persistent(false)` would bypass the cache but fails the
/// first use of a custom type such as an enum on each connection: sqlx 0.9 issue #4305.)
pub fn pg_query<'q>(sql: &str, params: &[Param]) -> Query<'q, Postgres, PgArguments> {
    bind_pg(sqlx::query(AssertSqlSafe(pg_sql(sql, params))), params)
}

/// `sql` plus, when there are parameters, a last-line comment with their PostgreSQL types.
fn pg_sql(sql: &str, params: &[Param]) -> String {
    if params.is_empty() {
        return sql.to_owned();
    }
    let types: Vec<&str> = params
        .iter()
        .map(|param| match param {
            Param::Null => "null",
            Param::Bool(_) => "bool",
            Param::Int(_) => "int8",
            Param::Float(_) => "float8",
            Param::Text(_) => "text",
            Param::Json(_) => "jsonb",
        })
        .collect();
    // The newline ends any `--` comment the statement finishes with.
    format!("{sql}\n/* runbook params: {} */", types.join(","))
}

/// Binds `params` in order to a PostgreSQL query: `bool`, `int8`, `float8`, `text`, `jsonb`,
/// and `NULL` with no type (OID 0), which the server types from where it is used.
///
/// See [`pg_query`] for why the query's SQL text should say the parameter types.
pub fn bind_pg<'q>(
    query: Query<'q, Postgres, PgArguments>,
    params: &[Param],
) -> Query<'q, Postgres, PgArguments> {
    params.iter().fold(query, |query, param| match param {
        Param::Null => query.bind(UntypedNull),
        Param::Bool(value) => query.bind(*value),
        Param::Int(value) => query.bind(*value),
        Param::Float(value) => query.bind(*value),
        Param::Text(value) => query.bind(value.as_str()),
        Param::Json(value) => query.bind(Json(value)),
    })
}

/// Builds a MySQL/MariaDB query for `sql` with `params` bound (MySQL sends parameter types
/// with every execution, so no statement-cache care is needed).
pub fn mysql_query<'q>(sql: &str, params: &[Param]) -> Query<'q, MySql, MySqlArguments> {
    bind_mysql(sqlx::query(AssertSqlSafe(sql.to_owned())), params)
}

/// Builds a SQLite query for `sql` with `params` bound (SQLite values carry their own types).
pub fn sqlite_query<'q>(sql: &str, params: &[Param]) -> Query<'q, Sqlite, SqliteArguments> {
    bind_sqlite(sqlx::query(AssertSqlSafe(sql.to_owned())), params)
}

/// Binds `params` in order to a MySQL/MariaDB query.
///
/// JSON goes as UTF-8 text: MySQL refuses to build a JSON value from the binary-charset string
/// sqlx's `Json` encoder sends, and MariaDB's JSON is text anyway.
pub fn bind_mysql<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    params: &[Param],
) -> Query<'q, MySql, MySqlArguments> {
    params.iter().fold(query, |query, param| match param {
        Param::Null => query.bind(None::<&str>),
        Param::Bool(value) => query.bind(*value),
        Param::Int(value) => query.bind(*value),
        Param::Float(value) => query.bind(*value),
        Param::Text(value) => query.bind(value.as_str()),
        Param::Json(value) => query.bind(value.to_string()),
    })
}

/// Binds `params` in order to a SQLite query (SQLite has no JSON type: JSON goes as text).
pub fn bind_sqlite<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    params: &[Param],
) -> Query<'q, Sqlite, SqliteArguments> {
    params.iter().fold(query, |query, param| match param {
        Param::Null => query.bind(None::<&str>),
        Param::Bool(value) => query.bind(*value),
        Param::Int(value) => query.bind(*value),
        Param::Float(value) => query.bind(*value),
        Param::Text(value) => query.bind(value.as_str()),
        Param::Json(value) => query.bind(value.to_string()),
    })
}

/// The column names of `row`, in select-list order (a JSON object may not keep that order).
pub fn column_names<R: Row>(row: &R) -> Vec<String> {
    row.columns()
        .iter()
        .map(|column| column.name().to_owned())
        .collect()
}

/// Converts one PostgreSQL row to a JSON object (column name -> value).
pub fn pg_row(row: &PgRow) -> Result<Map<String, Value>, String> {
    convert_row(row, pg_value)
}

/// Converts one MySQL/MariaDB row to a JSON object (column name -> value).
pub fn mysql_row(row: &MySqlRow) -> Result<Map<String, Value>, String> {
    convert_row(row, mysql_value)
}

/// Converts one SQLite row to a JSON object (column name -> value).
pub fn sqlite_row(row: &SqliteRow) -> Result<Map<String, Value>, String> {
    convert_row(row, sqlite_value)
}

/// Why a value could not be converted; the caller prefixes the column name.
enum Failure {
    Unsupported(String),
    Decode(String),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::Decode(error.to_string())
    }
}

fn convert_row<R: Row>(
    row: &R,
    value_of: fn(&R, usize) -> Result<Value, Failure>,
) -> Result<Map<String, Value>, String> {
    let mut object = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let value = value_of(row, index).map_err(|failure| match failure {
            Failure::Unsupported(type_name) => {
                format!("column {name}: unsupported type {type_name}")
            }
            Failure::Decode(error) => format!("column {name}: {error}"),
        })?;
        object.insert(name.to_owned(), value);
    }
    Ok(object)
}

/// Decodes column `index` as `T` after the type name already said it is a `T`.
///
/// Unchecked because sqlx's compatibility lists are narrower than the wire formats its decoders
/// read (enum labels, `YEAR` and `BIT` as unsigned, ...).
fn get<'r, R, T>(row: &'r R, index: usize) -> Result<T, Failure>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    T: Decode<'r, R::Database>,
{
    Ok(row.try_get_unchecked(index)?)
}

fn pg_value(row: &PgRow, index: usize) -> Result<Value, Failure> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_info: PgTypeInfo = raw.type_info().into_owned();
    pg_decode(row, index, &type_info)
}

fn pg_decode(row: &PgRow, index: usize, type_info: &PgTypeInfo) -> Result<Value, Failure> {
    Ok(match type_info.name() {
        "BOOL" => Value::Bool(get(row, index)?),
        "INT2" => get::<_, i16>(row, index)?.into(),
        "INT4" => get::<_, i32>(row, index)?.into(),
        "INT8" => get::<_, i64>(row, index)?.into(),
        "OID" => get::<_, Oid>(row, index)?.0.into(),
        "FLOAT4" => float(widen(get(row, index)?)),
        "FLOAT8" => float(get(row, index)?),
        "NUMERIC" => Value::String(pg_numeric(row, index)?),
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" => Value::String(get(row, index)?),
        "BYTEA" => bytes(&get::<_, Vec<u8>>(row, index)?),
        "UUID" => Value::String(get::<_, Uuid>(row, index)?.to_string()),
        "JSON" | "JSONB" => get::<_, Json<Value>>(row, index)?.0,
        "DATE" => date(get(row, index)?),
        "TIME" => Value::String(time(get(row, index)?)),
        "TIMESTAMP" => timestamp(get(row, index)?),
        "TIMESTAMPTZ" => timestamptz(get(row, index)?),
        name => match type_info.kind() {
            // A domain travels in its base type's format.
            PgTypeKind::Domain(base) => pg_decode(row, index, base)?,
            // Enum labels travel as text.
            PgTypeKind::Enum(_) => Value::String(get(row, index)?),
            // Checked, unlike above: decoding another type's binary form as UTF-8 would return
            // garbage. This admits the types sqlx reads as text, such as citext.
            _ => {
                let name = name.to_owned();
                let text = row
                    .try_get::<String, _>(index)
                    .map_err(|_| Failure::Unsupported(name))?;
                Value::String(text)
            }
        },
    })
}

/// The exact decimal text of a PostgreSQL `numeric`, with its display scale (`numeric(12,3)`
/// gives `1.500`, as psql shows it) and `NaN`/`Infinity`/`-Infinity` as those words.
fn pg_numeric(row: &PgRow, index: usize) -> Result<String, Failure> {
    let raw = row.try_get_raw(index)?;
    if raw.format() == PgValueFormat::Text {
        // The text format is already PostgreSQL's own rendering.
        return raw
            .as_str()
            .map(str::to_owned)
            .map_err(|error| Failure::Decode(error.to_string()));
    }
    // Binary header: ndigits i16, weight i16, sign u16, dscale u16, then base-10000 digits.
    let bytes = raw
        .as_bytes()
        .map_err(|error| Failure::Decode(error.to_string()))?;
    let [_, _, _, _, sign_hi, sign_lo, scale_hi, scale_lo, ..] = *bytes else {
        return Err(Failure::Decode("numeric value is truncated".to_owned()));
    };
    match u16::from_be_bytes([sign_hi, sign_lo]) {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let scale = u16::from_be_bytes([scale_hi, scale_lo]);
    // sqlx pads the fraction to whole base-10000 digits; the display scale trims only zeros.
    let decimal: BigDecimal = get(row, index)?;
    Ok(decimal.with_scale(i64::from(scale)).to_plain_string())
}

fn mysql_value(row: &MySqlRow, index: usize) -> Result<Value, Failure> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_info = raw.type_info().into_owned();
    Ok(match type_info.name() {
        // sqlx reports TINYINT(1), which is what BOOLEAN is in MySQL, as BOOLEAN.
        "BOOLEAN" => Value::Bool(get(row, index)?),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            get::<_, i64>(row, index)?.into()
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "YEAR" | "BIT" => get::<_, u64>(row, index)?.into(),
        "DECIMAL" => Value::String(get::<_, BigDecimal>(row, index)?.to_plain_string()),
        "FLOAT" => float(widen(get(row, index)?)),
        "DOUBLE" => float(get(row, index)?),
        "DATE" => date(get(row, index)?),
        "TIME" => Value::String(mysql_time(get(row, index)?)),
        "DATETIME" => timestamp(get(row, index)?),
        // sqlx sets the session time zone to UTC, so TIMESTAMP values arrive in UTC.
        "TIMESTAMP" => timestamptz(get(row, index)?),
        "JSON" => get::<_, Json<Value>>(row, index)?.0,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            // The binary collation, not the type name, tells bytes from text: a `*_bin` text
            // collation sets the same BINARY flag sqlx names types by.
            if <String as Type<MySql>>::compatible(&type_info) {
                Value::String(get(row, index)?)
            } else {
                bytes(&get::<_, Vec<u8>>(row, index)?)
            }
        }
        name => {
            let name = name.to_owned();
            let text = row
                .try_get::<String, _>(index)
                .map_err(|_| Failure::Unsupported(name))?;
            Value::String(text)
        }
    })
}

fn sqlite_value(row: &SqliteRow, index: usize) -> Result<Value, Failure> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // SQLite is dynamically typed: a non-null value's type info is its storage class, whatever
    // the column declares.
    let storage = raw.type_info().name().to_owned();
    Ok(match storage.as_str() {
        "INTEGER" => {
            let integer: i64 = get(row, index)?;
            let declared = row.column(index).type_info().name();
            // Only 0 and 1 become booleans, so no stored integer is ever lost.
            match (declared, integer) {
                ("BOOLEAN", 0 | 1) => Value::Bool(integer == 1),
                _ => integer.into(),
            }
        }
        "REAL" => float(get(row, index)?),
        "TEXT" => Value::String(get(row, index)?),
        "BLOB" => bytes(&get::<_, Vec<u8>>(row, index)?),
        _ => return Err(Failure::Unsupported(storage)),
    })
}

/// A JSON number, or `"NaN"`, `"Infinity"`, `"-Infinity"`, which JSON numbers cannot hold.
fn float(value: f64) -> Value {
    match Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None if value.is_nan() => Value::String("NaN".to_owned()),
        None if value > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// Widens through the shortest decimal form, so a stored `0.1` reads `0.1` and not
/// `0.10000000149011612` (which is what `f64::from` gives).
fn widen(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn bytes(value: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(value))
}

fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

/// `HH:MM:SS`, plus `.ffffff` (always six digits) when there is a fraction.
fn time(value: NaiveTime) -> String {
    let micros = value.format("%6f").to_string();
    if micros == "000000" {
        value.format("%H:%M:%S").to_string()
    } else {
        format!("{}.{micros}", value.format("%H:%M:%S"))
    }
}

fn timestamp(value: NaiveDateTime) -> Value {
    Value::String(format!(
        "{}T{}",
        value.date().format("%Y-%m-%d"),
        time(value.time())
    ))
}

fn timestamptz(value: DateTime<Utc>) -> Value {
    Value::String(format!(
        "{}T{}Z",
        value.date_naive().format("%Y-%m-%d"),
        time(value.time())
    ))
}

/// MySQL `TIME` is a duration (`-838:59:59` to `838:59:59`), not a time of day.
fn mysql_time(value: sqlx::mysql::types::MySqlTime) -> String {
    // `sign()`, not `is_negative()`: sqlx 0.9.0's `MySqlTime::is_negative` returns the opposite.
    let sign = if value.sign().is_negative() { "-" } else { "" };
    let micros = value.microseconds();
    let fraction = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    format!(
        "{sign}{:02}:{:02}:{:02}{fraction}",
        value.hours(),
        value.minutes(),
        value.seconds()
    )
}

/// Bound for [`Param::Null`] on PostgreSQL: a `NULL` with OID 0 ("unspecified"), which the
/// server types from context, where a typed `NULL` (say `text`) would be refused by an `int`
/// column.
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sqlx::{MySqlConnection, PgConnection, SqliteConnection};
    use std::fmt::Display;
    use std::time::Duration;

    const PG_URLS: [&str; 2] = [
        "postgres://postgres@127.0.0.1:5432/test",
        "postgres://root@127.0.0.1:5432/test",
    ];
    const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

    /// The one place the unreachable-server rule lives: under CI a missing server fails the
    /// test; elsewhere the test says it is skipping, on stderr, and the caller returns.
    fn server_unreachable(server: &str, url: &str, error: &dyn Display) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{server} at {url} is unreachable: {error}");
        }
        eprintln!("skipped: {server} at {url} is unreachable: {error}");
    }

    async fn connect<C: sqlx::Connection>(url: &str) -> Result<C, String> {
        match tokio::time::timeout(Duration::from_secs(10), C::connect(url)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out after 10s".to_owned()),
        }
    }

    /// Connects as `postgres`, then as `root` when that role does not exist here.
    async fn pg() -> Option<PgConnection> {
        let mut errors = Vec::new();
        for url in PG_URLS {
            match connect(url).await {
                Ok(connection) => return Some(connection),
                Err(error) => errors.push(format!("{url}: {error}")),
            }
        }
        server_unreachable("PostgreSQL", PG_URLS[0], &errors.join("; "));
        None
    }

    async fn mysql() -> Option<MySqlConnection> {
        match connect(MYSQL_URL).await {
            Ok(connection) => Some(connection),
            Err(error) => {
                server_unreachable("MariaDB/MySQL", MYSQL_URL, &error);
                None
            }
        }
    }

    /// A table name no other run (or concurrent test) uses.
    fn table_name(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        format!(
            "runbook_{prefix}_{}_{nanos}_{}",
            std::process::id(),
            fastrand::u32(..)
        )
    }

    fn sql(text: String) -> AssertSqlSafe<String> {
        AssertSqlSafe(text)
    }

    fn placeholders_pg(from: usize, count: usize) -> String {
        (from..from + count)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn placeholders_q(count: usize) -> String {
        vec!["?"; count].join(", ")
    }

    fn text(value: &str) -> Param {
        Param::Text(value.to_owned())
    }

    fn injection(table: &str) -> String {
        format!("'; drop table {table}; --")
    }

    // PostgreSQL columns: (name, declared type, SQL for the value with `$n` placeholder `{}`,
    // bound param, expected JSON).
    fn pg_columns(table: &str) -> Vec<(&'static str, String, &'static str, Param, Value)> {
        let enum_type = format!("pg_temp.{table}_mood");
        vec![
            ("c_int2", "int2".into(), "{}", Param::Int(-12), json!(-12)),
            (
                "c_int4",
                "int4".into(),
                "{}",
                Param::Int(2147483647),
                json!(2147483647),
            ),
            (
                "c_int8",
                "int8".into(),
                "{}",
                Param::Int(i64::MAX),
                json!(i64::MAX),
            ),
            (
                "c_numeric",
                "numeric".into(),
                "{}::numeric",
                text("12345678901234567890.123456789"),
                json!("12345678901234567890.123456789"),
            ),
            (
                "c_numeric_scaled",
                "numeric(12,3)".into(),
                "{}",
                Param::Float(1.5),
                json!("1.500"),
            ),
            (
                "c_numeric_big",
                "numeric".into(),
                "{}",
                Param::Int(1_000_000),
                json!("1000000"),
            ),
            (
                "c_numeric_nan",
                "numeric".into(),
                "{}::numeric",
                text("NaN"),
                json!("NaN"),
            ),
            (
                "c_float4",
                "float4".into(),
                "{}",
                Param::Float(0.1),
                json!(0.1),
            ),
            (
                "c_float8",
                "float8".into(),
                "{}",
                Param::Float(-2.25),
                json!(-2.25),
            ),
            (
                "c_float8_inf",
                "float8".into(),
                "{}::float8",
                text("-Infinity"),
                json!("-Infinity"),
            ),
            ("c_text", "text".into(), "{}", text("héllo"), json!("héllo")),
            (
                "c_varchar",
                "varchar(20)".into(),
                "{}",
                text("v"),
                json!("v"),
            ),
            ("c_char", "char(5)".into(), "{}", text("ab"), json!("ab   ")),
            ("c_name", "name".into(), "{}", text("nm"), json!("nm")),
            (
                "c_bool",
                "bool".into(),
                "{}",
                Param::Bool(true),
                json!(true),
            ),
            (
                "c_date",
                "date".into(),
                "{}::date",
                text("2024-02-29"),
                json!("2024-02-29"),
            ),
            (
                "c_time",
                "time".into(),
                "{}::time",
                text("13:14:15.123456"),
                json!("13:14:15.123456"),
            ),
            (
                "c_time_whole",
                "time".into(),
                "{}::time",
                text("08:00"),
                json!("08:00:00"),
            ),
            (
                "c_timestamp",
                "timestamp".into(),
                "{}::timestamp",
                text("2024-02-29 13:14:15.5"),
                json!("2024-02-29T13:14:15.500000"),
            ),
            (
                "c_timestamptz",
                "timestamptz".into(),
                "{}::timestamptz",
                text("2024-02-29 13:14:15+02"),
                json!("2024-02-29T11:14:15Z"),
            ),
            (
                "c_json",
                "json".into(),
                "{}",
                Param::Json(json!({"b": [1, 2], "a": null})),
                json!({"a": null, "b": [1, 2]}),
            ),
            (
                "c_jsonb",
                "jsonb".into(),
                "{}",
                Param::Json(json!([1, "x", {"k": true}])),
                json!([1, "x", {"k": true}]),
            ),
            (
                "c_bytea",
                "bytea".into(),
                "{}::bytea",
                text("\\x0001ff"),
                json!("AAH/"),
            ),
            (
                "c_uuid",
                "uuid".into(),
                "{}::uuid",
                text("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                json!("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            ),
            (
                "c_enum",
                enum_type,
                "{}::{enum}",
                text("happy"),
                json!("happy"),
            ),
            (
                "c_injection",
                "text".into(),
                "{}",
                text(&injection(table)),
                json!(injection(table)),
            ),
        ]
    }

    #[tokio::test]
    async fn postgres_round_trip_follows_the_mapping() {
        let Some(mut conn) = pg().await else { return };
        let table = table_name("convert");
        let columns = pg_columns(&table);

        sqlx::query(sql(format!(
            "CREATE TYPE pg_temp.{table}_mood AS ENUM ('sad', 'happy')"
        )))
        .execute(&mut conn)
        .await
        .expect("create enum");
        for domain in [
            format!("CREATE DOMAIN pg_temp.{table}_posint AS int4 CHECK (VALUE > 0)"),
            format!("CREATE DOMAIN pg_temp.{table}_code AS text"),
        ] {
            sqlx::query(sql(domain))
                .execute(&mut conn)
                .await
                .expect("create domain");
        }
        let definitions: Vec<String> = columns
            .iter()
            .map(|(name, ty, ..)| format!("{name} {ty}"))
            .collect();
        sqlx::query(sql(format!(
            "CREATE TEMPORARY TABLE {table} (id int, {})",
            definitions.join(", ")
        )))
        .execute(&mut conn)
        .await
        .expect("create table");

        let names: Vec<&str> = columns.iter().map(|(name, ..)| *name).collect();
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(n, (_, _, template, ..))| {
                template
                    .replace("{}", &format!("${}", n + 2))
                    .replace("{enum}", &format!("pg_temp.{table}_mood"))
            })
            .collect();
        let mut params = vec![Param::Int(1)];
        params.extend(columns.iter().map(|(_, _, _, param, _)| param.clone()));
        let insert = format!(
            "INSERT INTO {table} (id, {}) VALUES ($1, {})",
            names.join(", "),
            values.join(", ")
        );
        pg_query(&insert, &params)
            .execute(&mut conn)
            .await
            .expect("insert values");

        // Untyped NULL into every column, with no cast to help.
        let mut nulls = vec![Param::Int(2)];
        nulls.extend(columns.iter().map(|_| Param::Null));
        let insert_nulls = format!(
            "INSERT INTO {table} (id, {}) VALUES ($1, {})",
            names.join(", "),
            placeholders_pg(2, columns.len())
        );
        pg_query(&insert_nulls, &nulls)
            .execute(&mut conn)
            .await
            .expect("insert nulls");

        let select = format!("SELECT {} FROM {table} WHERE id = $1", names.join(", "));
        let row = pg_query(&select, &[Param::Int(1)])
            .fetch_one(&mut conn)
            .await
            .expect("select values");
        assert_eq!(column_names(&row), names);
        let expected: Map<String, Value> = columns
            .iter()
            .map(|(name, _, _, _, json)| ((*name).to_owned(), json.clone()))
            .collect();
        assert_eq!(pg_row(&row).expect("convert values"), expected);

        let row = pg_query(&select, &[Param::Int(2)])
            .fetch_one(&mut conn)
            .await
            .expect("select nulls");
        let all_null: Map<String, Value> = names
            .iter()
            .map(|name| ((*name).to_owned(), Value::Null))
            .collect();
        assert_eq!(pg_row(&row).expect("convert nulls"), all_null);

        // The injection text stayed a value: the table is still there, with both rows.
        let count: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .expect("table still exists");
        assert_eq!(count, 2);
    }

    #[tokio::test]
    async fn postgres_binds_any_param_type_to_the_same_statement() {
        let Some(mut conn) = pg().await else { return };
        // Same SQL text each time: a cached statement typed by the first call must not be reused.
        let cases = [
            (Param::Int(7), json!("7")),
            (text("a"), json!("a")),
            (Param::Null, Value::Null),
            (Param::Float(1.25), json!("1.25")),
            (Param::Bool(false), json!("false")),
            (Param::Json(json!({"k": 1})), json!("{\"k\": 1}")),
        ];
        for (param, expected) in cases {
            let row = pg_query("SELECT $1::text AS v", &[param])
                .fetch_one(&mut conn)
                .await
                .expect("select");
            assert_eq!(
                pg_row(&row).expect("convert"),
                json_object(json!({"v": expected}))
            );
        }
        // An untyped NULL first lets the server type `$1` as float8; the int8 that follows must
        // not be read with that statement.
        for (param, expected) in [
            (Param::Null, Value::Null),
            (Param::Int(2), json!(2.0)),
            (Param::Float(0.5), json!(0.5)),
        ] {
            let row = pg_query("SELECT $1::float8 AS v", &[param])
                .fetch_one(&mut conn)
                .await
                .expect("select float");
            assert_eq!(
                pg_row(&row).expect("convert"),
                json_object(json!({"v": expected}))
            );
        }
        // NULL where only a cast gives the type (`$2 IS NULL` alone is refused: "could not
        // determine data type of parameter $2").
        let row = pg_query(
            "SELECT $1 AS v, $2::int IS NULL AS n",
            &[Param::Null, Param::Null],
        )
        .fetch_one(&mut conn)
        .await
        .expect("select untyped null");
        assert_eq!(
            pg_row(&row).expect("convert"),
            json_object(json!({"v": null, "n": true}))
        );
    }

    #[tokio::test]
    async fn postgres_reports_unsupported_types() {
        let Some(mut conn) = pg().await else { return };
        let row = sqlx::query("SELECT 1 AS ok, interval '1 day' AS span")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(
            pg_row(&row),
            Err("column span: unsupported type INTERVAL".to_owned())
        );
    }

    fn json_object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    // MariaDB/MySQL columns: (name, declared type, bound param, expected JSON).
    fn mysql_columns(table: &str) -> Vec<(&'static str, &'static str, Param, Value)> {
        vec![
            ("c_tinyint", "TINYINT", Param::Int(-128), json!(-128)),
            ("c_smallint", "SMALLINT", Param::Int(-32768), json!(-32768)),
            (
                "c_mediumint",
                "MEDIUMINT",
                Param::Int(8388607),
                json!(8388607),
            ),
            ("c_int", "INT", Param::Int(-2147483648), json!(-2147483648)),
            ("c_bigint", "BIGINT", Param::Int(i64::MIN), json!(i64::MIN)),
            (
                "c_utinyint",
                "TINYINT UNSIGNED",
                Param::Int(255),
                json!(255),
            ),
            (
                "c_uint",
                "INT UNSIGNED",
                Param::Int(4294967295),
                json!(4294967295u64),
            ),
            (
                "c_ubigint",
                "BIGINT UNSIGNED",
                text("18446744073709551615"),
                json!(u64::MAX),
            ),
            (
                "c_decimal",
                "DECIMAL(30,9)",
                text("12345678901234567890.123456789"),
                json!("12345678901234567890.123456789"),
            ),
            (
                "c_decimal_scaled",
                "DECIMAL(10,3)",
                Param::Float(1.5),
                json!("1.500"),
            ),
            ("c_float", "FLOAT", Param::Float(0.1), json!(0.1)),
            ("c_double", "DOUBLE", Param::Float(-2.25), json!(-2.25)),
            ("c_char", "CHAR(5)", text("ab"), json!("ab")),
            ("c_varchar", "VARCHAR(20)", text("héllo"), json!("héllo")),
            (
                "c_varchar_bin",
                "VARCHAR(20) COLLATE utf8mb4_bin",
                text("bin"),
                json!("bin"),
            ),
            ("c_text", "TEXT", text("long"), json!("long")),
            (
                "c_enum",
                "ENUM('sad','happy')",
                text("happy"),
                json!("happy"),
            ),
            ("c_set", "SET('x','y')", text("x,y"), json!("x,y")),
            ("c_bool", "BOOLEAN", Param::Bool(true), json!(true)),
            ("c_year", "YEAR", Param::Int(2024), json!(2024)),
            ("c_bit", "BIT(8)", Param::Int(5), json!(5)),
            ("c_date", "DATE", text("2024-02-29"), json!("2024-02-29")),
            (
                "c_time",
                "TIME(6)",
                text("13:14:15.123456"),
                json!("13:14:15.123456"),
            ),
            (
                "c_time_negative",
                "TIME",
                text("-838:59:59"),
                json!("-838:59:59"),
            ),
            (
                "c_datetime",
                "DATETIME(6)",
                text("2024-02-29 13:14:15.5"),
                json!("2024-02-29T13:14:15.500000"),
            ),
            (
                "c_timestamp",
                "TIMESTAMP(6) NULL",
                text("2024-02-29 13:14:15"),
                json!("2024-02-29T13:14:15Z"),
            ),
            // MariaDB's JSON is LONGTEXT and reaches the client as text.
            (
                "c_json",
                "JSON",
                Param::Json(json!({"a": [1, 2]})),
                json!("{\"a\":[1,2]}"),
            ),
            ("c_binary", "BINARY(3)", text("ab"), json!("YWIA")),
            ("c_varbinary", "VARBINARY(10)", text("abc"), json!("YWJj")),
            ("c_blob", "BLOB", text("\u{0}\u{1}"), json!("AAE=")),
            (
                "c_uuid",
                "UUID",
                text("67e55044-10b1-426f-9247-bb680e5fe0c8"),
                json!("67e55044-10b1-426f-9247-bb680e5fe0c8"),
            ),
            (
                "c_injection",
                "TEXT",
                text(&injection(table)),
                json!(injection(table)),
            ),
        ]
    }

    #[tokio::test]
    async fn mysql_round_trip_follows_the_mapping() {
        let Some(mut conn) = mysql().await else {
            return;
        };
        let table = table_name("convert");
        let columns = mysql_columns(&table);

        let definitions: Vec<String> = columns
            .iter()
            .map(|(name, ty, ..)| format!("{name} {ty}"))
            .collect();
        sqlx::query(sql(format!(
            "CREATE TEMPORARY TABLE {table} (id INT, {}) CHARACTER SET utf8mb4",
            definitions.join(", ")
        )))
        .execute(&mut conn)
        .await
        .expect("create table");

        let names: Vec<&str> = columns.iter().map(|(name, ..)| *name).collect();
        let insert = format!(
            "INSERT INTO {table} (id, {}) VALUES (?, {})",
            names.join(", "),
            placeholders_q(columns.len())
        );
        let mut params = vec![Param::Int(1)];
        params.extend(columns.iter().map(|(_, _, param, _)| param.clone()));
        mysql_query(&insert, &params)
            .execute(&mut conn)
            .await
            .expect("insert values");
        let mut nulls = vec![Param::Int(2)];
        nulls.extend(columns.iter().map(|_| Param::Null));
        mysql_query(&insert, &nulls)
            .execute(&mut conn)
            .await
            .expect("insert nulls");

        let select = format!("SELECT {} FROM {table} WHERE id = ?", names.join(", "));
        let row = mysql_query(&select, &[Param::Int(1)])
            .fetch_one(&mut conn)
            .await
            .expect("select values");
        assert_eq!(column_names(&row), names);
        let expected: Map<String, Value> = columns
            .iter()
            .map(|(name, _, _, json)| ((*name).to_owned(), json.clone()))
            .collect();
        assert_eq!(mysql_row(&row).expect("convert values"), expected);

        let row = mysql_query(&select, &[Param::Int(2)])
            .fetch_one(&mut conn)
            .await
            .expect("select nulls");
        let all_null: Map<String, Value> = names
            .iter()
            .map(|name| ((*name).to_owned(), Value::Null))
            .collect();
        assert_eq!(mysql_row(&row).expect("convert nulls"), all_null);

        let count: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .expect("table still exists");
        assert_eq!(count, 2);

        // Params in expressions, where nothing but the bound value gives the type.
        let row = mysql_query(
            "SELECT ? AS n, ? AS s, ? AS f, ? AS b, ? IS NULL AS z",
            &[
                Param::Int(3),
                text("s"),
                Param::Float(0.5),
                Param::Bool(true),
                Param::Null,
            ],
        )
        .fetch_one(&mut conn)
        .await
        .expect("select params");
        assert_eq!(
            mysql_row(&row).expect("convert params"),
            // A bound boolean is a TINYINT to MySQL, and an expression has no TINYINT(1) column type.
            json_object(json!({"n": 3, "s": "s", "f": 0.5, "b": 1, "z": 1}))
        );
    }

    #[tokio::test]
    async fn sqlite_round_trip_follows_the_mapping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("convert.db").display()
        );
        let mut conn: SqliteConnection = connect(&url).await.expect("open sqlite file");
        let table = table_name("convert");
        // (name, declared type, param, expected JSON): values come back as stored.
        let columns: Vec<(&str, &str, Param, Value)> = vec![
            (
                "c_integer",
                "INTEGER",
                Param::Int(i64::MIN),
                json!(i64::MIN),
            ),
            ("c_real", "REAL", Param::Float(0.1), json!(0.1)),
            (
                "c_real_inf",
                "REAL",
                Param::Float(f64::INFINITY),
                json!("Infinity"),
            ),
            ("c_text", "TEXT", text("héllo"), json!("héllo")),
            ("c_blob", "BLOB", text("x"), json!("x")),
            ("c_bool", "BOOLEAN", Param::Bool(true), json!(true)),
            ("c_bool_other", "BOOLEAN", Param::Int(7), json!(7)),
            (
                "c_decimal_text",
                "TEXT",
                text("12345678901234567890.123456789"),
                json!("12345678901234567890.123456789"),
            ),
            ("c_numeric", "NUMERIC", text("1.5"), json!(1.5)),
            ("c_date", "DATE", text("2024-02-29"), json!("2024-02-29")),
            (
                "c_datetime",
                "DATETIME",
                Param::Int(1709212455),
                json!(1709212455),
            ),
            (
                "c_json",
                "JSON",
                Param::Json(json!({"a": [1, 2]})),
                json!("{\"a\":[1,2]}"),
            ),
            (
                "c_injection",
                "TEXT",
                text(&injection(&table)),
                json!(injection(&table)),
            ),
        ];
        let definitions: Vec<String> = columns
            .iter()
            .map(|(name, ty, ..)| format!("{name} {ty}"))
            .collect();
        sqlx::query(sql(format!(
            "CREATE TABLE {table} (id INTEGER, {})",
            definitions.join(", ")
        )))
        .execute(&mut conn)
        .await
        .expect("create table");

        let names: Vec<&str> = columns.iter().map(|(name, ..)| *name).collect();
        let insert = format!(
            "INSERT INTO {table} (id, {}) VALUES (?, {})",
            names.join(", "),
            placeholders_q(columns.len())
        );
        let mut params = vec![Param::Int(1)];
        params.extend(columns.iter().map(|(_, _, param, _)| param.clone()));
        sqlite_query(&insert, &params)
            .execute(&mut conn)
            .await
            .expect("insert values");
        let mut nulls = vec![Param::Int(2)];
        nulls.extend(columns.iter().map(|_| Param::Null));
        sqlite_query(&insert, &nulls)
            .execute(&mut conn)
            .await
            .expect("insert nulls");

        let select = format!("SELECT {} FROM {table} WHERE id = ?", names.join(", "));
        let row = sqlite_query(&select, &[Param::Int(1)])
            .fetch_one(&mut conn)
            .await
            .expect("select values");
        assert_eq!(column_names(&row), names);
        let expected: Map<String, Value> = columns
            .iter()
            .map(|(name, _, _, json)| ((*name).to_owned(), json.clone()))
            .collect();
        assert_eq!(sqlite_row(&row).expect("convert values"), expected);

        let row = sqlite_query(&select, &[Param::Int(2)])
            .fetch_one(&mut conn)
            .await
            .expect("select nulls");
        let all_null: Map<String, Value> = names
            .iter()
            .map(|name| ((*name).to_owned(), Value::Null))
            .collect();
        assert_eq!(sqlite_row(&row).expect("convert nulls"), all_null);

        let count: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .expect("table still exists");
        assert_eq!(count, 2);

        // Expressions have no declared type: the storage class decides.
        let row = sqlx::query("SELECT 1 AS i, 1.5 AS f, 'x' AS s, x'00ff' AS b, NULL AS n")
            .fetch_one(&mut conn)
            .await
            .expect("select expressions");
        assert_eq!(
            sqlite_row(&row).expect("convert expressions"),
            json_object(json!({"i": 1, "f": 1.5, "s": "x", "b": "AP8=", "n": null}))
        );
    }

    #[test]
    fn times_print_a_fraction_only_when_there_is_one() {
        let whole = NaiveTime::from_hms_opt(8, 0, 0).expect("valid time");
        let fraction = NaiveTime::from_hms_micro_opt(8, 0, 0, 120).expect("valid time");
        assert_eq!(time(whole), "08:00:00");
        assert_eq!(time(fraction), "08:00:00.000120");
    }

    #[test]
    fn non_finite_floats_become_strings() {
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::INFINITY), json!("Infinity"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(float(widen(0.1)), json!(0.1));
    }
}

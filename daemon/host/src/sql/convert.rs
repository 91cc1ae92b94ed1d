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

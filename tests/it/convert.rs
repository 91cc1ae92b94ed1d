//! The SQL converter against the machine's real PostgreSQL and MariaDB and a SQLite file:
//! every documented column type read back as docs/database-steps.md § Type mapping says,
//! parameters bound with their types, and injection attempts that stay values.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use runbookd::plugins::sql::convert::*;
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, MySqlConnection, PgConnection, SqliteConnection};

const PG_URLS: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A server these tests need is unreachable: the suite's one rule decides (fail under CI,
/// else say it is skipped).
fn server_unreachable(server: &str, url: &str, error: &dyn Display) {
    runbook_e2e::required_here(server, Err(format!("{url} is unreachable: {error}")));
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
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "runbook_{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
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

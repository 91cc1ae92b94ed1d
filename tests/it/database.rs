//! Database steps end to end against the machine's real PostgreSQL and MariaDB and a SQLite
//! file: tables created and filled with bound params, a capture feeding a later step, a
//! transaction that fails halfway leaving nothing, NULLs, every documented column type read
//! back as docs/database-steps.md § Type mapping says, injection attempts that stay values,
//! the database's own error messages, unreachable servers retried as connect errors, and
//! unknown connections refused before a run starts.
//!
//! Where a server does not accept our login, a test fails when `CI=true` and otherwise says it
//! is skipped (never passes silently): `runbook_e2e::required_here`, as for the converter's
//! tests in `convert.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use runbook_e2e::{Daemon, block_on, step, step_status};

/// PostgreSQL logins to try, in order: `root` where the machine has no `postgres` role.
const POSTGRES: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://root@127.0.0.1:5432/test",
];
const MARIADB: [&str; 1] = ["mysql://root@127.0.0.1:3306/test"];

/// Logs in with `C` at `url` (which opens its database) and pings: a server that answers TCP
/// but refuses the role or has no database `test` is as unusable as one that is down.
async fn login<C: sqlx::Connection>(url: &str) -> Result<(), String> {
    let attempt = async {
        let mut connection = C::connect(url).await.map_err(|err| err.to_string())?;
        connection.ping().await.map_err(|err| err.to_string())?;
        connection.close().await.map_err(|err| err.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".to_owned()))
}

/// The first of `urls` that accepts a login. When none does, the test fails under `CI=true`
/// and otherwise says on stderr that it is skipped, and the caller returns.
fn server<C: sqlx::Connection>(what: &str, urls: &[&str]) -> Option<String> {
    let mut errors = Vec::new();
    for url in urls {
        match block_on(login::<C>(url)) {
            Ok(()) => return Some((*url).to_owned()),
            Err(err) => errors.push(format!("{url}: {err}")),
        }
    }
    runbook_e2e::required_here(
        what,
        Err(format!("no login accepted: {}", errors.join("; "))),
    );
    None
}

fn postgres() -> Option<String> {
    server::<sqlx::PgConnection>("PostgreSQL", &POSTGRES)
}

fn mariadb() -> Option<String> {
    server::<sqlx::MySqlConnection>("MariaDB", &MARIADB)
}

/// The daemon config: writes need no approval, and `connection` reaches `url`.
fn config(connection: &str, url: &str) -> String {
    format!(
        "[approvals]\ndatabase_writes = \"auto\"\n\n[connections.{connection}]\nurl = \"{url}\"\n"
    )
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("steps.db").display())
}

/// A table name no other test, concurrent or earlier, uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `text` as a TOML basic string (JSON's string escapes are a subset of TOML's).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Reads what the lifecycle left, then drops the table.
fn verify_runbook(connection: &str, table: &str) -> String {
    r#"
[[steps]]
id = "after"
uses = "database"
with = { connection = "CONN", query = "select id, name, note from TABLE order by id" }

[[steps]]
id = "drop"
uses = "database"
needs = ["after"]
with = { connection = "CONN", execute = "drop table TABLE" }
"#
    .replace("CONN", connection)
    .replace("TABLE", table)
}

/// The same runbook for each database: `$n` placeholders become `?` where the database
/// wants them, and the table name is unique to the test run.
fn lifecycle_runbook(connection: &str, table: &str, question_marks: bool) -> String {
    let runbook = r#"
max_parallel = 1

[params]
name = { type = "string", default = "ada" }

[[steps]]
id = "create"
uses = "database"
with = { connection = "CONN", execute = "create table TABLE (id integer primary key, name varchar(100), note varchar(100))" }

[[steps]]
id = "insert"
uses = "database"
needs = ["create"]
with = { connection = "CONN", statements = [
  { sql = "insert into TABLE (id, name, note) values ($1, $2, $3)", params = [1, "{{ params.name }}", "first"] },
  { sql = "insert into TABLE (id, name, note) values ($1, $2, $3)", params = [2, "'; drop table TABLE; --", { type = "null" }] },
] }

[[steps]]
id = "select"
uses = "database"
needs = ["insert"]
with = { connection = "CONN", query = "select id, name, note from TABLE where id = $1", params = [1], capture = { found = "$.rows[0].name" }, expect = { row_count = 1 } }

[[steps]]
id = "reuse"
uses = "database"
needs = ["select"]
with = { connection = "CONN", query = "select count(*) as n from TABLE where name = $1", params = ["{{ steps.select.output.captures.found }}"] }

[[steps]]
id = "half"
uses = "database"
needs = ["reuse"]
with = { connection = "CONN", statements = [
  "insert into TABLE (id, name) values (3, 'kept?')",
  "insert into TABLE (id, name) values (1, 'duplicate key')",
] }

[[steps]]
id = "bad_sql"
uses = "database"
needs = ["create"]
retry = { attempts = 3, delay = "10ms", jitter = false }
with = { connection = "CONN", query = "selec nothing from TABLE" }
"#
    .replace("CONN", connection)
    .replace("TABLE", table);
    if question_marks {
        ["$1", "$2", "$3"]
            .iter()
            .fold(runbook, |text, placeholder| text.replace(placeholder, "?"))
    } else {
        runbook
    }
}

/// The whole lifecycle on one connection. `syntax_error` is part of the database's own
/// message for `selec nothing from ...`, in words the SQL does not hold.
fn lifecycle(connection: &str, url: &str, question_marks: bool, syntax_error: &str) {
    let table = unique("rb_steps");
    let runbook = lifecycle_runbook(connection, &table, question_marks);
    let verify = verify_runbook(connection, &table);
    let daemon = Daemon::start(
        &[("lifecycle.toml", &runbook), ("verify.toml", &verify)],
        &config(connection, url),
    );
    let run = daemon.run_to_end("lifecycle", &[]);
    let verified = daemon.run_to_end("verify", &[]);
    assert_eq!(verified["status"], "completed", "{verified:#}");

    for id in ["create", "insert", "select", "reuse"] {
        assert_eq!(
            step_status(&run, id),
            "completed",
            "{connection} {id}: {run:#}"
        );
    }
    let select = &step(&run, "select")["output"];
    assert_eq!(select["columns"], json!(["id", "name", "note"]));
    assert_eq!(select["rows"][0]["name"], "ada");
    assert_eq!(select["captures"]["found"], "ada");
    assert_eq!(select["row_count"], 1);
    assert_eq!(step(&run, "reuse")["output"]["rows"][0]["n"], 1);

    let rows = step(&verified, "after")["output"]["rows"].clone();
    assert_eq!(
        rows,
        json!([
            { "id": 1, "name": "ada", "note": "first" },
            { "id": 2, "name": format!("'; drop table {table}; --"), "note": null },
        ]),
        "{connection}: the injection attempt is a value, NULL is null, and the failed \
         transaction left nothing"
    );

    assert_eq!(step_status(&run, "half"), "failed", "{run:#}");
    let bad_sql = step(&run, "bad_sql");
    assert_eq!(bad_sql["status"], "failed", "{run:#}");
    let error = bad_sql["error"].as_str().unwrap();
    assert!(
        error.starts_with("database error: ") && error.contains(syntax_error),
        "{connection}: the database's own message ({syntax_error:?}): {error}"
    );
    assert_eq!(
        bad_sql["attempts"], 1,
        "{connection}: refused SQL is permanent, so the retry policy does not retry it: \
         {bad_sql:#}"
    );
}

#[test]
fn postgres_lifecycle() {
    if let Some(url) = postgres() {
        lifecycle("pg", &url, false, r#"syntax error at or near "selec""#);
    }
}

#[test]
fn mariadb_lifecycle() {
    if let Some(url) = mariadb() {
        lifecycle("maria", &url, true, "You have an error in your SQL syntax");
    }
}

#[test]
fn sqlite_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(
        "lite",
        &sqlite_url(&dir),
        true,
        r#"near "selec": syntax error"#,
    );
}

/// One column of a type round trip.
struct Column {
    name: &'static str,
    /// The declared type in `create table`.
    declared: &'static str,
    /// The SQL that stores the bound parameter; `{}` is its placeholder.
    value: &'static str,
    /// The parameter, as TOML.
    param: &'static str,
    /// What docs/database-steps.md § Type mapping says the step outputs.
    expected: Value,
}

fn column(
    name: &'static str,
    declared: &'static str,
    value: &'static str,
    param: &'static str,
    expected: Value,
) -> Column {
    Column {
        name,
        declared,
        value,
        param,
        expected,
    }
}

/// Creates `table` with every column, inserts one row of values and one of NULLs (each bound
/// as a param), and selects both back. `placeholder(n)` is the database's n-th placeholder.
fn types_runbook(
    connection: &str,
    table: &str,
    table_options: &str,
    columns: &[Column],
    placeholder: fn(usize) -> String,
) -> String {
    let names: Vec<&str> = columns.iter().map(|column| column.name).collect();
    let names = names.join(", ");
    let declared: Vec<String> = columns
        .iter()
        .map(|column| format!("{} {}", column.name, column.declared))
        .collect();
    let create = format!(
        "create table {table} (id integer primary key, {}){table_options}",
        declared.join(", ")
    );
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(n, column)| column.value.replace("{}", &placeholder(n + 2)))
        .collect();
    let insert = format!(
        "insert into {table} (id, {names}) values ({}, {})",
        placeholder(1),
        values.join(", ")
    );
    let params: Vec<&str> = columns.iter().map(|column| column.param).collect();
    // Bare placeholders: the NULLs get no cast to type them.
    let null_placeholders: Vec<String> = (2..columns.len() + 2).map(placeholder).collect();
    let insert_nulls = format!(
        "insert into {table} (id, {names}) values ({}, {})",
        placeholder(1),
        null_placeholders.join(", ")
    );
    let nulls = vec![r#"{ type = "null" }"#; columns.len()];
    let select = format!("select id, {names} from {table} order by id");
    let connection = toml_string(connection);
    format!(
        r#"
[[steps]]
id = "create"
uses = "database"

[steps.with]
connection = {connection}
execute = {create}

[[steps]]
id = "insert"
uses = "database"
needs = ["create"]

[steps.with]
connection = {connection}
execute = {insert}
params = [
  1,
  {params},
]
expect = {{ row_count = 1 }}

[[steps]]
id = "nulls"
uses = "database"
needs = ["insert"]

[steps.with]
connection = {connection}
execute = {insert_nulls}
params = [2, {nulls}]
expect = {{ row_count = 1 }}

[[steps]]
id = "select"
uses = "database"
needs = ["nulls"]

[steps.with]
connection = {connection}
query = {select}
"#,
        create = toml_string(&create),
        insert = toml_string(&insert),
        params = params.join(",\n  "),
        insert_nulls = toml_string(&insert_nulls),
        nulls = nulls.join(", "),
        select = toml_string(&select),
    )
}

/// Runs [`types_runbook`] through the daemon, drops the table whatever happened, and checks
/// the select step's whole output against what the docs promise for each column.
fn round_trip(connection: &str, url: &str, table_options: &str, columns: &[Column], pg: bool) {
    let table = unique("rb_types");
    let placeholder: fn(usize) -> String = if pg {
        |n| format!("${n}")
    } else {
        |_| "?".to_owned()
    };
    let runbook = types_runbook(connection, &table, table_options, columns, placeholder);
    let drop = format!(
        "[[steps]]\nid = \"drop\"\nuses = \"database\"\nwith = {{ connection = {}, execute = \"drop table if exists {table}\" }}\n",
        toml_string(connection)
    );
    let daemon = Daemon::start(
        &[("types.toml", &runbook), ("drop.toml", &drop)],
        &config(connection, url),
    );
    let run = daemon.run_to_end("types", &[]);
    let dropped = daemon.run_to_end("drop", &[]);

    for id in ["create", "insert", "nulls", "select"] {
        assert_eq!(
            step_status(&run, id),
            "completed",
            "{connection} {id}: {run:#}\n{runbook}"
        );
    }
    let output = &step(&run, "select")["output"];
    let values = &output["rows"][0];
    // Column by column first, so that a failure names every column that is off.
    let wrong: Vec<String> = columns
        .iter()
        .filter(|column| values[column.name] != column.expected)
        .map(|column| {
            format!(
                "{} {}: expected {}, got {}",
                column.name, column.declared, column.expected, values[column.name]
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{connection}:\n{}", wrong.join("\n"));

    let mut names = vec!["id"];
    names.extend(columns.iter().map(|column| column.name));
    let mut filled = serde_json::Map::from_iter([("id".to_owned(), json!(1))]);
    let mut empty = serde_json::Map::from_iter([("id".to_owned(), json!(2))]);
    for column in columns {
        filled.insert(column.name.to_owned(), column.expected.clone());
        empty.insert(column.name.to_owned(), Value::Null);
    }
    assert_eq!(
        *output,
        json!({
            "columns": names,
            "rows": [filled, empty],
            "row_count": 2,
            "truncated": false,
            "captures": {},
        }),
        "{connection}: the select step's output"
    );
    assert_eq!(dropped["status"], "completed", "{dropped:#}");
}

/// The bytes `00 01 ff` of the docs' example, bound as hex text and decoded by the database
/// (no parameter type carries bytes).
const BYTES: &str = r#""0001ff""#;
/// More digits than an f64 keeps.
const LONG_DECIMAL: &str = "12345678901234567890.123456789";
const UUID_UPPER: &str = r#""67E55044-10B1-426F-9247-BB680E5FE0C8""#;
const UUID_LOWER: &str = r#""67e55044-10b1-426f-9247-bb680e5fe0c8""#;
const UUID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

#[test]
fn postgres_types_round_trip_as_documented() {
    let Some(url) = postgres() else { return };
    let columns = [
        column("c_int2", "smallint", "{}", "-12", json!(-12)),
        column(
            "c_int4",
            "integer",
            "{}",
            r#"{ type = "integer", value = "2147483647" }"#,
            json!(2_147_483_647),
        ),
        column(
            "c_int8",
            "bigint",
            "{}",
            "9223372036854775807",
            json!(i64::MAX),
        ),
        column(
            "c_oid",
            "oid",
            "{}::oid",
            r#""4000000000""#,
            json!(4_000_000_000_u32),
        ),
        column(
            "c_numeric",
            "numeric",
            "{}::numeric",
            r#""12345678901234567890.123456789""#,
            json!(LONG_DECIMAL),
        ),
        column(
            "c_numeric_scaled",
            "numeric(12,3)",
            "{}",
            "1.5",
            json!("1.500"),
        ),
        column("c_decimal", "decimal(5,2)", "{}", "7", json!("7.00")),
        column(
            "c_numeric_nan",
            "numeric",
            "{}::numeric",
            r#""NaN""#,
            json!("NaN"),
        ),
        column("c_real", "real", "{}", "0.1", json!(0.1)),
        column(
            "c_double",
            "double precision",
            "{}",
            r#"{ type = "float", value = "-2.25" }"#,
            json!(-2.25),
        ),
        column(
            "c_double_inf",
            "double precision",
            "{}::float8",
            r#""-Infinity""#,
            json!("-Infinity"),
        ),
        column("c_text", "text", "{}", r#""héllo""#, json!("héllo")),
        column("c_varchar", "varchar(20)", "{}", r#""v""#, json!("v")),
        column("c_char", "char(5)", "{}", r#""ab""#, json!("ab   ")),
        column(
            "c_bool",
            "boolean",
            "{}",
            r#"{ type = "boolean", value = "true" }"#,
            json!(true),
        ),
        column("c_bool_false", "boolean", "{}", "false", json!(false)),
        column(
            "c_date",
            "date",
            "{}::date",
            r#""2024-02-29""#,
            json!("2024-02-29"),
        ),
        column(
            "c_time",
            "time",
            "{}::time",
            r#""13:14:15.123456""#,
            json!("13:14:15.123456"),
        ),
        column(
            "c_timestamp",
            "timestamp",
            "{}::timestamp",
            r#""2024-02-29 13:14:15.5""#,
            json!("2024-02-29T13:14:15.500000"),
        ),
        column(
            "c_timestamp_whole",
            "timestamp",
            "{}::timestamp",
            r#""2024-02-29 13:14:15""#,
            json!("2024-02-29T13:14:15"),
        ),
        column(
            "c_timestamptz",
            "timestamptz",
            "{}::timestamptz",
            r#""2024-02-29 13:14:15+02""#,
            json!("2024-02-29T11:14:15Z"),
        ),
        column(
            "c_json",
            "json",
            "{}",
            r#"{ a = [1, 2], b = "x" }"#,
            json!({ "a": [1, 2], "b": "x" }),
        ),
        column(
            "c_jsonb",
            "jsonb",
            "{}",
            r#"{ type = "json", value = '[1, "x", {"k": true, "n": null}]' }"#,
            json!([1, "x", { "k": true, "n": null }]),
        ),
        column(
            "c_bytea",
            "bytea",
            "decode({}, 'hex')",
            BYTES,
            json!("AAH/"),
        ),
        column("c_uuid", "uuid", "{}::uuid", UUID_UPPER, json!(UUID)),
    ];
    round_trip("pg", &url, "", &columns, true);
}

#[test]
fn mariadb_types_round_trip_as_documented() {
    let Some(url) = mariadb() else { return };
    let columns = [
        column("c_tinyint", "TINYINT", "{}", "-128", json!(-128)),
        column("c_smallint", "SMALLINT", "{}", "-32768", json!(-32768)),
        column(
            "c_mediumint",
            "MEDIUMINT",
            "{}",
            "8388607",
            json!(8_388_607),
        ),
        column(
            "c_int",
            "INT",
            "{}",
            r#"{ type = "integer", value = "-2147483648" }"#,
            json!(-2_147_483_648_i64),
        ),
        column(
            "c_bigint",
            "BIGINT",
            "{}",
            "-9223372036854775808",
            json!(i64::MIN),
        ),
        column("c_utinyint", "TINYINT UNSIGNED", "{}", "255", json!(255)),
        column(
            "c_uint",
            "INT UNSIGNED",
            "{}",
            "4294967295",
            json!(4_294_967_295_u32),
        ),
        column(
            "c_ubigint",
            "BIGINT UNSIGNED",
            "{}",
            r#""18446744073709551615""#,
            json!(u64::MAX),
        ),
        column("c_year", "YEAR", "{}", "2024", json!(2024)),
        column("c_bit", "BIT(8)", "{}", "5", json!(5)),
        column(
            "c_decimal",
            "DECIMAL(30,9)",
            "{}",
            r#""12345678901234567890.123456789""#,
            json!(LONG_DECIMAL),
        ),
        column(
            "c_decimal_scaled",
            "DECIMAL(10,3)",
            "{}",
            "1.5",
            json!("1.500"),
        ),
        column("c_numeric", "NUMERIC(5,2)", "{}", "7", json!("7.00")),
        column("c_float", "FLOAT", "{}", "0.1", json!(0.1)),
        column(
            "c_double",
            "DOUBLE",
            "{}",
            r#"{ type = "float", value = "-2.25" }"#,
            json!(-2.25),
        ),
        column("c_char", "CHAR(5)", "{}", r#""ab""#, json!("ab")),
        column(
            "c_varchar",
            "VARCHAR(20)",
            "{}",
            r#""héllo""#,
            json!("héllo"),
        ),
        column(
            "c_varchar_bin",
            "VARCHAR(20) COLLATE utf8mb4_bin",
            "{}",
            r#""bin""#,
            json!("bin"),
        ),
        column("c_text", "TEXT", "{}", r#""long""#, json!("long")),
        column(
            "c_enum",
            "ENUM('sad','happy')",
            "{}",
            r#""happy""#,
            json!("happy"),
        ),
        column("c_set", "SET('a','b')", "{}", r#""a,b""#, json!("a,b")),
        column(
            "c_bool",
            "BOOLEAN",
            "{}",
            r#"{ type = "boolean", value = "true" }"#,
            json!(true),
        ),
        column("c_bool_false", "BOOL", "{}", "false", json!(false)),
        column(
            "c_date",
            "DATE",
            "{}",
            r#""2024-02-29""#,
            json!("2024-02-29"),
        ),
        column(
            "c_time",
            "TIME(6)",
            "{}",
            r#""13:14:15.123456""#,
            json!("13:14:15.123456"),
        ),
        column(
            "c_time_negative",
            "TIME",
            "{}",
            r#""-838:59:59""#,
            json!("-838:59:59"),
        ),
        column(
            "c_datetime",
            "DATETIME(6)",
            "{}",
            r#""2024-02-29 13:14:15.5""#,
            json!("2024-02-29T13:14:15.500000"),
        ),
        column(
            "c_timestamp",
            "TIMESTAMP(6) NULL",
            "{}",
            r#""2024-02-29 13:14:15""#,
            json!("2024-02-29T13:14:15Z"),
        ),
        // MariaDB's JSON is LONGTEXT: the JSON text comes back as a string.
        column(
            "c_json",
            "JSON",
            "{}",
            "{ a = [1, 2] }",
            json!(r#"{"a":[1,2]}"#),
        ),
        column(
            "c_binary",
            "BINARY(4)",
            "UNHEX({})",
            BYTES,
            json!("AAH/AA=="),
        ),
        column(
            "c_varbinary",
            "VARBINARY(10)",
            "UNHEX({})",
            BYTES,
            json!("AAH/"),
        ),
        column("c_blob", "BLOB", "UNHEX({})", BYTES, json!("AAH/")),
        column("c_uuid", "UUID", "{}", UUID_UPPER, json!(UUID)),
    ];
    round_trip("maria", &url, " character set utf8mb4", &columns, false);
}

#[test]
fn sqlite_types_round_trip_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite keeps what was stored; the declared type matters only for BOOLEAN.
    let columns = [
        column(
            "c_integer",
            "INTEGER",
            "{}",
            "-9223372036854775808",
            json!(i64::MIN),
        ),
        column("c_real", "REAL", "{}", "0.1", json!(0.1)),
        // NUMERIC stores a decimal as a REAL ...
        column("c_numeric", "NUMERIC", "{}", r#""1.5""#, json!(1.5)),
        // ... so exact decimals go in TEXT.
        column(
            "c_decimal_text",
            "TEXT",
            "{}",
            r#""12345678901234567890.123456789""#,
            json!(LONG_DECIMAL),
        ),
        column("c_text", "TEXT", "{}", r#""héllo""#, json!("héllo")),
        column(
            "c_bool",
            "BOOLEAN",
            "{}",
            r#"{ type = "boolean", value = "true" }"#,
            json!(true),
        ),
        column("c_bool_false", "BOOL", "{}", "false", json!(false)),
        column("c_bool_other", "BOOLEAN", "{}", "7", json!(7)),
        column(
            "c_date_text",
            "DATETIME",
            "{}",
            r#""2024-02-29 13:14:15""#,
            json!("2024-02-29 13:14:15"),
        ),
        column(
            "c_date_unix",
            "DATETIME",
            "{}",
            r#"{ type = "integer", value = "1709212455" }"#,
            json!(1_709_212_455),
        ),
        column(
            "c_date_julian",
            "REAL",
            "{}",
            "2460370.05",
            json!(2_460_370.05),
        ),
        column(
            "c_json",
            "JSON",
            "{}",
            "{ a = [1, 2] }",
            json!(r#"{"a":[1,2]}"#),
        ),
        column("c_blob", "BLOB", "unhex({})", BYTES, json!("AAH/")),
        column("c_uuid", "TEXT", "{}", UUID_LOWER, json!(UUID)),
    ];
    round_trip("lite", &sqlite_url(&dir), "", &columns, false);
}
#[test]
fn unknown_connections_are_refused_and_unreachable_ones_retried() {
    let runbook = r#"
[connections.down]
url = "postgres://postgres@127.0.0.1:1/test"

[[steps]]
id = "unreachable"
uses = "database"
retry = { attempts = 2, delay = "50ms", jitter = false }
with = { connection = "down", query = "select 1" }
"#;
    let unknown = r#"
[[steps]]
id = "nowhere"
uses = "database"
with = { connection = "nowhere", query = "select 1" }
"#;
    let daemon = Daemon::start(&[("down.toml", runbook), ("unknown.toml", unknown)], "");
    let refused = daemon.cli(&["run", "unknown"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(daemon.json(&["runs"]).as_array().unwrap().is_empty());

    let run = daemon.run_to_end("down", &[]);
    let step = step(&run, "unreachable");
    assert_eq!(step["status"], "failed", "{run:#}");
    assert_eq!(
        step["attempts"], 2,
        "a connect error is transient: {step:#}"
    );
    let error = step["error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot connect to `down`"),
        "a connect error: {error}"
    );
    let history = step["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{step:#}");
    for attempt in history {
        let error = attempt["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("cannot connect to `down`"),
            "each attempt fails to connect: {attempt:#}"
        );
    }

    let listed = daemon.json(&["connections"]);
    let down = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|connection| connection["name"] == "down")
        .unwrap();
    assert_eq!(down["reachable"], false, "{listed:#}");
    assert_eq!(down["location"], "127.0.0.1:1/test");
    assert!(
        !listed.to_string().contains("postgres@"),
        "no credentials: {listed}"
    );
}

#[test]
fn a_read_that_writes_through_a_function_is_refused_by_postgres() {
    // `select f()` is judged a read, so it runs without an approval; the function writes, and
    // PostgreSQL refuses because the daemon ran the read in a read-only transaction. The same
    // statement approved by a human runs as written.
    let Some(url) = postgres() else { return };
    let table = unique("ro");
    let runbook = r#"
[[steps]]
id = "setup"
uses = "database"
with = { connection = "pg", statements = [
  "create table TABLE (id int)",
  "create function TABLE_add() returns int language sql as 'insert into TABLE values (1) returning id'",
] }

[[steps]]
id = "sneak"
uses = "database"
needs = ["setup"]
with = { connection = "pg", query = "select TABLE_add() as id" }

[[steps]]
id = "approved"
uses = "database"
needs = ["setup"]
approval = true
with = { connection = "pg", query = "select TABLE_add() as id" }
"#
    .replace("TABLE", &table);
    let daemon = Daemon::start(&[("ro.toml", &runbook)], &config("pg", &url));
    let run = daemon.start_run("ro", &[]);
    daemon.wait_for(&run, "the approval", |shown| {
        step_status(shown, "approved") == "waiting"
    });
    assert!(daemon.cli(&["approve", &run, "approved"]).status.success());
    let done = daemon.wait_for(&run, "the run to end", |shown| shown["status"] == "failed");
    assert_eq!(
        step_status(&done, "approved"),
        "completed",
        "once approved, the statement runs as written: {done:#}"
    );
    let sneak = step(&done, "sneak");
    assert_eq!(sneak["status"], "failed", "{done:#}");
    let error = sneak["error"].as_str().unwrap_or_default();
    assert!(error.contains("read-only transaction"), "{error}");
    let rows: i64 = block_on(async {
        use sqlx::Connection as _;
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        let (rows,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&mut connection)
                .await
                .unwrap();
        for cleanup in [
            format!("drop function {table}_add()"),
            format!("drop table {table}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(cleanup))
                .execute(&mut connection)
                .await
                .unwrap();
        }
        rows
    });
    assert_eq!(rows, 1, "only the approved call inserted");
}

#[test]
fn a_result_of_wide_rows_is_cut_at_its_byte_cap_whatever_max_rows_says() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = r#"
[[steps]]
id = "wide"
uses = "database"
with = { connection = "lite", query = "with recursive n(i) as (select 1 union all select i + 1 from n where i < 40) select i, printf('%.*c', 1000000, 'x') as pad from n", max_rows = 1000 }
"#;
    let daemon = Daemon::start(
        &[("wide.toml", runbook)],
        &config("lite", &sqlite_url(&dir)),
    );
    let done = daemon.run_to_end("wide", &[]);
    let output = &step(&done, "wide")["output"];
    assert_eq!(
        step_status(&done, "wide"),
        "completed",
        "{}",
        done["status"]
    );
    assert_eq!(output["truncated"], true);
    let kept = output["row_count"].as_u64().unwrap();
    assert!(
        (10..40).contains(&kept),
        "about 16 of the 1 MB rows are kept: {kept}"
    );
}

#[test]
fn writes_wait_for_approval_when_the_policy_says_so_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("approvals.db");
    let runbook = r#"
[[steps]]
id = "read"
uses = "database"
with = { connection = "lite", query = "select 1 as one" }

[[steps]]
id = "write"
uses = "database"
needs = ["read"]
with = { connection = "lite", statements = ["create table notes (body text)", { sql = "insert into notes (body) values (?)", params = ["hello"] }] }
"#;
    let config = format!(
        "[approvals]\ndatabase_writes = \"required\"\n\n[connections.lite]\nurl = \"sqlite://{}\"\n",
        sqlite.display()
    );
    let daemon = Daemon::start(&[("writes.toml", runbook)], &config);
    let run = daemon.start_run("writes", &[]);
    let waiting = daemon.wait_for(&run, "the write to wait", |shown| {
        step_status(shown, "write") == "waiting"
    });
    assert_eq!(
        step_status(&waiting, "read"),
        "completed",
        "a read needs no approval"
    );
    let approval = &step(&waiting, "write")["approval"];
    let summary = approval["summary"].as_str().unwrap();
    assert!(
        summary.contains("insert into notes (body) values (?)") && summary.contains("'hello'"),
        "the approver sees the statements with their values: {summary}"
    );
    assert_eq!(approval["plan"]["effects"][0]["sql"]["writes"], true);

    assert!(daemon.cli(&["approve", &run, "write"]).status.success());
    let done = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(
        step(&done, "write")["output"]["rows_affected"],
        serde_json::json!([0, 1])
    );
}

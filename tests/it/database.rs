//! Database steps end to end against the machine's real PostgreSQL and MariaDB and a SQLite
//! file: tables created and filled with bound params, a capture feeding a later step, a
//! transaction that fails halfway leaving nothing, NULLs, injection attempts that stay
//! values, the database's own error messages, unreachable servers retried, and unknown
//! connections refused before a run starts.
//!
//! Where a server cannot be reached, a test fails when `CI=true` and otherwise says it is
//! skipped (never passes silently).

use std::net::TcpStream;
use std::time::Duration;

use runbook_e2e::{Daemon, step, step_status};

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";

/// Whether the server at `addr` answers; unreachable is a failure in CI and a skip elsewhere.
fn reachable(what: &str, addr: &str) -> bool {
    match TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
        Ok(_) => true,
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} at {addr} is unreachable in CI: {err}"
            );
            eprintln!("skipped: {what} at {addr} is unreachable: {err}");
            false
        }
    }
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

fn config(sqlite: &std::path::Path) -> String {
    format!(
        "[approvals]\ndatabase_writes = \"auto\"\n\n[connections.pg]\nurl = \"{POSTGRES}\"\n\n[connections.maria]\nurl = \"{MARIADB}\"\n\n[connections.lite]\nurl = \"sqlite://{}\"\n",
        sqlite.display()
    )
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// The whole lifecycle on one connection; returns the finished run.
fn lifecycle(connection: &str, question_marks: bool) {
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_dir.path().join("steps.db");
    let table = unique("rb_steps");
    let runbook = lifecycle_runbook(connection, &table, question_marks);
    let verify = verify_runbook(connection, &table);
    let daemon = Daemon::start(
        &[("lifecycle.toml", &runbook), ("verify.toml", &verify)],
        &config(&sqlite),
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
    assert_eq!(select["columns"], serde_json::json!(["id", "name", "note"]));
    assert_eq!(select["rows"][0]["name"], "ada");
    assert_eq!(select["captures"]["found"], "ada");
    assert_eq!(select["row_count"], 1);
    assert_eq!(step(&run, "reuse")["output"]["rows"][0]["n"], 1);

    let rows = step(&verified, "after")["output"]["rows"].clone();
    assert_eq!(
        rows,
        serde_json::json!([
            { "id": 1, "name": "ada", "note": "first" },
            { "id": 2, "name": format!("'; drop table {table}; --"), "note": null },
        ]),
        "{connection}: the injection attempt is a value, NULL is null, and the failed \
         transaction left nothing"
    );

    assert_eq!(step_status(&run, "half"), "failed", "{run:#}");
    assert_eq!(step_status(&run, "bad_sql"), "failed");
    let error = step(&run, "bad_sql")["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        error.contains("syntax") || error.contains("selec"),
        "{connection}: the database's own message: {error}"
    );
}

#[test]
fn postgres_lifecycle() {
    if reachable("PostgreSQL", "127.0.0.1:5432") {
        lifecycle("pg", false);
    }
}

#[test]
fn mariadb_lifecycle() {
    if reachable("MariaDB", "127.0.0.1:3306") {
        lifecycle("maria", true);
    }
}

#[test]
fn sqlite_lifecycle() {
    lifecycle("lite", true);
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

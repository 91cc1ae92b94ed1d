//! 1,000 sequential `select $1` database steps against the machine's PostgreSQL in one run of
//! the real daemon, against a bare sqlx loop doing the same 1,000 queries; prints both and
//! the ratio (the price of durable, observable steps over raw queries).
//!
//! Run with `cargo build -p runbookd -p runbook-tui && cargo bench -p runbook-e2e --bench
//! database_steps --profile dev` (the bench drives the binaries of that profile).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, block_on};

const STEPS: usize = 1000;
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

fn runbook() -> String {
    runbook_e2e::chain_runbook(STEPS, "database", |index| {
        format!("{{ connection = \"pg\", query = \"select $1::int as n\", params = [{index}] }}")
    })
}

fn bare_sqlx() -> Duration {
    block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(POSTGRES)
            .await
            .unwrap();
        let started = Instant::now();
        for index in 0..STEPS {
            let row: (i32,) = sqlx::query_as("select $1::int as n")
                .bind(i32::try_from(index).unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row.0, i32::try_from(index).unwrap());
        }
        started.elapsed()
    })
}

fn main() {
    let config = format!("[connections.pg]\nurl = \"{POSTGRES}\"\n");
    let daemon = Daemon::start_process(&[("selects.toml", &runbook())], &config);
    let started = Instant::now();
    let run = daemon.run_to_end("selects", &[]);
    let through_daemon = started.elapsed();
    assert_eq!(run["status"], "completed", "{run:#}");
    let bare = bare_sqlx();
    let per_step = |total: Duration| total.as_secs_f64() * 1e6 / STEPS as f64;
    println!("{STEPS} sequential `select $1` against PostgreSQL");
    println!("{:<28} {:>12} {:>14}", "", "total", "per query");
    println!(
        "{:<28} {:>10.1}ms {:>12.0}us",
        "runbook (database steps)",
        through_daemon.as_secs_f64() * 1e3,
        per_step(through_daemon)
    );
    println!(
        "{:<28} {:>10.1}ms {:>12.0}us",
        "bare sqlx loop",
        bare.as_secs_f64() * 1e3,
        per_step(bare)
    );
    println!(
        "ratio: {:.1}x",
        through_daemon.as_secs_f64() / bare.as_secs_f64()
    );
}

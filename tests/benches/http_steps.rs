//! 1,000 sequential HTTP GET steps, each with a JSON capture (`n = "$.n"`), against a local
//! axum server in one run of the real daemon; against a bare reqwest loop doing the same 1,000
//! requests and taking the same value from each JSON body; and against Hurl (`hurl --test`) on
//! the same requests with a `[Captures]` jsonpath each, when `hurl` is on PATH. Prints each
//! time and the ratios: design section 9 wants runbook no slower than Hurl, every step recorded.
//!
//! The daemon run is timed from `runbook run` to the end of `runbook watch`, so it includes
//! the CLI's two process starts (a few ms); Hurl's time includes its own process start.
//!
//! Run with `cargo build -p runbookd -p runbook-tui && cargo bench -p runbook-e2e --bench
//! http_steps --profile dev` (the bench drives the binaries of that profile). Hurl is a release
//! build, so compare with ours: `cargo build --release -p runbookd -p runbook-tui && cargo
//! bench -p runbook-e2e --bench http_steps`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use runbook_e2e::bench::{self, JsonServer};
use runbook_e2e::{Daemon, step};

const STEPS: usize = 1000;

fn runbook(url: &str) -> String {
    runbook_e2e::chain_runbook(STEPS, "http", |index| bench::capture_step(url, index))
}

fn main() {
    let server = JsonServer::start();
    let daemon = Daemon::start_process(&[("requests.toml", &runbook(&server.url))], "");
    // `watch` follows the run's event stream until it ends: unlike `run_to_end`, which polls
    // `show --json` (1,000 steps each time) every 50 ms for at most a minute, it neither
    // loads the daemon while it works nor gives up on a slow run.
    let started = Instant::now();
    let id = daemon.start_run("requests", &[]);
    let watched = daemon.cli(&["watch", &id]);
    let through_daemon = started.elapsed();
    assert!(watched.status.success(), "{watched:?}");
    let run = daemon.json(&["show", &id]);
    assert_eq!(run["status"], "completed", "{run:#}");
    let last = step(&run, &format!("s{}", STEPS - 1));
    assert_eq!(last["output"]["captures"]["n"], STEPS - 1, "{last:#}");
    assert_eq!(
        server.take_hits(),
        STEPS,
        "the daemon sent one request per step"
    );

    let bare = bench::bare_reqwest(&server.url, STEPS);
    assert_eq!(server.take_hits(), STEPS);
    let hurl = bench::hurl_sequential(&server.url, STEPS);
    if hurl.is_some() {
        assert_eq!(server.take_hits(), STEPS);
    }

    let row = |name: &str, total: Duration| {
        println!(
            "{name:<28} {:>10.1}ms {:>12.0}us",
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / STEPS as f64
        );
    };
    println!("{STEPS} sequential HTTP GETs with a JSON capture each, against a local server");
    println!("{:<28} {:>12} {:>14}", "", "total", "per request");
    row("runbook (http steps)", through_daemon);
    row("bare reqwest loop", bare);
    match hurl {
        Some(hurl) => row("hurl --test", hurl),
        None => println!("hurl: not on PATH, skipped"),
    }
    println!(
        "ratio runbook/bare: {:.1}x",
        through_daemon.as_secs_f64() / bare.as_secs_f64()
    );
    if let Some(hurl) = hurl {
        println!(
            "ratio runbook/hurl: {:.2}x",
            through_daemon.as_secs_f64() / hurl.as_secs_f64()
        );
    }
}

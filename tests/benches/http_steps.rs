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

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use runbook_e2e::{Daemon, block_on, step};
use serde_json::{Value, json};

const STEPS: usize = 1000;

/// A local JSON server on 127.0.0.1:0 that counts the requests it answers.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Self {
        // Bound before the thread starts, so the port is known and serving when this returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/n/{n}", get(answer))
            .with_state(Arc::clone(&hits));
        std::thread::spawn(move || {
            block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { url, hits }
    }

    /// The requests answered since the last call.
    fn take_hits(&self) -> usize {
        self.hits.swap(0, Ordering::SeqCst)
    }
}

async fn answer(State(hits): State<Arc<AtomicUsize>>, Path(n): Path<u64>) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "n": n, "ok": true }))
}

fn runbook(url: &str) -> String {
    runbook_e2e::chain_runbook(STEPS, "http", |index| {
        format!("{{ url = \"{url}/n/{index}\", capture = {{ n = \"$.n\" }} }}")
    })
}

fn bare_reqwest(url: &str) -> Duration {
    block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        for index in 0..STEPS {
            let response = client.get(format!("{url}/n/{index}")).send().await.unwrap();
            assert!(response.status().is_success());
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            assert_eq!(body["n"], index);
        }
        started.elapsed()
    })
}

/// `hurl --test` over the same requests, or `None` when `hurl` is not on PATH.
fn hurl(url: &str) -> Option<Duration> {
    Command::new("hurl").arg("--version").output().ok()?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steps.hurl");
    let mut text = String::new();
    for index in 0..STEPS {
        text.push_str(&format!(
            "GET {url}/n/{index}\nHTTP 200\n[Captures]\nn: jsonpath \"$.n\"\n\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let output = Command::new("hurl")
        .arg("--test")
        .arg(&file)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "hurl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(elapsed)
}

fn main() {
    let server = Server::start();
    let daemon = Daemon::start(&[("requests.toml", &runbook(&server.url))], "");
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

    let bare = bare_reqwest(&server.url);
    assert_eq!(server.take_hits(), STEPS);
    let hurl = hurl(&server.url);
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

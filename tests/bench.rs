//! What the HTTP benchmarks share: a lean local JSON server, the step asking it for one value,
//! and the same requests done by a bare reqwest loop and by Hurl, so that every bench compares
//! runbook with the same baselines.
//!
//! Request `n` is `GET /n/{n}`, answered `{"n": n, "ok": true}`; each side takes `$.n` from
//! the body and checks it, as a runbook step's `capture = { n = "$.n" }` does.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};

use crate::block_on;

/// A local JSON server on 127.0.0.1:0 that counts the requests it answers. Unlike
/// [`crate::http_server::TestServer`] it records nothing else, so that it costs the
/// benchmarked side as little as possible.
pub struct JsonServer {
    pub url: String,
    hits: Arc<AtomicUsize>,
}

impl JsonServer {
    /// Binds and starts serving on its own thread; serving when this returns.
    pub fn start() -> Self {
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
    pub fn take_hits(&self) -> usize {
        self.hits.swap(0, Ordering::SeqCst)
    }
}

async fn answer(State(hits): State<Arc<AtomicUsize>>, Path(n): Path<u64>) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "n": n, "ok": true }))
}

/// The `with` of an http step sending request `index` to `url` and capturing its `n`.
pub fn capture_step(url: &str, index: usize) -> String {
    format!("{{ url = \"{url}/n/{index}\", capture = {{ n = \"$.n\" }} }}")
}

/// Requests `0..steps` one after another on one pooled client, each body parsed and checked.
pub fn bare_reqwest(url: &str, steps: usize) -> Duration {
    block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        for index in 0..steps {
            fetch(&client, url, index).await;
        }
        started.elapsed()
    })
}

/// Requests `0..steps` with `parallel` of them in flight at once, on one pooled client.
pub fn bare_reqwest_parallel(url: &str, steps: usize, parallel: usize) -> Duration {
    block_on(async {
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..parallel {
            let (client, next, url) = (client.clone(), Arc::clone(&next), url.to_owned());
            workers.spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= steps {
                        break;
                    }
                    fetch(&client, &url, index).await;
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done.unwrap();
        }
        started.elapsed()
    })
}

async fn fetch(client: &reqwest::Client, url: &str, index: usize) {
    let response = client.get(format!("{url}/n/{index}")).send().await.unwrap();
    assert!(response.status().is_success());
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["n"], index);
}

/// Whether `hurl` is on PATH.
pub fn hurl_available() -> bool {
    Command::new("hurl").arg("--version").output().is_ok()
}

/// Hurl's entry for request `index`, with the same capture as [`capture_step`].
fn hurl_entry(url: &str, index: usize) -> String {
    format!("GET {url}/n/{index}\nHTTP 200\n[Captures]\nn: jsonpath \"$.n\"\n\n")
}

/// `hurl --test` on one file of requests `0..steps`, which Hurl sends one after another;
/// `None` when `hurl` is not on PATH.
pub fn hurl_sequential(url: &str, steps: usize) -> Option<Duration> {
    if !hurl_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steps.hurl");
    let text: String = (0..steps).map(|index| hurl_entry(url, index)).collect();
    std::fs::write(&file, text).unwrap();
    let mut command = Command::new("hurl");
    command.arg("--test").arg(&file);
    Some(time_hurl(command))
}

/// `hurl --test --jobs JOBS` over `steps` files of one request each (Hurl runs files, not
/// entries, in parallel); `None` when `hurl` is not on PATH.
pub fn hurl_parallel(url: &str, steps: usize, jobs: usize) -> Option<Duration> {
    if !hurl_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..steps)
        .map(|index| {
            let file = dir.path().join(format!("s{index}.hurl"));
            std::fs::write(&file, hurl_entry(url, index)).unwrap();
            file
        })
        .collect();
    let mut command = Command::new("hurl");
    command
        .arg("--test")
        .arg("--jobs")
        .arg(jobs.to_string())
        .args(&files);
    Some(time_hurl(command))
}

/// Runs Hurl to its end, from its process start, and checks that every request passed.
fn time_hurl(mut command: Command) -> Duration {
    let started = Instant::now();
    let output = command.output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "hurl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

//! Engine overhead per step: 1,000 sequential trivial steps (the probe plugin's `noop`), each
//! planned, instantiated, called, persisted and published, with no I/O of its own.
//!
//! Beside it, the parts of an HTTP step: the built-in `http` plugin's call (a GET with a JSON
//! capture against a minimal keep-alive server on loopback), its instantiation alone (a plan),
//! and the same request from a bare reqwest client.
//!
//! Run with `cargo bench -p runbookd --bench engine_overhead`. Prints a table; the design's
//! goal is a median under 50 µs per step.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use runbookd::catalog::Catalog;
use runbookd::engine::{ApprovalPolicy, Engine, Policy};
use runbookd::events::EventBus;
use runbookd::plugins::{Grant, Limits, Origin, PluginHost, StepContext};
use runbookd::store::{Changes, EventKind, RunRecord, RunStatus, StepRecord, StepStatus, Store};

const STEPS: usize = 1000;
/// Steps per timed window of the whole engine's row.
const WINDOW: usize = 200;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugins = PluginHost::new(
        Limits::default(),
        &dir.path().join("cache"),
        Default::default(),
        Default::default(),
        runbookd::plugins::BUILTIN_PLUGINS,
        runbookd::plugins::call_metrics(Default::default()),
    )
    .await?;
    let probe =
        std::fs::read(Path::new(env!("RUNBOOKD_GUEST_DIR")).join("runbook_probe_plugin.wasm"))?;
    plugins
        .load(&probe, Origin::File("probe.wasm".into()))
        .await?;
    let store = Store::open(&dir.path().join("db"))?;

    // 1. The plugin call alone: fresh instance + call, from the cached InstancePre.
    let mut calls = Vec::with_capacity(STEPS);
    for attempt in 0..STEPS {
        let ctx = context("s", attempt);
        let started = Instant::now();
        let outcome = plugins
            .execute(
                "probe",
                ctx,
                r#"{"mode":"noop"}"#,
                "{}",
                Grant::none(),
                Duration::from_secs(10),
            )
            .await?;
        calls.push(started.elapsed());
        anyhow::ensure!(outcome.is_ok(), "noop failed");
    }

    // 1b. An HTTP step's call alone (the built-in `http` plugin: GET + JSON capture) against
    // a minimal keep-alive server on loopback, and the same request from a bare reqwest
    // client: what the plugin path costs beyond the request.
    let server = tiny_json_server().await?;
    let url = format!("http://{server}/n");
    let config = serde_json::json!({
        "method": "GET",
        "url": url,
        "capture": { "n": "$.n" },
    })
    .to_string();
    let mut http_calls = Vec::with_capacity(STEPS);
    for attempt in 0..STEPS {
        let ctx = context("h", attempt);
        let grant = Grant {
            network: true,
            ..Grant::none()
        };
        let started = Instant::now();
        let outcome = plugins
            .execute("http", ctx, &config, "{}", grant, Duration::from_secs(10))
            .await?;
        http_calls.push(started.elapsed());
        anyhow::ensure!(outcome.is_ok(), "http step failed: {outcome:?}");
    }
    let mut http_plans = Vec::with_capacity(STEPS);
    for attempt in 0..STEPS {
        let ctx = context("h", attempt);
        let started = Instant::now();
        let plan = plugins.plan("http", ctx, &config).await?;
        http_plans.push(started.elapsed());
        anyhow::ensure!(plan.is_ok(), "http plan failed");
    }
    let client = reqwest::Client::new();
    let mut bare = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let started = Instant::now();
        let bytes = client.get(&url).send().await?.bytes().await?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)?;
        bare.push(started.elapsed());
        anyhow::ensure!(body["n"] == 1, "unexpected body {body}");
    }

    // 2. Persisting one step transition with its event (no flush), as the engine does.
    let mut run = RunRecord {
        id: "bench-run".into(),
        runbook: "bench".into(),
        version: "v".into(),
        status: RunStatus::Running,
        params: serde_json::Map::new(),
        steps: (0..STEPS)
            .map(|i| StepRecord::pending(&format!("s{i}"), "probe"))
            .collect(),
        created_at: 0,
        started_at: 0,
        finished_at: 0,
        error: None,
        dry_run: false,
        retries: Vec::new(),
    };
    let mut commits = Vec::with_capacity(STEPS);
    for i in 0..STEPS {
        run.steps[i].status = StepStatus::Completed;
        let started = Instant::now();
        store.commit(
            &run,
            &Changes {
                header: false,
                steps: vec![i],
                ..Changes::default()
            },
            vec![EventKind::StepStatus {
                step_id: run.steps[i].id.clone(),
                status: StepStatus::Completed,
                attempt: 1,
                error: None,
                output: Some(serde_json::json!({ "ok": true })),
                output_omitted: false,
            }],
        )?;
        commits.push(started.elapsed());
    }

    // 3. The whole engine: a runbook of 1,000 steps, each needing the previous one.
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir_all(&runbooks)?;
    let mut source = String::new();
    for i in 0..STEPS {
        source.push_str(&format!(
            "[[steps]]\nid = \"s{i}\"\nuses = \"probe\"\nwith = {{ mode = \"noop\" }}\n"
        ));
        if i > 0 {
            source.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    std::fs::write(runbooks.join("chain.toml"), source)?;
    let catalog = Catalog::new(
        &runbooks,
        plugins.clone(),
        store.clone(),
        runbookd::events::DaemonEvents::default(),
    );
    catalog.reconcile(true).await?;
    let bus = EventBus::default();
    let policy = Policy {
        approvals: HashMap::from([("probe".to_owned(), ApprovalPolicy::Auto)]),
        ..Policy::default()
    };
    let engine = Engine::new(
        store.clone(),
        plugins,
        catalog,
        bus.clone(),
        policy,
        None,
        Default::default(),
    );
    let mut events = bus.subscribe();
    let started = Instant::now();
    let run = engine.start_run("chain", &HashMap::new(), false).await?;
    let mut completions = Vec::with_capacity(STEPS);
    let mut previous = started;
    let mut seen = 0;
    'run: loop {
        // The bus says what is durable; the events themselves are read from the store, as a
        // watcher does.
        let signal = events.recv().await?;
        if *signal.run_id != *run.id || signal.seq <= seen {
            continue;
        }
        for event in store.events_after(&run.id, seen)? {
            seen = event.seq;
            match &event.kind {
                EventKind::StepStatus {
                    status: StepStatus::Completed,
                    ..
                } => {
                    let now = Instant::now();
                    completions.push(now - previous);
                    previous = now;
                }
                EventKind::RunStatus { status, .. } if status.is_terminal() => {
                    anyhow::ensure!(
                        *status == RunStatus::Completed,
                        "the chain ended {status:?}"
                    );
                    break 'run;
                }
                _ => {}
            }
        }
    }
    let total = started.elapsed();

    println!("runbookd engine overhead, {STEPS} trivial steps");
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "measure", "median", "p95", "mean"
    );
    row("plugin instantiate + call (noop)", &mut calls);
    row("http plugin call (GET + capture)", &mut http_calls);
    row(
        "http plugin plan (instantiate, no request)",
        &mut http_plans,
    );
    row("bare reqwest GET + JSON parse", &mut bare);
    row("store commit (run + event, no flush)", &mut commits);
    // Events reach a reader in batches, as flushes make them durable, so one completion's
    // arrival says little about its own step: a window of steps is timed instead.
    let mut windows: Vec<Duration> = completions
        .chunks_exact(WINDOW)
        .map(|window| window.iter().sum::<Duration>() / u32::try_from(WINDOW).unwrap_or(1))
        .collect();
    row(
        "engine, per sequential step (200-step windows)",
        &mut windows,
    );
    println!("whole run: {total:?} for {STEPS} steps; goal: median per step under 50 µs");
    Ok(())
}

/// The context of attempt `attempt` of step `step_id` of the bench's run.
fn context(step_id: &str, attempt: usize) -> StepContext {
    StepContext {
        run_id: "bench".into(),
        step_id: step_id.into(),
        attempt: u32::try_from(attempt).unwrap_or(0),
        idempotency_key: String::new(),
    }
}

fn row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p95 = samples[samples.len() * 95 / 100];
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(1);
    println!(
        "{name:<44} {:>10} {:>10} {:>10}",
        micros(median),
        micros(p95),
        micros(mean)
    );
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// A keep-alive HTTP/1.1 server answering every request with `{"n":1}`.
async fn tiny_json_server() -> anyhow::Result<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(read) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"n\":1}";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

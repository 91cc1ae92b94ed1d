//! The engine's figures against design section 9, in one comparison table. Every case drives
//! a fresh real `runbookd` (its own data dir) through its socket, against a lean local JSON
//! server on 127.0.0.1:0 (`runbook_e2e::bench`), and checks afterwards with `runbook show
//! --json` that the run completed with every step recorded as completed (and, for HTTP steps,
//! that each captured its own value and the server saw one request per step).
//!
//! - a. Sequential HTTP: 1,000 GET steps in a chain, each with `capture = { n = "$.n" }`,
//!   timed from the start of `runbook run` to the arrival of the run's end event, against a
//!   bare reqwest loop of the same requests and `hurl --test` on one file of the same
//!   requests with `[Captures]` (each timed from its start, process start included). Also
//!   the daemon's time over the bare loop per step: what a step costs beyond its request.
//!   And the daemon's CPU time per step over the run (all its threads, from
//!   `/proc/PID/task/*/schedstat`): a figure the machine's other work does not blur.
//! - b. Growth: the same kind of chain at 100, 1,000 and 10,000 steps. Per step is the time
//!   between the first and the last step's completion events divided by the steps between
//!   them, so that the run's fixed costs (creating it, ending it) do not flatter long runs.
//!   The ratio 10,000/100 is 1.0 for an engine whose steps cost the same at any position.
//! - c. Parallel HTTP: 1,000 independent GET steps (no `needs`) with `max_parallel = 64`,
//!   timed like a; steps/s against 64 concurrent bare reqwest tasks and `hurl --test --jobs
//!   64` over 1,000 one-request files (Hurl runs files, not entries, in parallel).
//! - d. Engine overhead per step, I/O excluded: a chain of 1,000 steps of the test plugin's
//!   `noop` kind (`tests/guests/probe`: a fresh instance per step whose call returns at once,
//!   with no I/O), so that the time between two steps' completion events, as they reach a
//!   client, is one step's planning, instantiation, call, persistence (with its flush) and
//!   publication, and nothing else. Events reach a client in pages, as flushes make them
//!   durable, so one event's arrival says little about its own step; the time a window of
//!   [`WINDOW`] consecutive steps took, divided by its steps, does not depend on how its events
//!   were paged beyond the pages at its two ends. The median and the worst of those windows'
//!   per-step times, and the whole chain's mean. (A window's mean counts its slow steps, where a
//!   per-step median would leave them out: these figures err on the high side.) The chain
//!   starts with a `sleep 0.2` shell step so the client is watching live before the first
//!   measured step: no event is a replay. (A `shell` step with `true` would measure a process
//!   spawn; the daemon's own `engine_overhead` bench measures the parts in-process.)
//! - e. Bytes written per step, from the longest run of b: the store is sampled when the
//!   client sees the completion of steps 100, 200, 9,900 and 10,000, and a window's growth
//!   divided by its 100 steps. Readers see only events that are on disk, so a sample at a
//!   completion includes every write up to it. Two measures: what the daemon caused the
//!   kernel to write to disk (`write_bytes` of `/proc/PID/io`: pages, so a flush of a few
//!   bytes counts a whole page; logs included) and the growth of the store's files (the sum
//!   of their sizes under `<data dir>/db`; sled reuses freed space, so this is what is kept,
//!   not what was written). Either should be flat from step 100 to step 10,000.
//!
//! Sizes are the by default. `RUNBOOK_BENCH_SCALE=0.1` multiplies them all (a quick
//! smoke run); `RUNBOOK_BENCH_STEPS` (a, d), `RUNBOOK_BENCH_GROWTH` (b, e: a comma-separated
//! list) and `RUNBOOK_BENCH_PARALLEL` (c) set them one by one; `RUNBOOK_BENCH_CASES=ad` runs
//! only those cases. e's windows are as long as b's shortest run, at its start and at the
//! longest run's end.
//!
//! Run against release builds: `cargo build --release -p runbookd -p runbook-tui && cargo
//! bench -p runbook-e2e --bench engine` (the bench drives the binaries of its own profile).
//! Progress goes to stderr, the table to stdout. Every ratio divides times (or bytes):
//! runbook's by the other side's, or a later step's by an earlier one's; above 1 is slower.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use runbook_e2e::bench::{self, JsonServer};
use runbook_e2e::{Daemon, block_on, probe_plugin};
use runbook_protocol::v1::run_event::Kind;
use runbook_protocol::v1::{StartRunRequest, StepStatus, WatchRunRequest};
use serde_json::Value;

/// Steps in flight at once in c, the design's figure.
const PARALLELISM: usize = 64;
/// d's goal, from the design: median engine overhead per step.
const OVERHEAD_GOAL: Duration = Duration::from_micros(50);

/// Step counts and cases, from the environment.
struct Sizes {
    sequential: usize,
    growth: Vec<usize>,
    parallel: usize,
    cases: String,
}

impl Sizes {
    fn from_env() -> Self {
        let scale: f64 = std::env::var("RUNBOOK_BENCH_SCALE")
            .map(|value| value.parse().expect("RUNBOOK_BENCH_SCALE is a number"))
            .unwrap_or(1.0);
        let scaled = |steps: usize| ((steps as f64 * scale).round() as usize).max(1);
        let count = |name: &str, default: usize| match std::env::var(name) {
            Ok(value) => value
                .parse()
                .unwrap_or_else(|_| panic!("{name} is a step count")),
            Err(_) => scaled(default),
        };
        let mut growth: Vec<usize> = match std::env::var("RUNBOOK_BENCH_GROWTH") {
            Ok(list) => list
                .split(',')
                .map(|steps| {
                    steps
                        .trim()
                        .parse()
                        .expect("RUNBOOK_BENCH_GROWTH lists counts")
                })
                .collect(),
            Err(_) => [100, 1000, 10_000].map(scaled).to_vec(),
        };
        growth.sort_unstable();
        growth.dedup();
        assert!(!growth.is_empty(), "RUNBOOK_BENCH_GROWTH lists no count");
        Self {
            sequential: count("RUNBOOK_BENCH_STEPS", 1000),
            growth,
            parallel: count("RUNBOOK_BENCH_PARALLEL", 1000),
            cases: std::env::var("RUNBOOK_BENCH_CASES").unwrap_or_else(|_| "abcde".into()),
        }
    }

    fn runs(&self, case: char) -> bool {
        self.cases.contains(case)
    }
}

/// One line of the table.
struct Row {
    case: char,
    measure: String,
    figure: String,
    comparison: String,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn row(&mut self, case: char, measure: &str, figure: String, comparison: String) {
        eprintln!("  {case}. {measure}: {figure} {comparison}");
        self.0.push(Row {
            case,
            measure: measure.to_owned(),
            figure,
            comparison,
        });
    }

    fn print(&self) {
        let width = self
            .0
            .iter()
            .map(|row| row.measure.len())
            .max()
            .unwrap_or(0);
        println!(
            "{:<4} {:<width$}  {:>14}  comparison",
            "case", "measure", "figure"
        );
        for row in &self.0 {
            println!(
                "{:<4} {:<width$}  {:>14}  {}",
                row.case, row.measure, row.figure, row.comparison
            );
        }
    }
}

/// What a client watching one run saw.
struct Observed {
    id: String,
    /// From the start of the run's request to the arrival of its end event.
    total: Duration,
    /// When each step's completion event arrived, in order.
    completions: Vec<Instant>,
    /// The store as it was when the number of completions reached each checkpoint.
    samples: Vec<(usize, StoreSample)>,
}

impl Observed {
    /// Time per step between the first and the last completion, free of the run's own costs.
    fn per_step(&self) -> Duration {
        match (self.completions.first(), self.completions.last()) {
            (Some(first), Some(last)) if self.completions.len() > 1 => {
                (*last - *first) / u32::try_from(self.completions.len() - 1).unwrap()
            }
            _ => self.total,
        }
    }

    fn sample(&self, at: usize) -> &StoreSample {
        &self
            .samples
            .iter()
            .find(|(checkpoint, _)| *checkpoint == at)
            .unwrap_or_else(|| panic!("no sample at step {at}"))
            .1
    }
}

/// How the run is started: through the CLI, as a user would (a, c, compared with Hurl's
/// process), or over the already open gRPC connection, so a run's fixed cost stays out of the
/// way of what is measured (b, d, e).
#[derive(Clone, Copy)]
enum Start {
    Cli,
    Grpc,
}

/// Starts `runbook` and follows its events to its end, sampling the store at `checkpoints`
/// (counts of completed steps).
fn observe(daemon: &Daemon, runbook: &str, start: Start, checkpoints: &[usize]) -> Observed {
    block_on(async {
        let mut client = daemon.client().await;
        let started = Instant::now();
        let id = match start {
            Start::Cli => daemon.start_run(runbook, &[]),
            Start::Grpc => {
                client
                    .start_run(StartRunRequest {
                        runbook: runbook.to_owned(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .id
            }
        };
        let mut stream = client
            .watch_run(WatchRunRequest {
                id: id.clone(),
                after_seq: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut completions = Vec::new();
        let mut samples = Vec::new();
        let ended = loop {
            let event = stream
                .message()
                .await
                .unwrap()
                .expect("the stream goes on until the run's end event");
            match event.kind {
                Some(Kind::StepStatus(change)) if change.status() == StepStatus::Completed => {
                    completions.push(Instant::now());
                    if checkpoints.contains(&completions.len()) {
                        samples.push((completions.len(), StoreSample::take(daemon)));
                    }
                }
                Some(Kind::RunStatus(change)) if change.status().is_terminal() => {
                    break Instant::now();
                }
                _ => {}
            }
        };
        Observed {
            id,
            total: ended - started,
            completions,
            samples,
        }
    })
}

/// Checks that run `id` completed with `steps` steps, each recorded as completed; returns
/// the recorded steps.
fn verify(daemon: &Daemon, id: &str, steps: usize) -> Vec<Value> {
    let mut run = daemon.json(&["show", id]);
    assert_eq!(run["status"], "completed", "run {id}: {:#}", run["error"]);
    let recorded = run["steps"].take().as_array().cloned().unwrap_or_default();
    assert_eq!(recorded.len(), steps, "run {id} records every step");
    for step in &recorded {
        assert_eq!(step["status"], "completed", "{step:#}");
    }
    recorded
}

/// [`verify`] for HTTP steps: each step also captured the value of its own request, and the
/// server answered one request per step.
fn verify_http(daemon: &Daemon, server: &JsonServer, id: &str, steps: usize) {
    for step in verify(daemon, id, steps) {
        let index: usize = step["id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(step["output"]["captures"]["n"], index, "{step:#}");
    }
    assert_eq!(server.take_hits(), steps, "one request per step");
}

/// The daemon's store at one moment.
struct StoreSample {
    /// Bytes the daemon caused to be written to disk so far; `None` without `/proc`.
    written: Option<u64>,
    /// Sum of the sizes of the files under `<data dir>/db`.
    db_files: u64,
}

impl StoreSample {
    fn take(daemon: &Daemon) -> Self {
        let written = daemon.pid().and_then(|pid| {
            let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
            io.lines()
                .find_map(|line| line.strip_prefix("write_bytes:"))
                .and_then(|value| value.trim().parse().ok())
        });
        Self {
            written,
            db_files: tree_size(&daemon.data_dir.join("db")),
        }
    }
}

/// One of e's measures of a sample.
type Measure = fn(&StoreSample) -> Option<u64>;

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => tree_size(&entry.path()),
            Ok(meta) => meta.len(),
            // sled may remove a file between the listing and this look.
            Err(_) => 0,
        })
        .sum()
}

fn sequential_http(server: &JsonServer, steps: usize) -> String {
    runbook_e2e::chain_runbook(steps, "http", |index| {
        bench::capture_step(&server.url, index)
    })
}

fn case_a(table: &mut Table, server: &JsonServer, steps: usize) {
    eprintln!("a. {steps} sequential HTTP steps");
    let daemon = Daemon::start_process(&[("sequential.toml", &sequential_http(server, steps))], "");
    let cpu_before = daemon_cpu(&daemon);
    let run = observe(&daemon, "sequential", Start::Cli, &[]);
    let cpu = daemon_cpu(&daemon)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    verify_http(&daemon, server, &run.id, steps);
    let bare = bench::bare_reqwest(&server.url, steps);
    assert_eq!(server.take_hits(), steps);
    let hurl = bench::hurl_sequential(&server.url, steps);
    if hurl.is_some() {
        assert_eq!(server.take_hits(), steps);
    }

    let what = format!("{} sequential GETs + capture", thousands(steps));
    table.row(
        'a',
        &format!("{what}: runbook"),
        duration(run.total),
        String::new(),
    );
    table.row(
        'a',
        &format!("{what}: bare reqwest loop"),
        duration(bare),
        ratio("runbook/bare", run.total, bare),
    );
    match hurl {
        Some(hurl) => table.row(
            'a',
            &format!("{what}: hurl --test"),
            duration(hurl),
            ratio("runbook/hurl", run.total, hurl),
        ),
        None => table.row(
            'a',
            &format!("{what}: hurl --test"),
            "-".into(),
            "hurl not found".into(),
        ),
    }
    table.row(
        'a',
        "runbook over bare, per step",
        duration(run.total.saturating_sub(bare) / u32::try_from(steps).unwrap()),
        String::new(),
    );
    table.row(
        'a',
        "daemon CPU per step (all threads)",
        cpu.map_or_else(
            || "-".into(),
            |cpu| duration(cpu / u32::try_from(steps).unwrap()),
        ),
        "what the machine's other work cannot blur".into(),
    );
}

/// CPU time the daemon's threads have used so far (`/proc/PID/task/*/schedstat`, in ns);
/// `None` without `/proc`.
fn daemon_cpu(daemon: &Daemon) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid()?)).ok()?;
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(Duration::from_nanos(nanos))
}

/// b and e, which share their runs: e samples the longest one.
fn cases_b_e(table: &mut Table, server: &JsonServer, sizes: &Sizes) {
    let longest = *sizes.growth.last().unwrap();
    let window = sizes.growth[0].min(longest / 2).max(1);
    let checkpoints = [window, 2 * window, longest - window, longest];
    let runs: Vec<usize> = if sizes.runs('b') {
        sizes.growth.clone()
    } else {
        vec![longest]
    };
    let mut per_step = Vec::new();
    let mut sampled = None;
    for steps in runs {
        eprintln!("b. growth: a run of {steps} sequential HTTP steps");
        let daemon = Daemon::start_process(&[("chain.toml", &sequential_http(server, steps))], "");
        let wanted: &[usize] = if steps == longest { &checkpoints } else { &[] };
        let run = observe(&daemon, "chain", Start::Grpc, wanted);
        verify_http(&daemon, server, &run.id, steps);
        eprintln!("  run of {steps} steps: {}", duration(run.total));
        per_step.push((steps, run.per_step()));
        if steps == longest {
            sampled = Some(run);
        }
    }

    if sizes.runs('b') {
        let (first_steps, first) = per_step[0];
        for &(steps, time) in &per_step {
            let comparison = if steps == longest && per_step.len() > 1 {
                ratio(
                    &format!("{}/{}", thousands(steps), thousands(first_steps)),
                    time,
                    first,
                )
            } else {
                String::new()
            };
            table.row(
                'b',
                &format!("per step, run of {} steps", thousands(steps)),
                duration(time),
                comparison,
            );
        }
    }

    if sizes.runs('e') {
        let run = sampled.unwrap();
        let windows = [(window, 2 * window), (longest - window, longest)];
        let label =
            |(from, to): (usize, usize)| format!("steps {}-{}", thousands(from + 1), thousands(to));
        let window_rate = |(from, to): (usize, usize), measure: Measure| {
            let grown = measure(run.sample(to))? as f64 - measure(run.sample(from))? as f64;
            Some(grown / (to - from) as f64)
        };
        let measures: [(&str, Measure); 2] = [
            ("disk writes", |sample| sample.written),
            ("db file growth", |sample| Some(sample.db_files)),
        ];
        for (name, measure) in measures {
            let first = window_rate(windows[0], measure);
            let last = window_rate(windows[1], measure);
            for (index, (window, value)) in windows.iter().zip([first, last]).enumerate() {
                let comparison = match (index, first, last) {
                    (1, Some(first), Some(last)) if first > 0.0 => {
                        format!("last/first {:.1}x", last / first)
                    }
                    (1, Some(_), Some(_)) => "last/first: first window grew nothing".into(),
                    _ => String::new(),
                };
                table.row(
                    'e',
                    &format!("{name} per step, {}", label(*window)),
                    value.map_or_else(|| "no /proc".into(), bytes),
                    comparison,
                );
            }
        }
    }
}

fn case_c(table: &mut Table, server: &JsonServer, steps: usize) {
    eprintln!("c. {steps} independent HTTP steps, {PARALLELISM} at a time");
    let runbook = runbook_e2e::fan_runbook(steps, PARALLELISM, "http", |index| {
        bench::capture_step(&server.url, index)
    });
    let daemon = Daemon::start_process(&[("parallel.toml", &runbook)], "");
    let run = observe(&daemon, "parallel", Start::Cli, &[]);
    verify_http(&daemon, server, &run.id, steps);
    let bare = bench::bare_reqwest_parallel(&server.url, steps, PARALLELISM);
    assert_eq!(server.take_hits(), steps);
    let hurl = bench::hurl_parallel(&server.url, steps, PARALLELISM);
    if hurl.is_some() {
        assert_eq!(server.take_hits(), steps);
    }

    let rate = |took: Duration| steps as f64 / took.as_secs_f64();
    let what = format!(
        "{} independent GETs, {PARALLELISM} at a time",
        thousands(steps)
    );
    table.row(
        'c',
        &format!("{what}: runbook"),
        format!("{:.0} steps/s", rate(run.total)),
        format!(
            "goal > 5,000 steps/s: {}",
            if rate(run.total) > 5000.0 {
                "met"
            } else {
                "missed"
            }
        ),
    );
    table.row(
        'c',
        &format!("{what}: bare reqwest"),
        format!("{:.0} steps/s", rate(bare)),
        ratio("runbook/bare", run.total, bare),
    );
    match hurl {
        Some(hurl) => table.row(
            'c',
            &format!("{what}: hurl --test --jobs {PARALLELISM}"),
            format!("{:.0} steps/s", rate(hurl)),
            ratio("runbook/hurl", run.total, hurl),
        ),
        None => table.row(
            'c',
            &format!("{what}: hurl --test --jobs {PARALLELISM}"),
            "-".into(),
            "hurl not found".into(),
        ),
    }
}

fn case_d(table: &mut Table, steps: usize) {
    eprintln!("d. engine overhead: {steps} sequential no-op steps");
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(probe_plugin(), plugins.path().join("probe.wasm")).unwrap();
    let config = format!(
        "plugins_dir = {:?}\n\n[approvals]\nshell = \"auto\"\nprobe = \"auto\"\n",
        plugins.path().display().to_string()
    );
    // Step s0 is the gate (see the top of this file); s1..=steps are measured.
    let runbook = runbook_e2e::chain_runbook_of(steps + 1, |index| {
        if index == 0 {
            ("shell".into(), "{ command = [\"sleep\", \"0.2\"] }".into())
        } else {
            ("probe".into(), "{ mode = \"noop\" }".into())
        }
    });
    let daemon = Daemon::start_process(&[("noops.toml", &runbook)], &config);
    daemon.wait_valid("noops");
    let run = observe(&daemon, "noops", Start::Grpc, &[]);
    verify(&daemon, &run.id, steps + 1);

    let mut times = window_times(&run.completions);
    assert!(!times.is_empty(), "d needs more than {WINDOW} steps");
    times.sort_unstable();
    let median = times[(times.len() - 1) / 2];
    let what = format!(
        "engine per no-op step ({} steps, {WINDOW}-step windows)",
        thousands(steps)
    );
    table.row(
        'd',
        &format!("{what}: median"),
        duration(median),
        format!(
            "goal < {} median: {}",
            duration(OVERHEAD_GOAL),
            if median < OVERHEAD_GOAL {
                "met"
            } else {
                "missed"
            }
        ),
    );
    table.row(
        'd',
        &format!("{what}: worst"),
        duration(*times.last().unwrap()),
        format!("of {} windows", times.len()),
    );
    table.row(
        'd',
        &format!("{what}: mean"),
        duration(run.per_step()),
        String::new(),
    );
}

/// Steps per window in d: long enough that the batching of events at a window's two ends is a
/// small part of its time (one flush releases a batch of about 25 steps' events, so a shorter
/// window may fall inside one batch and read as nearly free), short enough for a spread.
const WINDOW: usize = 200;

/// The per-step time of each window of [`WINDOW`] consecutive steps of a chain, from the
/// arrival times of its completion events (the first being the reference).
fn window_times(arrivals: &[Instant]) -> Vec<Duration> {
    arrivals
        .iter()
        .step_by(WINDOW)
        .zip(arrivals.iter().skip(WINDOW).step_by(WINDOW))
        .map(|(first, last)| (*last - *first) / u32::try_from(WINDOW).unwrap())
        .collect()
}

fn main() {
    let sizes = Sizes::from_env();
    let server = JsonServer::start();
    let mut table = Table::default();
    if sizes.runs('a') {
        case_a(&mut table, &server, sizes.sequential);
    }
    if sizes.runs('b') || sizes.runs('e') {
        cases_b_e(&mut table, &server, &sizes);
    }
    if sizes.runs('c') {
        case_c(&mut table, &server, sizes.parallel);
    }
    if sizes.runs('d') {
        case_d(&mut table, sizes.sequential);
    }
    println!();
    table.print();
}

fn ratio(name: &str, ours: Duration, theirs: Duration) -> String {
    format!("{name} {:.2}x", ours.as_secs_f64() / theirs.as_secs_f64())
}

fn duration(value: Duration) -> String {
    let micros = value.as_secs_f64() * 1e6;
    if micros < 1e3 {
        format!("{micros:.1} µs")
    } else if micros < 1e6 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn bytes(value: f64) -> String {
    if value.abs() < 1024.0 {
        format!("{value:.0} B")
    } else if value.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{:.2} MiB", value / (1024.0 * 1024.0))
    }
}

/// `10000` as `10,000`.
fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

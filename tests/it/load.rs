//! The engine under load and with big outputs: many concurrent runs of short steps while other
//! work keeps the CPUs busy (the daemon once hung for good there, parked on sled's flush),
//! a step that prints far more than its output budget, and a step whose output is larger
//! than the API's default message size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runbook_e2e::Daemon;
use runbook_e2e::http_server::TestServer;

/// Busy loops on every core until dropped: the "other CPU work" of a loaded machine.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn parallel_trues(steps: usize) -> String {
    let mut source = String::from("max_parallel = 8\n");
    for i in 0..steps {
        source.push_str(&format!(
            "[[steps]]\nid = \"t{i}\"\nuses = \"shell\"\nwith = {{ command = [\"true\"] }}\n"
        ));
    }
    source
}

#[test]
fn concurrent_runs_of_short_steps_finish_on_a_loaded_machine() {
    let daemon = Daemon::start(
        &[("trues.toml", &parallel_trues(16))],
        "[approvals]\nshell = \"auto\"\n",
    );
    let _load = CpuLoad::start();
    for round in 0..3 {
        let runs: Vec<String> = (0..8).map(|_| daemon.start_run("trues", &[])).collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        for run in &runs {
            loop {
                // Every call must keep answering while the runs go on.
                let shown = daemon.json(&["show", run]);
                match shown["status"].as_str() {
                    Some("completed") => {
                        let steps = shown["steps"].as_array().unwrap();
                        assert_eq!(steps.len(), 16);
                        assert!(steps.iter().all(|step| step["status"] == "completed"));
                        break;
                    }
                    Some("running" | "pending") => {}
                    other => panic!("round {round}: run {run} ended {other:?}: {shown:#}"),
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: run {run} did not finish: {shown:#}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert!(daemon.cli(&["status"]).status.success());
    }
}

/// Kilobytes of the files under `dir`.
fn size_of(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            size_of(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn a_chatty_step_keeps_the_start_and_the_end_of_its_output_within_its_budget() {
    const BUDGET: u64 = 256 * 1024;
    const PRINTED: u64 = 64 * 1024 * 1024;
    let (daemon, pid) = runbook_e2e::chatty_daemon(PRINTED, BUDGET);
    let data = daemon.data_dir.join("db");
    let before = size_of(if data.exists() {
        &data
    } else {
        &daemon.data_dir
    });
    let shown = daemon.run_to_end("chatty", &[]);
    assert_eq!(shown["status"], "completed", "{shown:#}");

    let logs = daemon.cli(&["logs", shown["id"].as_str().unwrap(), "--step", "yes"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"first"), "the start is kept");
    assert_eq!(lines.last(), Some(&"last"), "the end is kept");
    assert!(
        text.contains("of output omitted"),
        "the middle is replaced by a line saying so"
    );
    assert!(
        (text.len() as u64) < BUDGET + 64 * 1024,
        "stored output {} bytes, budget {BUDGET}",
        text.len()
    );
    let after = size_of(if data.exists() {
        &data
    } else {
        &daemon.data_dir
    });
    let grown = after.saturating_sub(before);
    assert!(
        grown < BUDGET * 4 + 4 * 1024 * 1024,
        "the data directory grew by {grown} bytes for {PRINTED} bytes printed"
    );
    let rss = runbook_e2e::peak_rss_kib(pid);
    eprintln!("the daemon's peak RSS: {rss} KiB");
    assert!(rss < 200 * 1024, "the daemon's peak RSS was {rss} KiB");
}

#[test]
fn a_six_megabyte_output_does_not_break_show_runs_or_watch() {
    let server = TestServer::start();
    let daemon = Daemon::start(
        &[(
            "big.toml",
            &format!(
                "[[steps]]\nid = \"body\"\nuses = \"http\"\n\
                 with = {{ method = \"GET\", url = \"{}/bytes/6000000\" }}\n\
                 [[steps]]\nid = \"after\"\nuses = \"shell\"\nneeds = [\"body\"]\n\
                 with = {{ command = [\"true\"] }}\n",
                server.url()
            ),
        )],
        "[approvals]\nshell = \"auto\"\n",
    );
    let shown = daemon.run_to_end("big", &[]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    let run = shown["id"].as_str().unwrap().to_owned();
    // `show --json` keeps its shape: the whole output is fetched on its own.
    let body = &shown["steps"][0]["output"];
    assert!(
        body.to_string().len() > 6_000_000,
        "show --json carries the whole output"
    );
    for args in [
        vec!["show", run.as_str()],
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["watch", run.as_str()],
    ] {
        let out = daemon.cli(&args);
        assert!(
            out.status.success(),
            "runbook {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Steps that each leave a marker in `markers` once their process runs, then sleep.
fn sleepers(steps: usize, markers: &std::path::Path) -> String {
    let mut source = format!("max_parallel = {steps}\n");
    for i in 0..steps {
        source.push_str(&format!(
            "[[steps]]\nid = \"s{i}\"\nuses = \"shell\"\nwith = {{ command = [\"sh\", \"-c\", \"touch {}/s{i}; exec sleep 600\"] }}\n",
            markers.display()
        ));
    }
    source
}

#[test]
fn steps_holding_every_slot_never_stop_a_save_and_a_step_waits_for_one_only_until_its_deadline() {
    const SLOTS: usize = 256;
    let markers = tempfile::tempdir().unwrap();
    let late = "[[steps]]\nid = \"late\"\nuses = \"shell\"\ntimeout = \"1s\"\nwith = { command = [\"true\"] }\n";
    let daemon = Daemon::start(
        &[
            ("sleepers.toml", &sleepers(SLOTS + 4, markers.path())),
            ("late.toml", late),
        ],
        "[approvals]\nshell = \"auto\"\n",
    );
    let sleeping = daemon.start_run("sleepers", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(markers.path()).unwrap().count() < SLOTS {
        assert!(Instant::now() < deadline, "the sleepers never all started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every step slot is taken, and four more steps wait for one.

    // A new runbook is validated by its plugin: that call has slots of its own.
    std::fs::write(
        daemon.runbooks.join("fresh.toml"),
        late.replace("late", "fresh"),
    )
    .unwrap();
    daemon.wait_valid("fresh");

    // A step whose deadline passes while it waits for a slot times out.
    let done = daemon.run_to_end("late", &[]);
    assert_eq!(
        runbook_e2e::step_status(&done, "late"),
        "timed_out",
        "{done:#}"
    );
    assert_eq!(
        std::fs::read_dir(markers.path()).unwrap().count(),
        SLOTS,
        "no step ran beyond the slots"
    );

    assert!(daemon.cli(&["cancel", &sleeping]).status.success());
    daemon.wait_for(&sleeping, "the cancel", |shown| {
        shown["status"] == "cancelled"
    });
}

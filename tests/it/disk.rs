//! A full disk under the data directory (a real tmpfs of a few MB, mounted as root): new runs
//! and transitions fail with a clear error, `status` says why, nothing stored is lost, and
//! once space is freed runbookd restarts in place by itself and everything recovers by the
//! usual rules.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runbook_e2e::{Daemon, step_status};
use serde_json::Value;

/// How long the daemon gets to show a state it reaches by itself.
const PATIENCE: Duration = Duration::from_secs(30);

/// A tmpfs mounted on a directory, detached again when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it) on `dir`. `Ok(None)` when this
    /// machine cannot (not root, no `mount`, a container without the capability): the caller
    /// skips, except that as root under `CI=true` a failed mount fails the test, so that CI
    /// never passes it without running it.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let root = rustix::process::getuid().is_root();
        let why = if root {
            match std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .output()
            {
                Ok(out) if out.status.success() => return Some(Self(dir.to_owned())),
                Ok(out) => format!(
                    "`mount -t tmpfs` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(err) => format!("cannot run `mount`: {err}"),
            }
        } else {
            "mounting a tmpfs needs root".to_owned()
        };
        assert!(
            !(root && std::env::var("CI").as_deref() == Ok("true")),
            "a tmpfs is needed in CI, as root: {why}"
        );
        eprintln!("skipped: {why}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the daemon may still hold files open on it while the test unwinds.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the filesystem is full (to the last page); returns the
/// error that stopped the big writes.
fn fill(path: &Path) -> std::io::Error {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(err) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            while file.write_all(&chunk[..512]).is_ok() {}
            return err;
        }
    }
}

/// `status --json`, which exits 1 when the daemon says it is not ready.
fn status_json(daemon: &Daemon) -> Value {
    let output = daemon.cli(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected = if status["ready"] == true { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{status:#}");
    status
}

/// `/readyz` of the daemon's metrics listener: its code and body.
fn readyz(daemon: &Daemon) -> (u16, String) {
    let addr = status_json(daemon)["metrics_listen"]
        .as_str()
        .expect("the metrics listener is on")
        .parse()
        .unwrap();
    crate::operations::get(addr, "/readyz").unwrap()
}

/// `status --json`, polled until `done` holds for it.
fn status_until(daemon: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = status_json(daemon);
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn no_space(text: &str) -> bool {
    text.to_lowercase().contains("no space left on device")
}

/// What `show --json` says of a run that must not change: its status and its steps' states
/// and outputs.
fn stored_view(shown: &Value) -> Value {
    let steps: Vec<Value> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| serde_json::json!([step["id"], step["status"], step["output"]]))
        .collect();
    serde_json::json!({ "id": shown["id"], "status": shown["status"], "steps": steps })
}

#[test]
fn a_full_disk_fails_writes_clearly_and_loses_nothing_stored() {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("go");
    let mut daemon = Daemon::prepare(
        &[
            (
                "quick.toml",
                "[[steps]]\nid = \"hello\"\nuses = \"shell\"\n\
                 with = { script = \"echo hello\" }\n",
            ),
            (
                "gated.toml",
                &format!(
                    "[[steps]]\nid = \"wait\"\nuses = \"shell\"\n\
                     with = {{ script = \"while [ ! -e {} ]; do sleep 0.02; done; yes x | head -c 262144\" }}\n\
                     [[steps]]\nid = \"after\"\nuses = \"shell\"\nneeds = [\"wait\"]\n\
                     with = {{ script = \"echo after\" }}\n",
                    gate.display()
                ),
            ),
        ],
        "[approvals]\nshell = \"auto\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let Some(_tmpfs) = Tmpfs::mount(&daemon.data_dir, "4m") else {
        return;
    };
    // `restart` on a prepared daemon is its first start: there is nothing to kill yet.
    daemon.restart();
    let earlier: Vec<Value> = (0..3).map(|_| daemon.run_to_end("quick", &[])).collect();
    for run in &earlier {
        assert_eq!(run["status"], "completed", "{run:#}");
    }
    let gated = daemon.start_run("gated", &[]);
    daemon.wait_for(&gated, "the gated step to run", |shown| {
        step_status(shown, "wait") == "running"
    });

    let filler = daemon.data_dir.join("filler");
    let full = fill(&filler);
    assert_eq!(full.raw_os_error(), Some(28), "filling stopped with {full}");

    // The gated step ends now and prints 256 KiB: more than the disk has room for, so its
    // output and its end cannot be recorded, and sled fails.
    std::fs::write(&gate, "").unwrap();
    let status = status_until(&daemon, "the store's failure in status", |status| {
        !status["store_error"].is_null()
    });
    assert!(
        no_space(status["store_error"]["error"].as_str().unwrap()),
        "{status:#}"
    );
    // It cannot take work, and says so to `status` (exit 1) and to a supervisor (503).
    assert_eq!(status["ready"], false, "{status:#}");
    assert!(
        no_space(status["not_ready"].as_str().unwrap()),
        "{status:#}"
    );
    let (code, body) = readyz(&daemon);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("not ready: the store failed a write") && no_space(&body),
        "{body}"
    );
    // A new run is refused, and says why.
    let refused = daemon.cli(&["run", "quick"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a run started on a full disk");
    assert!(no_space(&stderr), "the refusal says why: {stderr}");
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    // Reads go on.
    let id = earlier[0]["id"].as_str().unwrap();
    assert_eq!(
        stored_view(&daemon.json(&["show", id])),
        stored_view(&earlier[0])
    );
    let text = daemon.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with("store"))
        .unwrap_or_default();
    assert!(
        no_space(line) && line.contains("last write failed") && line.contains("restarts by itself"),
        "status has a store line: {text}"
    );

    // Freeing space is enough: the daemon notices that the directory takes writes again and
    // restarts in place (same pid, `READY=1` once more) to reopen the database.
    let pid = daemon.pid();
    std::fs::remove_file(&filler).unwrap();
    assert!(
        daemon.wait_for_notification("READY=1", PATIENCE),
        "runbookd did not restart in place after space was freed; see {}/logs",
        daemon.data_dir.display()
    );
    assert_eq!(daemon.pid(), pid, "the same process, not a new one");

    let after = status_json(&daemon);
    assert!(after["store_error"].is_null(), "{after:#}");
    assert_eq!(after["ready"], true, "{after:#}");
    assert_eq!(readyz(&daemon), (200, "ready\n".to_owned()));
    for run in &earlier {
        let id = run["id"].as_str().unwrap();
        assert_eq!(
            stored_view(&daemon.json(&["show", id])),
            stored_view(run),
            "run {id} reads back as it was"
        );
    }
    // The gated step's end was never recorded: it had started, so it waits for the operator,
    // and retrying it finishes the run.
    daemon.wait_for(&gated, "the gated step to become ambiguous", |shown| {
        step_status(shown, "wait") == "ambiguous"
    });
    let resolved = daemon.cli(&["resolve", &gated, "wait", "retry"]);
    assert!(resolved.status.success(), "{resolved:?}");
    let ended = daemon.wait_for(&gated, "the gated run to end", |shown| {
        shown["status"] != "running" && shown["status"] != "pending"
    });
    assert_eq!(ended["status"], "completed", "{ended:#}");
    let fresh = daemon.run_to_end("quick", &[]);
    assert_eq!(fresh["status"], "completed", "{fresh:#}");

    // A full disk stops neither the daemon's answers nor its shutdown, which reports that its
    // last flush failed: exit status 1, not a panic (101) or a signal.
    let full = fill(&filler);
    assert_eq!(full.raw_os_error(), Some(28), "filling stopped with {full}");
    // Either its start is refused, or its step's 256 KiB of output fails the database.
    let _ = daemon.cli(&["run", "gated", "--json"]);
    status_until(&daemon, "the store's second failure in status", |status| {
        !status["store_error"].is_null()
    });
    let stopped = daemon.terminate();
    assert_eq!(stopped.code(), Some(1), "runbookd ended with {stopped}");
}

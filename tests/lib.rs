//! End-to-end test support: a real `runbookd` on a temporary socket and data dir, driven
//! through the real `runbook` binary (and, where a test needs the raw event log, the gRPC API).
//!
//! The daemon runs inside the test's process ([`Daemon::start`]), ready the moment the call
//! returns; tests for which the process is the point (kill -9, restarts, the daemon's own log
//! files, its pid) start the real binary with [`Daemon::start_process`], which returns when
//! the binary says `READY=1` on its `$NOTIFY_SOCKET`, as systemd waits for it. Nothing here
//! polls or sleeps to learn that a daemon is up.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod bench;
pub mod graphql_server;
pub mod http_server;
pub mod nats;

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A built binary of this workspace (`runbookd` or `runbook`), next to the test executable's
/// `deps` directory. `cargo test --workspace` builds both, because their crates have
/// integration tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo test --workspace` does)",
        path.display()
    );
    path
}

/// The workspace root, for paths like `runbooks/invalid`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A running daemon with its own directories.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub runbooks: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    /// The socket the spawned binary notifies (`$NOTIFY_SOCKET`), bound anew for each spawn
    /// so that nothing an earlier process sent is read as the new one's.
    notify: Option<UnixDatagram>,
    in_process: Option<InProcess>,
}

impl Daemon {
    /// Starts a daemon in this process serving `runbooks` (file name, content) with `config`
    /// as its config file. It answers from the moment this returns.
    pub fn start(runbooks: &[(&str, &str)], config: &str) -> Self {
        let mut daemon = Self::prepare(runbooks, config);
        daemon.in_process = Some(InProcess::start(daemon.config()));
        daemon
    }

    /// Starts in this process a daemon made with [`Daemon::prepare`] (and whatever the test
    /// then put in its directories); returns once it is ready, as [`Daemon::start`] does.
    pub fn start_prepared(mut self) -> Self {
        self.in_process = Some(InProcess::start(self.config()));
        self
    }

    /// [`Daemon::start`] with the test plugin (`tests/guests/probe`, step kind `probe`) in
    /// the plugins directory from the start.
    pub fn start_with_probe(runbooks: &[(&str, &str)], config: &str) -> Self {
        Self::start_with_test_plugin("probe", runbooks, config)
    }

    /// [`Daemon::start`] with the test plugin `tests/guests/NAME` (step kind `NAME`) in the
    /// plugins directory from the start.
    pub fn start_with_test_plugin(name: &str, runbooks: &[(&str, &str)], config: &str) -> Self {
        Self::start_with_plugin(&test_plugin(name), name, runbooks, config)
    }

    /// [`Daemon::start`] with the component `file` in its plugins directory as `<name>.wasm`.
    pub fn start_with_plugin(
        file: &Path,
        name: &str,
        runbooks: &[(&str, &str)],
        config: &str,
    ) -> Self {
        let mut daemon = Self::prepare(runbooks, config);
        std::fs::create_dir_all(daemon.plugins_dir()).unwrap();
        std::fs::copy(file, daemon.plugins_dir().join(format!("{name}.wasm"))).unwrap();
        daemon.in_process = Some(InProcess::start(daemon.config()));
        daemon
    }

    /// [`Daemon::start`] with the real `runbookd` binary, for tests that kill it, restart it,
    /// read its log files or need its pid.
    pub fn start_process(runbooks: &[(&str, &str)], config: &str) -> Self {
        let mut daemon = Self::prepare(runbooks, config);
        daemon.spawn();
        daemon
    }

    /// The directories and files of a daemon, with nothing running: for a test that starts
    /// `runbookd` itself with [`Daemon::command`].
    pub fn prepare(runbooks: &[(&str, &str)], config: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let runbooks_dir = root.path().join("runbooks");
        std::fs::create_dir_all(&runbooks_dir).unwrap();
        for (name, content) in runbooks {
            std::fs::write(runbooks_dir.join(name), content).unwrap();
        }
        let config_path = root.path().join("runbookd.toml");
        std::fs::write(&config_path, without_shutdown_grace(config)).unwrap();
        Self {
            socket: root.path().join("run").join("runbookd.sock"),
            data_dir: root.path().join("data"),
            runbooks: runbooks_dir,
            config: config_path,
            root,
            child: None,
            notify: None,
            in_process: None,
        }
    }

    /// The configuration the daemon's flags make.
    fn config(&self) -> runbookd::Config {
        runbookd::Config::load(runbookd::config::Overrides {
            data_dir: Some(self.data_dir.clone()),
            runbooks_dir: Some(self.runbooks.clone()),
            socket: Some(self.socket.clone()),
            config_file: Some(self.config.clone()),
            cache_dir: Some(shared_plugin_cache()),
        })
        .unwrap()
    }

    /// The daemon command with this daemon's flags (and no `$NOTIFY_SOCKET`, even when the
    /// tests themselves run under a service manager).
    pub fn command(&self) -> Command {
        let mut command = Command::new(binary("runbookd"));
        command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--runbooks")
            .arg(&self.runbooks)
            .arg("--config")
            .arg(&self.config)
            // Compiling the built-in plugins takes seconds; the test daemons share one cache,
            // as the daemons of one user may.
            .env("RUNBOOK_CACHE_DIR", shared_plugin_cache())
            .env("RUNBOOK_LOG", "info")
            .env_remove("NOTIFY_SOCKET");
        command
    }

    /// Spawns the binary and returns once it has said `READY=1` (after [`Daemon::kill9`], to
    /// start it again on the same directories when the time it was down matters).
    pub fn spawn(&mut self) {
        let path = self.root.path().join("notify.sock");
        // The previous process (if any) is gone: its socket file and queue go with it.
        let _ = std::fs::remove_file(&path);
        let notify = UnixDatagram::bind(&path).unwrap();
        notify.set_nonblocking(true).unwrap();
        let child = self
            .command()
            .env("NOTIFY_SOCKET", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let exited = pidfd(&child);
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if received(&notify)
                .iter()
                .any(|message| message.lines().any(|line| line == "READY=1"))
            {
                break;
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!(
                    "runbookd exited early with {status}; see {}/logs",
                    self.data_dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "runbookd did not say READY=1 within {PATIENCE:?}; see {}/logs",
                self.data_dir.display()
            );
            // Blocks until a datagram arrives or the process ends, whichever comes first.
            wait_readable(&[notify.as_fd(), exited.as_fd()], deadline);
        }
        self.notify = Some(notify);
    }

    /// What the spawned binary has told its service manager since it said `READY=1`, one
    /// datagram each (`"STOPPING=1\n"` once it begins to stop).
    pub fn notifications(&self) -> Vec<String> {
        self.assert_process("notifications");
        self.notify.as_ref().map(received).unwrap_or_default()
    }

    /// Blocks until the spawned binary tells its service manager `line` (`READY=1` again, after
    /// a restart in place), or `patience` passes; returns whether it did. Datagrams before it
    /// are read and dropped.
    pub fn wait_for_notification(&self, line: &str, patience: Duration) -> bool {
        self.assert_process("notifications");
        let notify = self.notify.as_ref().expect("runbookd was spawned");
        let deadline = Instant::now() + patience;
        loop {
            if received(notify)
                .iter()
                .any(|message| message.lines().any(|got| got == line))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            wait_readable(&[notify.as_fd()], deadline);
        }
    }

    /// Sends SIGTERM, as a service manager stops the daemon, and waits until it has exited.
    pub fn terminate(&mut self) -> ExitStatus {
        self.assert_process("a SIGTERM");
        let child = self.child.as_ref().expect("runbookd was started");
        let pid = rustix::process::Pid::from_child(child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.wait_exit()
    }

    /// Waits until the daemon's process has exited (after `runbook daemon stop`, say).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.assert_process("an exit");
        let child = self.child.as_mut().expect("runbookd was started");
        assert!(
            exited_within(child, PATIENCE),
            "runbookd did not exit within {PATIENCE:?}"
        );
        child.wait().unwrap()
    }

    /// The daemon's process id, for what only the kernel knows of it (`/proc/PID/io`).
    pub fn pid(&self) -> Option<u32> {
        self.assert_process("a pid");
        self.child.as_ref().map(Child::id)
    }

    fn assert_process(&self, what: &str) {
        assert!(
            self.in_process.is_none(),
            "{what} needs the daemon in its own process: start it with Daemon::start_process"
        );
    }

    /// SIGKILL: no cleanup at all, as in a crash.
    pub fn kill9(&mut self) {
        self.assert_process("kill -9");
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the daemon again on the same directories.
    pub fn restart(&mut self) {
        self.assert_process("a restart");
        self.kill9();
        self.spawn();
    }

    /// Runs `runbook` against this daemon (never autostarting another).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().unwrap()
    }

    /// Stores secret `name` with `value` as an operator would (`runbook secret set`, the
    /// value on stdin).
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut set = self
            .cli_command(&["secret", "set", name])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut set.stdin.take().unwrap(), value.as_bytes()).unwrap();
        assert!(set.wait().unwrap().success());
    }

    /// The `runbook` command for this daemon, to spawn in the background.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("runbook"));
        command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--no-autostart")
            .args(args);
        command
    }

    /// Runs `runbook ARGS --json`, expects success and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.cli(&all);
        assert!(
            output.status.success(),
            "runbook {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Waits until runbook `name` is listed as valid: one saved after the daemon started (or
    /// whose plugin was dropped in then) is loaded by the watcher a moment later. It polls a
    /// state, not readiness: what the directories held at start is loaded before the daemon
    /// is ready, so for those the first look answers.
    pub fn wait_valid(&self, name: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let listed = self.json(&["ls"]);
            let valid = listed.as_array().is_some_and(|runbooks| {
                runbooks
                    .iter()
                    .any(|runbook| runbook["name"] == name && runbook["valid"] == true)
            });
            if valid {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "runbook {name} never became valid: {listed:#}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts a run and returns its id.
    pub fn start_run(&self, runbook: &str, params: &[&str]) -> String {
        let mut args = vec!["run", runbook];
        for param in params {
            args.extend(["-p", param]);
        }
        self.json(&args)["id"].as_str().unwrap().to_owned()
    }

    /// Polls `show RUN --json` until `done` holds for it, and returns it.
    pub fn wait_for(&self, run: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let shown = self.json(&["show", run]);
            if done(&shown) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last state: {shown:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a run and waits until it ends; returns its final `show --json`.
    pub fn run_to_end(&self, runbook: &str, params: &[&str]) -> Value {
        let run = self.start_run(runbook, params);
        self.wait_for(&run, "the run to end", |shown| {
            matches!(
                shown["status"].as_str(),
                Some("completed" | "failed" | "cancelled" | "timed_out")
            )
        })
    }

    /// A gRPC client of this daemon, for what the CLI does not show (sources, streams).
    pub async fn client(
        &self,
    ) -> runbook_protocol::v1::runbook_client::RunbookClient<tonic::transport::Channel> {
        let channel = runbook_protocol::connect(&self.socket).await.unwrap();
        runbook_protocol::v1::runbook_client::RunbookClient::new(channel)
    }

    /// The daemon's plugins directory (the default one, inside its data dir).
    pub fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }

    /// Every stored event of a run, as JSON-ish debug strings, read through `WatchRun`.
    pub fn events(&self, run: &str) -> Vec<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let channel = runbook_protocol::connect(&self.socket).await.unwrap();
            let mut client = runbook_protocol::v1::runbook_client::RunbookClient::new(channel);
            let last = client
                .get_run(runbook_protocol::v1::GetRunRequest { id: run.to_owned() })
                .await
                .unwrap()
                .into_inner()
                .last_seq;
            let mut stream = client
                .watch_run(runbook_protocol::v1::WatchRunRequest {
                    id: run.to_owned(),
                    after_seq: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let mut events = Vec::new();
            while events.len() < usize::try_from(last).unwrap() {
                let event = stream.message().await.unwrap().unwrap();
                assert_eq!(
                    event.seq,
                    events.len() as u64 + 1,
                    "sequence numbers have a gap"
                );
                events.push(format!("{:?}", event.kind));
            }
            events
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // A child already reaped (stopped, or waited for by the test) has a pid that may
            // belong to another process by now: it gets no signal.
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            // SIGTERM first so the daemon removes its socket, as a user's `daemon stop` would.
            let pid = rustix::process::Pid::from_child(child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if !exited_within(child, Duration::from_secs(10)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A descriptor that becomes readable when `child` exits (Linux's pidfd), to wait for that
/// alongside other descriptors instead of polling `try_wait`.
fn pidfd(child: &Child) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_child(child),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap()
}

/// Whether `child` exits (or had exited) within `patience`.
fn exited_within(child: &mut Child, patience: Duration) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return true;
    }
    // A child already reaped has no pidfd to open; `try_wait` answered for it above.
    let Ok(exited) = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(child),
        rustix::process::PidfdFlags::empty(),
    ) else {
        return true;
    };
    wait_readable(&[exited.as_fd()], Instant::now() + patience);
    child.try_wait().ok().flatten().is_some()
}

/// Blocks until one of `fds` has input (a datagram, a process's exit) or `deadline` passes.
fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Instant) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).unwrap();
        match rustix::event::poll(&mut polled, Some(&timeout)) {
            Err(rustix::io::Errno::INTR) => continue,
            result => {
                result.unwrap();
                return;
            }
        }
    }
}

/// Every datagram waiting on `socket` (non-blocking), as text.
fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match socket.recv(&mut buffer) {
            Ok(length) => messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned()),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return messages,
            Err(err) => panic!("cannot read the notify socket: {err}"),
        }
    }
}

/// A daemon on its own runtime and thread inside the test's process.
struct InProcess {
    shutdown: tokio_util::sync::CancellationToken,
    /// Disconnects when the daemon's thread ends.
    ended: std::sync::mpsc::Receiver<()>,
}

impl InProcess {
    /// Binds the socket, runs the daemon ([`runbookd::run_on`]) and returns once it is ready;
    /// it then serves until dropped.
    fn start(config: runbookd::Config) -> Self {
        let shutdown = tokio_util::sync::CancellationToken::new();
        // Unbounded: an error after ready must not block on a receiver that is gone.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let token = shutdown.clone();
        let (ending, ended) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("runbookd".into())
            .spawn(move || {
                let _ending = ending;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("runbookd-worker")
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (listener, _lock) = match runbookd::server::bind(&config.socket).await {
                        Ok(bound) => bound,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err.to_string()));
                            return;
                        }
                    };
                    // The same `run_on` as the binary's: `ready` is where it says `READY=1`.
                    let ready = ready_tx.clone();
                    let result = runbookd::run_on(listener, config, token, move || {
                        let _ = ready.send(Ok(()));
                    })
                    .await;
                    if let Ok(runbookd::Exit::Reopen) = result {
                        eprintln!(
                            "runbookd (in the test process) stopped to reopen its database: only the binary restarts in place"
                        );
                    }
                    if let Err(err) = result {
                        // Before ready, `start` panics with it; after, stderr is all there is.
                        eprintln!("runbookd (in the test process) failed: {err:#}");
                        let _ = ready_tx.send(Err(format!("{err:#}")));
                    }
                });
                // Steps still running (a shell step's child) end with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .unwrap();
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("runbookd did not start: {err}"),
            Err(_) => panic!("runbookd's thread ended before it was open"),
        }
        Self { shutdown, ended }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // A daemon that does not stop in time is left behind rather than hang the suite.
        let _ = self.ended.recv_timeout(Duration::from_secs(15));
    }
}

/// `config` with `[limits] shutdown_grace = "0s"` unless it sets a grace itself: a test's
/// daemon that is dropped with steps still running stops at once, as after a crash, instead
/// of waiting the default grace period for them.
fn without_shutdown_grace(config: &str) -> String {
    const ZERO: &str = "shutdown_grace = \"0s\"\n";
    if config.contains("shutdown_grace") {
        return config.to_owned();
    }
    match config.find("[limits]\n") {
        Some(at) => {
            let after = at + "[limits]\n".len();
            format!("{}{ZERO}{}", &config[..after], &config[after..])
        }
        None => format!("{config}\n[limits]\n{ZERO}"),
    }
}

/// Starts the real `runbookd` with `config` as its config file, in a fresh data directory,
/// and asserts that it refuses to start (and never opens its socket); returns its stderr.
pub fn refused_config(config: &str) -> String {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("config.toml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(binary("runbookd"))
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .arg("--socket")
        .arg(root.path().join("runbookd.sock"))
        .output()
        .unwrap();
    assert!(!output.status.success(), "it started with {config}");
    assert!(!root.path().join("runbookd.sock").exists());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether something a test needs from the machine (a database server, tmux) is here: `found`
/// says why not. When it is missing the test fails under `CI=true` (`.ci/run` installs or
/// expects all of them), and elsewhere says on stderr that it is skipped; the caller returns.
pub fn required_here(what: &str, found: Result<(), String>) -> bool {
    match found {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} is needed in CI: {why}"
            );
            eprintln!("skipped: {what} is not here: {why}");
            false
        }
    }
}

/// The compiled-plugin cache every test daemon uses, beside the binaries.
pub fn shared_plugin_cache() -> PathBuf {
    binary("runbookd")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("e2e-plugin-cache")
}

/// The built-in plugins as a daemon without a config file loads them (its limits and HTTP
/// settings), compiled into the shared cache: for the runbook loader without a daemon.
pub async fn builtin_plugins() -> runbookd::plugins::PluginHost {
    // Only the limits and HTTP settings are used: nothing is created in these directories.
    let unused = tempfile::tempdir().unwrap();
    let config = runbookd::Config::load(runbookd::config::Overrides {
        data_dir: Some(unused.path().to_owned()),
        socket: Some(unused.path().join("runbookd.sock")),
        cache_dir: Some(shared_plugin_cache()),
        ..Default::default()
    })
    .unwrap();
    runbookd::plugins::PluginHost::new(
        config.limits,
        &config.cache_dir,
        config.http,
        runbookd::plugins::Grants::new(config.plugin_grants),
        runbookd::plugins::BUILTIN_PLUGINS,
        runbookd::plugins::call_metrics(runbookd::metrics::Metrics::default()),
    )
    .await
    .unwrap()
}

/// Runs `future` to completion on a fresh single-threaded runtime.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The test plugin component `tests/guests/probe`, built by the daemon's build script.
pub fn probe_plugin() -> PathBuf {
    test_plugin("probe")
}

/// The component of test plugin `tests/guests/NAME`, built by the daemon's build script.
pub fn test_plugin(name: &str) -> PathBuf {
    let target = binary("runbookd")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let path = target.join(format!(
        "wasm-plugins/wasm32-wasip2/release/runbook_{name}_plugin.wasm"
    ));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// Polls `check` every 25 ms until it holds, failing after [`PATIENCE`] with `what`.
pub fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Writes `content` to `path` the way many editors save: a temporary file renamed over it.
pub fn save_by_rename(path: &Path, content: &str) {
    let temp = path.with_extension("toml.tmp~");
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The status label of step `id` in a run's JSON.
pub fn step_status(run: &Value, id: &str) -> String {
    step(run, id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Step `id` of a run's JSON.
pub fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["id"] == id))
        .unwrap_or_else(|| panic!("run has no step {id}: {run:#}"))
}

/// A runbook of `steps` steps of kind `uses`, each needing the one before, one at a time;
/// `with(index)` is the inline table of step `index`'s `with`. The benches' long runs.
pub fn chain_runbook(steps: usize, uses: &str, with: impl Fn(usize) -> String) -> String {
    chain_runbook_of(steps, |index| (uses.to_owned(), with(index)))
}

/// [`chain_runbook`] with a kind per step: `step(index)` is step `index`'s `uses` and `with`.
pub fn chain_runbook_of(steps: usize, step: impl Fn(usize) -> (String, String)) -> String {
    let mut text = String::from("max_parallel = 1\n");
    for index in 0..steps {
        let needs = if index == 0 {
            String::new()
        } else {
            format!("needs = [\"s{}\"]\n", index - 1)
        };
        let (uses, with) = step(index);
        text.push_str(&format!(
            "\n[[steps]]\nid = \"s{index}\"\nuses = \"{uses}\"\n{needs}with = {with}\n"
        ));
    }
    text
}

/// A runbook of `steps` steps of kind `uses` that need nothing of each other, up to
/// `max_parallel` at a time; `with(index)` is the inline table of step `index`'s `with`.
pub fn fan_runbook(
    steps: usize,
    max_parallel: usize,
    uses: &str,
    with: impl Fn(usize) -> String,
) -> String {
    let mut text = format!("max_parallel = {max_parallel}\n");
    for index in 0..steps {
        text.push_str(&format!(
            "\n[[steps]]\nid = \"s{index}\"\nuses = \"{uses}\"\nwith = {}\n",
            with(index)
        ));
    }
    text
}

/// The peak resident memory of process `pid`, in KiB, since it started or since the last
/// [`reset_peak_rss`] (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts a new peak for [`peak_rss_kib`] at the process's present size (Linux's
/// `clear_refs` with 5), so that what came before (compiling plugins into a cold cache, say)
/// is not counted against what a test measures next.
pub fn reset_peak_rss(pid: u64) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Compiles the built-in plugins into the shared cache unless they are already there, so
/// that a daemon started next loads them compiled: for tests of the daemon's memory, which a
/// daemon that compiles its plugins at start (some hundreds of MB in a debug build, not all
/// given back) would swamp.
pub fn warm_plugin_cache() {
    block_on(async { drop(builtin_plugins().await) });
}

/// A daemon process whose runbook `chatty` has one shell step `yes` that prints `first`,
/// `printed` bytes of `y` lines and `last`, with `budget` bytes of output stored per attempt;
/// the plugin cache is warm and the daemon's peak memory starts at its start (see
/// [`reset_peak_rss`]). Returns the daemon and its pid.
pub fn chatty_daemon(printed: u64, budget: u64) -> (Daemon, u64) {
    warm_plugin_cache();
    let daemon = Daemon::start_process(
        &[(
            "chatty.toml",
            &format!(
                "[[steps]]\nid = \"yes\"\nuses = \"shell\"\n\
                 with = {{ script = \"echo first; yes | head -c {printed}; echo; echo last\" }}\n"
            ),
        )],
        &format!("[approvals]\nshell = \"auto\"\n[limits]\nstep_output_bytes = {budget}\n"),
    );
    let pid = daemon.json(&["status"])["pid"].as_u64().unwrap();
    // What the start needed (compiling the plugins into a cold cache) is not the step's.
    reset_peak_rss(pid);
    (daemon, pid)
}

//! Finding the daemon: connecting to its socket, starting `runbookd` in the background when none
//! answers, and waiting for it to stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use runbook_protocol::v1::runbook_client::RunbookClient;
use runbook_protocol::v1::{StatusRequest, StatusResponse};
use tonic::transport::Channel;

use crate::error::{self, Failure};

/// A client of the daemon's API over its socket.
pub type Client = RunbookClient<Channel>;

/// How often to knock while waiting for a daemon to come up or go away.
const POLL: Duration = Duration::from_millis(50);
/// How long a daemon may take to answer after it was started, or to stop after `Shutdown`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connect + `Status` may take before the daemon counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the daemon is, and how to start one there if none answers.
#[derive(Debug, Clone)]
pub struct Target {
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// Start `runbookd` when nothing answers on the socket.
    pub autostart: bool,
    /// Passed to an autostarted daemon as `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// Passed to an autostarted daemon as `--runbooks`.
    pub runbooks: Option<PathBuf>,
}

impl Target {
    /// Connects to the daemon, starting one first when none answers and autostart is on.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(self.connect_or_start().await?.0)
    }

    /// Connects, starting a daemon when allowed; also returns the daemon's status.
    pub async fn connect_or_start(&self) -> anyhow::Result<(Client, StatusResponse)> {
        let found = match probe(&self.socket).await {
            Ok(found) => found,
            Err(err) if self.autostart => self.start(&err).await?,
            Err(err) => return Err(self.unreachable(&err).into()),
        };
        warn_on_protocol_mismatch(&found.1);
        Ok(found)
    }

    /// Connects without ever starting a daemon.
    pub async fn connect_only(&self) -> anyhow::Result<(Client, StatusResponse)> {
        let found = probe(&self.socket)
            .await
            .map_err(|err| self.unreachable(&err))?;
        warn_on_protocol_mismatch(&found.1);
        Ok(found)
    }

    fn unreachable(&self, err: &str) -> Failure {
        Failure::Unreachable(format!(
            "cannot reach runbookd at {}: {err}; start it with `runbook daemon start`",
            self.socket.display()
        ))
    }

    /// Starts `runbookd` on our socket, detached, and waits until it answers.
    async fn start(&self, connect_err: &str) -> anyhow::Result<(Client, StatusResponse)> {
        let Some(program) = find_runbookd() else {
            return Err(Failure::Unreachable(format!(
                "cannot reach runbookd at {}: {connect_err}; and no `runbookd` was found beside \
                 this executable or on PATH to start one",
                self.socket.display()
            ))
            .into());
        };
        // Absolute paths: the daemon outlives this shell and should not depend on its cwd.
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut command = std::process::Command::new(&program);
        command.arg("--socket").arg(absolute(&self.socket));
        if let Some(dir) = &self.data_dir {
            command.arg("--data-dir").arg(absolute(dir));
        }
        if let Some(dir) = &self.runbooks {
            command.arg("--runbooks").arg(absolute(dir));
        }
        // A client run inside a service manager's unit must not make the daemon it starts
        // report readiness to that unit's manager.
        command.env_remove("NOTIFY_SOCKET");
        // Its own process group, so that Ctrl-C in this terminal does not stop the daemon
        // along with the client; no inherited stdio, so it never writes over a TUI.
        use std::os::unix::process::CommandExt;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command.spawn().map_err(|err| {
            Failure::Unreachable(format!("cannot start {}: {err}", program.display()))
        })?;

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(found) = probe(&self.socket).await {
                return Ok(found);
            }
            if let Ok(Some(exit)) = child.try_wait() {
                // Several clients may start a daemon at once: the one that lost the socket's
                // lock exits once the winner answers, so look once more before failing.
                if let Ok(found) = probe(&self.socket).await {
                    return Ok(found);
                }
                return Err(Failure::Unreachable(format!(
                    "runbookd exited ({exit}) before it answered on {}; see the daemon log in {}",
                    self.socket.display(),
                    self.log_dir()
                ))
                .into());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Unreachable(format!(
                    "started runbookd (pid {}) but it did not answer on {} within {}s; see the \
                     daemon log in {}",
                    child.id(),
                    self.socket.display(),
                    START_TIMEOUT.as_secs(),
                    self.log_dir()
                ))
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where the daemon writes its log, for error messages.
    fn log_dir(&self) -> String {
        let data = self
            .data_dir
            .clone()
            .or_else(|| runbook_protocol::default_data_dir().ok());
        match data {
            Some(dir) => dir.join("logs").display().to_string() + "/",
            None => "<data dir>/logs/".to_owned(),
        }
    }

    /// Waits until nothing answers on the socket any more.
    pub async fn wait_until_gone(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while probe(&self.socket).await.is_ok() {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "runbookd still answers on {} after {}s",
                    self.socket.display(),
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// [`Target::wait_until_gone`], then waits for process `pid` to end too: a stopping
    /// daemon stops answering at once, then gives its running steps up to `grace` to end.
    /// Returns whether the process ended in that time.
    pub async fn wait_until_stopped(&self, pid: u32, grace: Duration) -> anyhow::Result<bool> {
        self.wait_until_gone().await?;
        let deadline = Instant::now() + START_TIMEOUT + grace;
        while !process_gone(pid) {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(true)
    }

    /// Connects again after a broken stream, retrying for `patience` without starting a
    /// daemon: a daemon that restarts comes back on the same socket.
    pub async fn reconnect(&self, patience: Duration) -> anyhow::Result<Client> {
        let deadline = Instant::now() + patience;
        loop {
            match probe(&self.socket).await {
                Ok((client, _)) => return Ok(client),
                Err(err) if Instant::now() >= deadline => {
                    return Err(Failure::Unreachable(format!(
                        "lost runbookd at {} and it did not come back within {}s: {err}",
                        self.socket.display(),
                        patience.as_secs()
                    ))
                    .into());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Connects and asks for the status: a socket file alone does not prove a daemon is serving.
/// Bounded in time, so that a hung daemon counts as absent instead of hanging the client.
pub async fn probe(socket: &Path) -> Result<(Client, StatusResponse), String> {
    let attempt = async {
        let channel = runbook_protocol::connect(socket)
            .await
            .map_err(|err| error::chain(&err))?;
        let mut client = RunbookClient::new(channel)
            .max_decoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES);
        let status = client
            .status(StatusRequest {})
            .await
            .map_err(|status| error::status_message(&status))?
            .into_inner();
        Ok((client, status))
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())))
}

/// Warns (without failing) when the daemon speaks another protocol version: most calls may
/// still work, and the user should know why the others do not.
fn warn_on_protocol_mismatch(status: &StatusResponse) {
    if status.protocol_version != runbook_protocol::PROTOCOL_VERSION {
        eprintln!(
            "warning: runbookd speaks protocol {} but this client speaks {}; upgrade the older one",
            status.protocol_version,
            runbook_protocol::PROTOCOL_VERSION
        );
    }
}

/// `runbookd` beside our own executable (a cargo build or an install put them together), else
/// the first executable `runbookd` on PATH.
fn find_runbookd() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("runbookd"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("runbookd"));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The default socket when neither `--socket` nor `RUNBOOK_SOCKET` names one.
/// `data_dir` is `--data-dir`, so that a client finds the daemon it would start there.
pub fn default_socket(data_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    runbook_protocol::default_socket_path(data_dir).context("choosing the daemon socket")
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

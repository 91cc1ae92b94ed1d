//! A `nats-server -js` of a test's own, on a free loopback port with its JetStream store in a
//! temporary directory, so that a test can stop and start it (Debian's `nats-server`; `.ci/run`
//! installs it). And a publisher of completion messages through async-nats.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`, stopped when dropped.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    /// Further arguments of every start (TLS, say).
    extra: Vec<String>,
    child: Option<Child>,
}

/// Where the binary is: `RUNBOOK_TEST_NATS_SERVER`, or `nats-server` on the PATH (or in
/// /usr/sbin, where Debian puts it).
fn binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("RUNBOOK_TEST_NATS_SERVER") {
        return Ok(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "no nats-server binary (Debian package `nats-server`)".to_owned())
}

impl NatsServer {
    /// Starts one, or says why it cannot (for [`crate::required_here`]).
    pub fn start() -> Result<Self, String> {
        Self::start_with(&[])
    }

    /// Starts one with further command-line arguments.
    pub fn start_with(extra: &[&str]) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| err.to_string())?
            .port();
        let mut server = Self {
            port,
            store: tempfile::tempdir().map_err(|err| err.to_string())?,
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
            child: None,
        };
        server.resume()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its JetStream data: every stream's messages, on disk.
    pub fn store_dir(&self) -> &std::path::Path {
        self.store.path()
    }

    /// Stops it at once (kill -9); its streams stay in its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store, and waits until it accepts connections.
    pub fn resume(&mut self) -> Result<(), String> {
        let child = Command::new(binary()?)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(store_dir(self.store.path()))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start nats-server: {err}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server did not listen on {} within 20 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Publishes `payload` to JetStream subject `subject`, creating the stream of that name
    /// (subject = name, as runbookd makes it) if it is missing; returns once JetStream has it.
    pub fn publish(&self, stream: &str, payload: &serde_json::Value) {
        let url = self.url();
        let stream = stream.to_owned();
        let payload = serde_json::to_vec(payload).unwrap();
        crate::block_on(async move {
            let client = async_nats::connect(url).await.unwrap();
            let jetstream = async_nats::jetstream::new(client);
            jetstream
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![stream.clone()],
                    ..Default::default()
                })
                .await
                .unwrap();
            jetstream
                .publish(stream, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
    }
}

fn store_dir(root: &Path) -> PathBuf {
    root.join("jetstream")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

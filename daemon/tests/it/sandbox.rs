//! Runaway plugins: a guest that loops forever or allocates without bound is stopped at its
//! limit and fails its step, while the daemon keeps answering.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runbook_protocol::v1::runbook_client::RunbookClient;
use runbook_protocol::v1::{self as pb, RunStatus, StepStatus};
use tonic::transport::Channel;

const PROBE_RUNBOOK: &str = r#"
[params]
mode = { type = "string", allowed = ["noop", "spin", "alloc", "trap"] }

[[steps]]
id = "probe"
uses = "probe"
with = { mode = "{{ params.mode }}" }
"#;

struct Daemon {
    _root: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn probe_wasm() -> PathBuf {
    Path::new(env!("RUNBOOKD_GUEST_DIR")).join("runbook_probe_plugin.wasm")
}

async fn start_daemon() -> (Daemon, RunbookClient<Channel>) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("plugins")).unwrap();
    std::fs::copy(probe_wasm(), data.join("plugins").join("probe.wasm")).unwrap();
    std::fs::create_dir_all(root.path().join("runbooks")).unwrap();
    std::fs::write(root.path().join("runbooks/probe.toml"), PROBE_RUNBOOK).unwrap();
    let config = root.path().join("runbookd.toml");
    std::fs::write(
        &config,
        "[limits]\nplugin_cpu = \"2s\"\nplugin_memory_mib = 32\n",
    )
    .unwrap();
    let socket = root.path().join("run/runbookd.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_runbookd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(&data)
        .arg("--runbooks")
        .arg(root.path().join("runbooks"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(channel) = runbook_protocol::connect(&socket).await {
            let mut client = RunbookClient::new(channel);
            if client.status(pb::StatusRequest {}).await.is_ok() {
                break client;
            }
        }
        assert!(Instant::now() < deadline, "runbookd did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (
        Daemon {
            _root: root,
            socket,
            child,
        },
        client,
    )
}

async fn start(client: &mut RunbookClient<Channel>, mode: &str) -> String {
    let request = pb::StartRunRequest {
        runbook: "probe".into(),
        params: [("mode".to_owned(), mode.to_owned())].into(),
        dry_run: false,
    };
    client.start_run(request).await.unwrap().into_inner().id
}

async fn wait_until_ended(client: &mut RunbookClient<Channel>, id: &str) -> pb::Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = client
            .get_run(pb::GetRunRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if run.status().is_terminal() {
            return run;
        }
        assert!(Instant::now() < deadline, "run did not end: {run:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_the_cpu_budget_and_the_daemon_keeps_answering() {
    let (daemon, mut client) = start_daemon().await;
    let id = start(&mut client, "spin").await;
    // Wait until the guest is spinning, then prove the daemon still answers meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = client
            .get_run(pb::GetRunRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        if run.steps[0].status() == StepStatus::Running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe never started: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.plugins.contains(&"probe".to_owned()));
    let run_while_spinning = client
        .get_run(pb::GetRunRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        run_while_spinning.steps[0].status(),
        StepStatus::Running,
        "Status answered while the guest was still looping"
    );

    let run = wait_until_ended(&mut client, &id).await;
    assert_eq!(run.status(), RunStatus::Failed);
    assert_eq!(run.steps[0].status(), StepStatus::Failed);
    assert!(
        run.steps[0].error.contains("CPU budget"),
        "{}",
        run.steps[0].error
    );

    let noop = start(&mut client, "noop").await;
    assert_eq!(
        wait_until_ended(&mut client, &noop).await.status(),
        RunStatus::Completed,
        "the daemon still runs steps"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_memory_cap() {
    let (daemon, mut client) = start_daemon().await;
    let id = start(&mut client, "alloc").await;
    let run = wait_until_ended(&mut client, &id).await;
    assert_eq!(run.steps[0].status(), StepStatus::Failed);
    assert!(
        run.steps[0].error.contains("memory limit of 32 MiB"),
        "{}",
        run.steps[0].error
    );
    client.status(pb::StatusRequest {}).await.unwrap();
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_fails_its_step_only() {
    let (daemon, mut client) = start_daemon().await;
    let id = start(&mut client, "trap").await;
    let run = wait_until_ended(&mut client, &id).await;
    assert_eq!(run.steps[0].status(), StepStatus::Failed);
    assert!(
        run.steps[0].error.contains("crashed"),
        "{}",
        run.steps[0].error
    );
    client.status(pb::StatusRequest {}).await.unwrap();
    assert!(daemon.socket.exists());
}

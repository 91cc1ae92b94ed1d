//! Runaway plugins: a guest that loops forever or allocates without bound is stopped at its
//! limit and fails its step, while the daemon keeps answering.

use std::time::{Duration, Instant};

use runbook_e2e::Daemon;
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

async fn start_daemon() -> (Daemon, RunbookClient<Channel>) {
    let daemon = Daemon::start_with_probe(
        &[("probe.toml", PROBE_RUNBOOK)],
        "[limits]\nplugin_cpu = \"2s\"\nplugin_memory_mib = 32\n",
    );
    let client = daemon.client().await;
    (daemon, client)
}

async fn start(client: &mut RunbookClient<Channel>, mode: &str) -> String {
    let request = pb::StartRunRequest {
        runbook: "probe".into(),
        params: [("mode".to_owned(), mode.to_owned())].into(),
        ..Default::default()
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

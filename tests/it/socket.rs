//! The socket's safety rules: private directory and socket, refusal of an unsafe directory,
//! replacement of a stale socket, refusal of a second daemon on a live one.

use std::os::unix::fs::PermissionsExt as _;

use runbook_e2e::Daemon;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_and_its_directory_are_private() {
    let daemon = Daemon::start(&[], "");
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700);
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    let daemon = Daemon::start(&[], "");
    let second = daemon.command().output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    assert!(
        daemon.cli(&["status"]).status.success(),
        "the first daemon keeps serving"
    );
}

#[test]
fn a_directory_open_to_others_is_refused() {
    let daemon = Daemon::start(&[], "");
    let open_dir = daemon.root.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::process::Command::new(runbook_e2e::binary("runbookd"))
        .arg("--socket")
        .arg(open_dir.join("runbookd.sock"))
        .arg("--data-dir")
        .arg(daemon.root.path().join("other-data"))
        .arg("--runbooks")
        .arg(&daemon.runbooks)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing socket directory") && stderr.contains("755"),
        "{stderr}"
    );
    assert!(!open_dir.join("runbookd.sock").exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let mut daemon = Daemon::start_process(&[], "");
    // kill -9 leaves the socket file behind with nobody listening.
    daemon.kill9();
    assert!(daemon.socket.exists());
    daemon.restart();
    assert!(daemon.cli(&["status"]).status.success());
}

#[test]
fn server_reflection_lists_the_api_for_generic_grpc_tools() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let daemon = Daemon::start(&[], "");
    let services = runbook_e2e::block_on(async {
        let channel = runbook_protocol::connect(&daemon.socket).await.unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect::<Vec<_>>(),
            other => panic!("unexpected reply {other:?}"),
        }
    });
    assert!(
        services.iter().any(|name| name == "runbook.v1.Runbook"),
        "{services:?}"
    );
}

/// `runbookd` processes serving `socket`.
fn daemons_on(socket: &std::path::Path) -> usize {
    let wanted = socket.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
            args.first()
                .is_some_and(|program| program.ends_with(b"runbookd"))
                && args.contains(&wanted)
        })
        .count()
}

#[test]
fn concurrent_auto_starts_after_kill_9_leave_exactly_one_daemon() {
    let mut daemon = Daemon::start_process(&[], "");
    daemon.kill9();
    assert!(daemon.socket.exists(), "kill -9 leaves a stale socket");
    let clients: Vec<std::process::Child> = (0..10)
        .map(|_| {
            std::process::Command::new(runbook_e2e::binary("runbook"))
                .arg("--socket")
                .arg(&daemon.socket)
                .arg("--data-dir")
                .arg(&daemon.data_dir)
                .arg("--runbooks")
                .arg(&daemon.runbooks)
                .arg("status")
                .env("RUNBOOK_CACHE_DIR", runbook_e2e::shared_plugin_cache())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<String> = clients
        .into_iter()
        .map(|client| {
            let output = client.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
                .lines()
                .next()
                .and_then(|line| line.rsplit("pid ").next())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        pids.iter().all(|pid| *pid == pids[0]),
        "every client reached the same daemon: {pids:?}"
    );
    // Losers exit once the winner answers; give them that moment.
    let deadline = std::time::Instant::now() + runbook_e2e::PATIENCE;
    while daemons_on(&daemon.socket) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "more than one daemon stayed up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(daemons_on(&daemon.socket), 1);
    assert!(daemon.cli(&["daemon", "stop"]).status.success());
}

//! Queue-driven async completion on NATS JetStream (`[cluster]`): a step with `wait = { queue
//! = ... }` ends when a completion message for its invocation arrives, never polling; a
//! message that arrives before the step waits, or while the daemon is down, or across a NATS
//! restart, still ends it; a missing one times out; an unknown one is dropped after its hold.
//! Each test runs its own `nats-server -js`.

use runbook_e2e::http_server::TestServer;
use runbook_e2e::nats::NatsServer;
use runbook_e2e::{Daemon, eventually, required_here, step, step_status};
use serde_json::json;
use std::os::unix::fs::PermissionsExt as _;

const STREAM: &str = "INVOCATION_COMPLETED_TASKS";

/// `nats-server` of the test's own, or `None` (skipped) where the machine has none.
fn nats() -> Option<NatsServer> {
    nats_with(&[])
}

fn nats_with(extra: &[&str]) -> Option<NatsServer> {
    let server = NatsServer::start_with(extra);
    let found = server.as_ref().map(drop).map_err(Clone::clone);
    required_here("nats-server", found).then(|| server.unwrap())
}

/// A job started with a 202 whose completion comes on the queue, and a step that reads it.
fn job_runbook(server: &TestServer, timeout: &str) -> String {
    r#"
[[steps]]
id = "job"
uses = "http"
with.method = "POST"
with.url = "{url}/jobs?outcome=never"
with.async = { timeout = "{timeout}" }
wait = { queue = "INVOCATION_COMPLETED_TASKS" }

[[steps]]
id = "after"
uses = "http"
needs = ["job"]
with = { url = "{url}/echo/after?value={{ steps.job.output.value }}" }
"#
    .replace("{url}", &server.url())
    .replace("{timeout}", timeout)
}

fn cluster_config(nats: &NatsServer, extra: &str) -> String {
    format!("[cluster]\nnats = \"{}\"\n{extra}", nats.url())
}

/// Waits until the run's `job` step waits for its invocation; returns the invocation id.
fn invocation_of(daemon: &Daemon, run: &str) -> String {
    let waiting = daemon.wait_for(run, "the job step to wait", |shown| {
        step_status(shown, "job") == "waiting" && !step(shown, "job")["invocation_id"].is_null()
    });
    step(&waiting, "job")["invocation_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn status_cluster(daemon: &Daemon) -> String {
    daemon.json(&["status"])["cluster"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_completion_message_ends_the_waiting_step_without_polling() {
    let Some(nats) = nats() else { return };
    let server = TestServer::start();
    let daemon = Daemon::start(
        &[("jobs.toml", &job_runbook(&server, "1m"))],
        &cluster_config(&nats, ""),
    );
    eventually("the daemon to connect to NATS", || {
        status_cluster(&daemon).contains(": connected")
    });

    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    let shown = String::from_utf8_lossy(&daemon.cli(&["logs", &run]).stdout).into_owned();
    assert!(
        shown.contains("on queue INVOCATION_COMPLETED_TASKS"),
        "the log says what it waits for: {shown}"
    );
    nats.publish(
        STREAM,
        &json!({ "invocation_id": invocation, "status": "completed", "output": { "value": 7 } }),
    );
    let done = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(
        step(&done, "job")["output"],
        json!({ "value": 7 }),
        "{done:#}"
    );
    assert_eq!(server.requests_to("/echo/after")[0].query, "value=7");
    assert!(
        server
            .requests_to(&format!("/jobs/{invocation}"))
            .is_empty(),
        "a step waiting on a queue is never polled"
    );

    // A failure says why, in the step's error.
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    nats.publish(
        STREAM,
        &json!({ "invocation_id": invocation, "status": "failed", "error": "disk full on db-3" }),
    );
    let failed = daemon.wait_for(&run, "the run to fail", |shown| shown["status"] == "failed");
    assert_eq!(step_status(&failed, "job"), "failed");
    assert!(
        step(&failed, "job")["error"]
            .as_str()
            .unwrap()
            .contains("disk full on db-3"),
        "{failed:#}"
    );
    let cluster = status_cluster(&daemon);
    assert!(cluster.contains("2 completed, 0 dropped"), "{cluster}");
}

#[test]
fn a_completion_that_comes_first_or_while_the_daemon_or_nats_is_down_is_not_lost() {
    let Some(mut nats) = nats() else { return };
    let server = TestServer::start();
    let mut daemon = Daemon::start_process(
        &[("jobs.toml", &job_runbook(&server, "1m"))],
        &cluster_config(&nats, ""),
    );
    // The test server numbers its jobs: the first run's is job-1. Its completion is on the
    // queue before the job even starts.
    nats.publish(
        STREAM,
        &json!({ "invocation_id": "job-1", "status": "completed", "output": { "value": 1 } }),
    );
    let run = daemon.start_run("jobs", &[]);
    let done = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step(&done, "job")["output"], json!({ "value": 1 }));

    // Killed while it waits; the completion comes while it is down.
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    daemon.kill9();
    nats.publish(
        STREAM,
        &json!({ "invocation_id": invocation, "status": "completed", "output": { "value": 2 } }),
    );
    daemon.spawn();
    let done = daemon.wait_for(&run, "the run to end after the restart", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step(&done, "job")["output"], json!({ "value": 2 }));

    // NATS goes away while a step waits: the daemon says so, and reconnects.
    let run = daemon.start_run("jobs", &[]);
    let invocation = invocation_of(&daemon, &run);
    nats.kill();
    eventually("the daemon to see NATS gone", || {
        !status_cluster(&daemon).contains(": connected")
    });
    nats.resume().unwrap();
    nats.publish(
        STREAM,
        &json!({ "invocation_id": invocation, "status": "completed", "output": { "value": 3 } }),
    );
    let done = daemon.wait_for(&run, "the run to end after NATS came back", |shown| {
        shown["status"] == "completed"
    });
    assert_eq!(step(&done, "job")["output"], json!({ "value": 3 }));
    assert_eq!(
        server.requests_to("/jobs").len(),
        3,
        "each job was started once"
    );
}

#[test]
fn a_missing_completion_times_out_and_an_unknown_one_is_dropped_after_its_hold() {
    let Some(nats) = nats() else { return };
    let server = TestServer::start();
    let daemon = Daemon::start(
        &[("jobs.toml", &job_runbook(&server, "700ms"))],
        &cluster_config(&nats, "hold_unknown = \"1s\"\n"),
    );
    let run = daemon.run_to_end("jobs", &[]);
    assert_eq!(step_status(&run, "job"), "timed_out", "{run:#}");
    let error = step(&run, "job")["error"].as_str().unwrap();
    assert!(error.contains("no completion within"), "{error}");
    assert_eq!(step_status(&run, "after"), "skipped");

    // For no step at all (nor one of the ended run's): kept for a second, then dropped.
    nats.publish(
        STREAM,
        &json!({ "invocation_id": "nobody-waits", "status": "completed" }),
    );
    nats.publish(STREAM, &json!({ "invocation": "misspelt" }));
    eventually("both to be dropped", || {
        status_cluster(&daemon).contains("0 completed, 2 dropped")
    });
}

#[test]
fn a_bad_cluster_config_or_queue_name_is_refused_where_it_is_written() {
    for (written, said) in [
        (
            "nats = \"http://127.0.0.1:4222\"",
            "cluster.nats: `http://127.0.0.1:4222` is not a NATS address",
        ),
        (
            "nats = \"nats://127.0.0.1:4222\"\ncompletions_stream = \"jobs.done\"",
            "cluster.completions_stream: `jobs.done` is not a JetStream stream name",
        ),
    ] {
        let stderr = runbook_e2e::refused_config(&format!("[cluster]\n{written}\n"));
        assert!(stderr.contains(said), "{stderr}");
    }

    let daemon = Daemon::start(&[], "");
    let file = daemon.root.path().join("queue.toml");
    std::fs::write(
        &file,
        "[[steps]]\nid = \"job\"\nuses = \"http\"\nwith = { url = \"http://127.0.0.1:1/\" }\nwait = { queue = \"jobs > done\" }\n",
    )
    .unwrap();
    let output = daemon.cli(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5:18", file.display()))
            && stderr.contains("`jobs > done` is not a JetStream stream name"),
        "{stderr}"
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new P-256 key in `key` and, for `subject`, a request for its certificate in `out` (or,
/// with `-x509` in `extra`, a self-signed certificate).
fn new_key(dir: &std::path::Path, extra: &[&str], key: &str, out: &str, subject: &str) {
    let mut args = vec!["req"];
    args.extend_from_slice(extra);
    args.extend([
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        subject,
    ]);
    openssl(dir, &args);
}

/// A certificate for `name` with `extensions`, signed by the test's certificate authority.
fn certificate(dir: &std::path::Path, name: &str, extensions: &str) {
    let ext = format!("{name}.ext");
    let csr = format!("{name}.csr");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    new_key(
        dir,
        &[],
        &format!("{name}.key"),
        &csr,
        &format!("/CN={name}"),
    );
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
}

#[test]
fn the_daemon_reaches_a_nats_that_requires_tls_and_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    new_key(
        dir,
        &["-x509", "-days", "1"],
        "ca.key",
        "ca.pem",
        "/CN=test-ca",
    );
    certificate(
        dir,
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    certificate(dir, "client", "extendedKeyUsage=clientAuth\n");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (server_pem, server_key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let Some(nats) = nats_with(&[
        "--tls",
        "--tlscert",
        &server_pem,
        "--tlskey",
        &server_key,
        "--tlscacert",
        &ca,
        "--tlsverify",
    ]) else {
        return;
    };
    let tls = format!("tls_ca = \"{ca}\"\n");
    let with_cert = format!(
        "{tls}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        path("client.pem"),
        path("client.key")
    );
    let daemon = Daemon::start(&[], &cluster_config(&nats, &with_cert));
    eventually("the daemon to connect over TLS", || {
        status_cluster(&daemon).contains(": connected")
    });

    // Without a client certificate the server turns it away; the daemon keeps trying and
    // says so, and runs nothing less.
    let refused = Daemon::start(&[], &cluster_config(&nats, &tls));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let cluster = status_cluster(&refused);
    assert!(!cluster.contains(": connected"), "{cluster}");
    assert_eq!(
        refused.json(&["status"])["not_ready"],
        serde_json::Value::Null
    );

    let stderr = runbook_e2e::refused_config(&format!(
        "[cluster]\nnats = \"{}\"\ntls_cert = \"{}\"\n",
        nats.url(),
        path("client.pem")
    ));
    assert!(
        stderr.contains("cluster.tls_cert and cluster.tls_key: give both or neither"),
        "{stderr}"
    );
}

#[test]
fn the_daemon_authenticates_to_nats_with_an_nkey_from_a_private_file() {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let server_config = dir.path().join("nats.conf");
    std::fs::write(
        &server_config,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let Some(nats) = nats_with(&["-c", server_config.to_str().unwrap()]) else {
        return;
    };
    let seed_file = dir.path().join("runbookd.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed().unwrap())).unwrap();
    let nkey = format!("nkey_file = \"{}\"\n", seed_file.display());

    // Readable by others: refused before anything connects, without showing the seed.
    std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = runbook_e2e::refused_config(&cluster_config(&nats, &nkey));
    assert!(
        stderr.contains("may be read by others (mode 644)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&user.seed().unwrap()), "{stderr}");

    std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&[], &cluster_config(&nats, &nkey));
    eventually("the daemon to authenticate with its nkey", || {
        status_cluster(&daemon).contains(": connected")
    });
    // The server refuses anyone else.
    let anonymous = Daemon::start(&[], &cluster_config(&nats, ""));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let cluster = status_cluster(&anonymous);
    assert!(!cluster.contains(": connected"), "{cluster}");
}

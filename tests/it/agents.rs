//! Remote agents on NATS JetStream (`runbookd agent`): a step with `runs_on` runs on a live
//! agent carrying its labels, its output and logs recorded by the daemon as for a local
//! step, its secrets sent only encrypted to that agent; a step with no live agent for it
//! waits, saying why, until its timeout; a daemon without `[cluster]` refuses such a run.
//! Each test runs its own `nats-server -js`, and the agents as separate processes.

use std::process::{Child, Command, Stdio};

use runbook_e2e::http_server::TestServer;
use runbook_e2e::nats::NatsServer;
use runbook_e2e::{
    Daemon, binary, eventually, required_here, shared_plugin_cache, step, step_status,
};
use serde_json::Value;

const CANARY: &str = "agent-secret-5f1c9e";

fn nats() -> Option<NatsServer> {
    let server = NatsServer::start();
    let found = server.as_ref().map(drop).map_err(Clone::clone);
    required_here("nats-server", found).then(|| server.unwrap())
}

/// A `runbookd agent` process with a data dir of its own.
struct Agent {
    child: Child,
    data: tempfile::TempDir,
}

impl Agent {
    fn start(nats: &NatsServer, name: &str, labels: &str) -> Self {
        Self::start_with(nats, name, labels, "500ms")
    }

    fn start_with(nats: &NatsServer, name: &str, labels: &str, heartbeat: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let child = spawn_agent(nats, name, labels, heartbeat, data.path());
        Self { child, data }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it (-9) and starts it again on the same data dir.
    fn restart(&mut self, nats: &NatsServer, name: &str, labels: &str, heartbeat: &str) {
        self.kill9();
        self.child = spawn_agent(nats, name, labels, heartbeat, self.data.path());
    }
}

fn spawn_agent(
    nats: &NatsServer,
    name: &str,
    labels: &str,
    heartbeat: &str,
    data: &std::path::Path,
) -> Child {
    Command::new(binary("runbookd"))
        .args(["agent", "--nats", &nats.url(), "--name", name])
        .args(["--labels", labels, "--heartbeat", heartbeat])
        .arg("--data-dir")
        .arg(data)
        .env("RUNBOOK_CACHE_DIR", shared_plugin_cache())
        .env("RUNBOOK_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_config(nats: &NatsServer) -> String {
    format!(
        "[approvals]\nshell = \"auto\"\n\n[cluster]\nnats = \"{}\"\n",
        nats.url()
    )
}

fn agents(daemon: &Daemon) -> Vec<Value> {
    daemon
        .json(&["agents"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn live(daemon: &Daemon, name: &str) -> bool {
    agents(daemon)
        .iter()
        .any(|agent| agent["name"] == name && agent["live"] == true)
}

/// What a successful `runbook` command printed, stdout then stderr (where `logs` writes a
/// step's stderr lines).
/// Whether agent `name` last said it runs `count` steps.
fn running(daemon: &Daemon, name: &str, count: u64) -> bool {
    agents(daemon)
        .iter()
        .any(|agent| agent["name"] == name && agent["running"] == count)
}

fn printed(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.cli(args);
    assert!(output.status.success(), "runbook {args:?}: {output:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file under `dir`, read whole.
fn contents(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(contents(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.extend(bytes);
        }
    }
    all
}

#[test]
fn steps_run_on_the_agents_their_labels_name_and_the_rest_here() {
    let Some(nats) = nats() else { return };
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "on_db"
uses = "shell"
runs_on = "db"
with = { command = ["sh", "-c", "echo token=$TOKEN; echo to-stderr >&2"], env = { TOKEN = "{{ secrets.token }}" } }

[[steps]]
id = "on_web"
uses = "http"
runs_on = ["web", "eu"]
needs = ["on_db"]
with = { url = "{url}/echo/web?value=42", capture = { value = "$.query.value" } }

[[steps]]
id = "here"
uses = "shell"
needs = ["on_web"]
with = { command = ["echo", "here {{ steps.on_web.output.captures.value }}"] }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("fleet.toml", &runbook)], &cluster_config(&nats));
    daemon.set_secret("token", CANARY);
    let _alpha = Agent::start(&nats, "alpha", "db");
    // Carries `web` but not `eu`: never chosen for `on_web`.
    let _gamma = Agent::start(&nats, "gamma", "web");
    let _beta = Agent::start(&nats, "beta", "web,eu,extra");
    eventually("the three agents to be live", || {
        ["alpha", "beta", "gamma"]
            .iter()
            .all(|name| live(&daemon, name))
    });
    let listed = agents(&daemon);
    let beta = listed.iter().find(|agent| agent["name"] == "beta").unwrap();
    assert_eq!(beta["labels"], serde_json::json!(["web", "eu", "extra"]));
    assert_eq!(beta["version"], env!("CARGO_PKG_VERSION"));
    let table = printed(&daemon, &["agents"]);
    assert!(table.contains("alpha") && table.contains("live"), "{table}");

    let shown = daemon.run_to_end("fleet", &[]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    assert_eq!(
        step(&shown, "on_web")["output"]["captures"]["value"],
        "42",
        "{shown:#}"
    );
    let run = shown["id"].as_str().unwrap();
    let on_db = printed(&daemon, &["logs", run, "--step", "on_db"]);
    assert!(on_db.contains("dispatched to agent alpha"), "{on_db}");
    assert!(on_db.contains("token=***"), "{on_db}");
    assert!(on_db.contains("to-stderr"), "{on_db}");
    assert!(!on_db.contains(CANARY), "{on_db}");
    let on_web = printed(&daemon, &["logs", run, "--step", "on_web"]);
    assert!(on_web.contains("dispatched to agent beta"), "{on_web}");
    let here = printed(&daemon, &["logs", run, "--step", "here"]);
    assert!(here.contains("here 42"), "{here}");
    assert!(!here.contains("dispatched"), "{here}");
    assert_eq!(server.count("/echo/web"), 1);
    // The secret crossed NATS, but only encrypted to alpha.
    let kept = contents(nats.store_dir());
    assert!(
        !kept
            .windows(CANARY.len())
            .any(|window| window == CANARY.as_bytes()),
        "the secret is in NATS's store in clear"
    );
}

#[test]
fn a_step_without_a_live_agent_waits_and_says_why_until_its_timeout() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "gpu"
uses = "shell"
runs_on = "gpu"
timeout = "2s"
with = { command = ["true"] }
"#;
    let daemon = Daemon::start(&[("gpu.toml", runbook)], &cluster_config(&nats));
    let _other = Agent::start(&nats, "cpu-only", "cpu");
    eventually("the agent to be live", || live(&daemon, "cpu-only"));
    let shown = daemon.run_to_end("gpu", &[]);
    assert_eq!(step(&shown, "gpu")["status"], "timed_out", "{shown:#}");
    let run = shown["id"].as_str().unwrap();
    let logs = printed(&daemon, &["logs", run, "--step", "gpu"]);
    assert!(logs.contains("no live agent with label gpu"), "{logs}");
}

#[test]
fn a_daemon_without_a_cluster_refuses_a_run_with_agent_steps() {
    let runbook = r#"
[[steps]]
id = "remote"
uses = "shell"
runs_on = "db"
with = { command = ["true"] }
"#;
    let daemon = Daemon::start(&[("remote.toml", runbook)], "");
    let refused = daemon.cli_command(&["run", "remote"]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("`runs_on`") && stderr.contains("remote"),
        "{stderr}"
    );
    assert!(stderr.contains("[cluster]"), "{stderr}");
}

#[test]
fn an_idempotent_step_whose_agent_dies_is_dispatched_again_with_the_same_key() {
    let Some(nats) = nats() else { return };
    let server = TestServer::start();
    let runbook = r#"
[[steps]]
id = "slow"
uses = "http"
runs_on = "web"
timeout = "1m"
with = { url = "{url}/slow/3000" }
"#
    .replace("{url}", &server.url());
    let daemon = Daemon::start(&[("slow.toml", &runbook)], &cluster_config(&nats));
    // Both idle, so the first by name gets the step.
    let mut first = Agent::start(&nats, "a1", "web");
    let _second = Agent::start(&nats, "a2", "web");
    eventually("both agents to be live", || {
        live(&daemon, "a1") && live(&daemon, "a2")
    });
    let run = daemon.start_run("slow", &[]);
    eventually("a1 to send the request", || server.count("/slow") == 1);
    first.kill9();
    let shown = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] != "running" && shown["status"] != "pending"
    });
    assert_eq!(shown["status"], "completed", "{shown:#}");
    let requests = server.requests_to("/slow");
    assert_eq!(requests.len(), 2, "one request per dispatch");
    let keys: Vec<_> = requests
        .iter()
        .map(|request| {
            request
                .headers
                .iter()
                .find(|(name, _)| name == "idempotency-key")
                .map(|(_, value)| value.clone())
                .expect("an idempotency key on every request")
        })
        .collect();
    assert_eq!(keys[0], keys[1], "the second dispatch sends the same key");
    let logs = printed(&daemon, &["logs", &run, "--step", "slow"]);
    assert!(logs.contains("agent a1 stopped heartbeating"), "{logs}");
    assert!(logs.contains("dispatched to agent a2"), "{logs}");
}

#[test]
fn a_step_that_may_not_run_twice_becomes_ambiguous_when_its_agent_dies() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "migrate"
uses = "shell"
runs_on = "db"
with = { command = ["sleep", "20"] }
"#;
    let daemon = Daemon::start(&[("migrate.toml", runbook)], &cluster_config(&nats));
    let mut agent = Agent::start(&nats, "db-1", "db");
    let _spare = Agent::start(&nats, "db-2", "db");
    eventually("the agents to be live", || {
        live(&daemon, "db-1") && live(&daemon, "db-2")
    });
    let run = daemon.start_run("migrate", &[]);
    eventually("db-1 to run the step", || running(&daemon, "db-1", 1));
    agent.kill9();
    let shown = daemon.wait_for(&run, "the step to be ambiguous", |shown| {
        step_status(shown, "migrate") == "ambiguous"
    });
    let error = step(&shown, "migrate")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("agent db-1 stopped heartbeating"), "{error}");
    assert!(error.contains("runbook resolve"), "{error}");
    // Never handed to the other agent.
    let logs = printed(&daemon, &["logs", &run, "--step", "migrate"]);
    assert!(!logs.contains("dispatched to agent db-2"), "{logs}");
}

#[test]
fn a_run_on_agents_completes_across_a_nats_restart() {
    let Some(mut nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "long"
uses = "shell"
runs_on = "db"
timeout = "1m"
with = { command = ["sh", "-c", "sleep 4; echo finished"] }

[[steps]]
id = "after"
uses = "shell"
runs_on = "db"
needs = ["long"]
with = { command = ["echo", "after"] }
"#;
    let daemon = Daemon::start(&[("long.toml", runbook)], &cluster_config(&nats));
    let _agent = Agent::start(&nats, "db-1", "db");
    eventually("the agent to be live", || live(&daemon, "db-1"));
    let run = daemon.start_run("long", &[]);
    eventually("the agent to run the step", || running(&daemon, "db-1", 1));
    nats.kill();
    std::thread::sleep(std::time::Duration::from_secs(1));
    nats.resume().unwrap();
    let shown = daemon.wait_for(&run, "the run to end", |shown| {
        shown["status"] != "running" && shown["status"] != "pending"
    });
    assert_eq!(shown["status"], "completed", "{shown:#}");
    let logs = printed(&daemon, &["logs", &run, "--step", "long"]);
    assert!(logs.contains("finished"), "{logs}");
}

#[test]
fn a_user_plugin_travels_to_the_agent_by_its_hash() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "echo"
uses = "probe"
runs_on = "edge"
with = { mode = "echo", value = "from afar" }
"#;
    let daemon = Daemon::prepare(&[("probe.toml", runbook)], &cluster_config(&nats));
    let component = std::fs::read(runbook_e2e::probe_plugin()).unwrap();
    std::fs::create_dir_all(daemon.plugins_dir()).unwrap();
    std::fs::write(daemon.plugins_dir().join("probe.wasm"), &component).unwrap();
    let daemon = daemon.start_prepared();
    let agent = Agent::start(&nats, "edge-1", "edge");
    eventually("the agent to be live", || live(&daemon, "edge-1"));
    let shown = daemon.run_to_end("probe", &[]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    assert_eq!(step(&shown, "echo")["output"]["value"], "from afar");
    let cached: Vec<_> = std::fs::read_dir(agent.data.path().join("agent-plugins"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().unwrap().to_str().unwrap().to_owned();
    let hash = name.strip_suffix(".wasm").unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{name}"
    );
    assert_eq!(
        std::fs::read(&cached[0]).unwrap(),
        component,
        "cached as it was sent"
    );
}

#[test]
fn an_agent_restarted_mid_step_reports_the_step_instead_of_running_it_again() {
    let Some(nats) = nats() else { return };
    let marks = tempfile::tempdir().unwrap();
    let marker = marks.path().join("started");
    let runbook = r#"
[[steps]]
id = "migrate"
uses = "shell"
runs_on = "db"
timeout = "2m"
with = { command = ["sh", "-c", "echo started >> {marker}; sleep 30"] }
"#
    .replace("{marker}", marker.to_str().unwrap());
    let daemon = Daemon::start(&[("migrate.toml", &runbook)], &cluster_config(&nats));
    // A slow heartbeat: the restarted agent is back well within the 6 s it may miss.
    let mut agent = Agent::start_with(&nats, "db-1", "db", "2s");
    eventually("the agent to be live", || live(&daemon, "db-1"));
    let run = daemon.start_run("migrate", &[]);
    eventually("the step to start on the agent", || marker.exists());
    agent.restart(&nats, "db-1", "db", "2s");
    let shown = daemon.wait_for(&run, "the step to be ambiguous", |shown| {
        step_status(shown, "migrate") == "ambiguous"
    });
    let error = step(&shown, "migrate")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("agent db-1 was restarted while it ran the step"),
        "{error}"
    );
    let started = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(started.lines().count(), 1, "the step ran once: {started}");
}

#[test]
fn a_remote_step_past_its_timeout_ends_timed_out_here_and_on_the_agent() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "stuck"
uses = "shell"
runs_on = "db"
timeout = "3s"
with = { command = ["sleep", "60"] }
"#;
    let daemon = Daemon::start(&[("stuck.toml", runbook)], &cluster_config(&nats));
    let _agent = Agent::start(&nats, "db-1", "db");
    eventually("the agent to be live", || live(&daemon, "db-1"));
    let run = daemon.start_run("stuck", &[]);
    eventually("the agent to run the step", || running(&daemon, "db-1", 1));
    let shown = daemon.wait_for(&run, "the step to end", |shown| {
        step_status(shown, "stuck") != "running"
    });
    assert_eq!(step(&shown, "stuck")["status"], "timed_out", "{shown:#}");
    eventually("the agent to end the step too", || {
        running(&daemon, "db-1", 0)
    });
}

#[test]
fn cancelling_a_run_stops_its_step_on_the_agent() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "long"
uses = "shell"
runs_on = "db"
timeout = "10m"
with = { command = ["sleep", "300"] }
"#;
    let daemon = Daemon::start(&[("long.toml", runbook)], &cluster_config(&nats));
    let _agent = Agent::start(&nats, "db-1", "db");
    eventually("the agent to be live", || live(&daemon, "db-1"));
    let run = daemon.start_run("long", &[]);
    eventually("the agent to run the step", || running(&daemon, "db-1", 1));
    printed(&daemon, &["cancel", &run]);
    let shown = daemon.wait_for(&run, "the run to be cancelled", |shown| {
        shown["status"] == "cancelled"
    });
    assert_eq!(step(&shown, "long")["status"], "cancelled", "{shown:#}");
    // Long before the 300 s sleep could end by itself.
    eventually("the agent to stop the step", || running(&daemon, "db-1", 0));
}

#[test]
fn a_daemon_killed_mid_step_withdraws_the_dispatch_when_it_restarts() {
    let Some(nats) = nats() else { return };
    let runbook = r#"
[[steps]]
id = "migrate"
uses = "shell"
runs_on = "db"
timeout = "10m"
with = { command = ["sleep", "300"] }
"#;
    let mut daemon = Daemon::start_process(&[("migrate.toml", runbook)], &cluster_config(&nats));
    let _agent = Agent::start(&nats, "db-1", "db");
    eventually("the agent to be live", || live(&daemon, "db-1"));
    let run = daemon.start_run("migrate", &[]);
    eventually("the agent to run the step", || running(&daemon, "db-1", 1));
    daemon.kill9();
    daemon.restart();
    // The step may not run twice: the restart leaves it to an operator, and the agent stops
    // the attempt that nobody follows any more, long before its 300 s sleep ends.
    let shown = daemon.wait_for(&run, "the step to be ambiguous", |shown| {
        step_status(shown, "migrate") == "ambiguous"
    });
    assert!(
        step(&shown, "migrate")["error"]
            .as_str()
            .unwrap()
            .contains("the daemon stopped")
    );
    eventually("the agent to stop the step", || running(&daemon, "db-1", 0));
}

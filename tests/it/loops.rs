//! Loop steps (`for_each`): one instance per item of a `list` param, with `item` and
//! `index`, the output a list
//! of the instances' outputs that a later step reads, a failed instance failing the step only
//! after the others ran (or at once with `fail_fast`), a retry that runs only the instances
//! that did not complete, one approval showing every instance's plan, and each of the
//! daemon's loop limits refusing a loop before any instance starts. Side effects are counted
//! in a ledger file the instances append to.

use runbook_e2e::{Daemon, step, step_status};

const AUTO: &str = "[approvals]\nshell = \"auto\"\n";

/// A runbook whose `deploy` loop (over the `list` param `hosts`, `a,b,c` by default) appends
/// `<item>` to the ledger, then fails for item `b`
/// while `flag` exists; `after` reads the loop's output.
fn deploy_runbook(ledger: &str, flag: &str, fail_fast: bool, max_parallel: usize) -> String {
    format!(
        r#"
[params]
hosts = {{ type = "list", default = ["a", "b", "c"] }}

[[steps]]
id = "deploy"
uses = "shell"
for_each = "{{{{ params.hosts }}}}"
max_parallel = {max_parallel}
fail_fast = {fail_fast}
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"; echo "deployed $1 as $3"; if [ "$1" = b ] && [ -e "$4" ]; then echo "b is broken" >&2; exit 3; fi', "deploy", "{{{{ item }}}}", "{ledger}", "{{{{ index }}}}", "{flag}"] }}

[[steps]]
id = "after"
uses = "shell"
needs = ["deploy"]
with = {{ command = ["echo", "{{{{ steps.deploy.output[0].stdout | trim }}}}|{{{{ steps.deploy.output[2].stdout | trim }}}}|{{{{ steps.deploy.output | length }}}}"] }}
"#
    )
}

/// A daemon with the deploy runbook, its item `b` broken until `flag` is removed.
struct Deploy {
    dir: tempfile::TempDir,
    ledger: std::path::PathBuf,
    flag: std::path::PathBuf,
    daemon: Daemon,
}

impl Deploy {
    fn start(fail_fast: bool, max_parallel: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger");
        let flag = dir.path().join("broken");
        std::fs::write(&flag, "").unwrap();
        let runbook = deploy_runbook(
            ledger.to_str().unwrap(),
            flag.to_str().unwrap(),
            fail_fast,
            max_parallel,
        );
        let daemon = Daemon::start(&[("deploy.toml", &runbook)], AUTO);
        Self {
            dir,
            ledger,
            flag,
            daemon,
        }
    }
}

/// Waits for run `id` to complete or fail.
fn ended(daemon: &Daemon, id: &str) -> serde_json::Value {
    daemon.wait_for(id, "the run to end", |shown| {
        shown["status"] == "completed" || shown["status"] == "failed"
    })
}

fn ledger_lines(path: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    // Instances may run side by side: the order they append in is not the point.
    lines.sort();
    lines
}

fn instance_statuses(run: &serde_json::Value, id: &str) -> Vec<String> {
    step(run, id)["instances"]
        .as_array()
        .map(|instances| {
            instances
                .iter()
                .map(|instance| instance["status"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_loop_with_one_failing_instance_fails_after_the_others_and_its_retry_runs_only_that_one() {
    let Deploy {
        dir: _dir,
        ledger,
        flag,
        daemon,
    } = Deploy::start(false, 2);

    let run = daemon.run_to_end("deploy", &[]);
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["status"], "failed", "{run:#}");
    let deploy = step(&run, "deploy");
    assert_eq!(deploy["status"], "failed", "{deploy:#}");
    assert_eq!(
        deploy["error"],
        "1 of 3 instances did not complete: deploy[1]: exit code 3 is not one of expect_exit [0]",
        "{deploy:#}"
    );
    assert_eq!(
        instance_statuses(&run, "deploy"),
        ["completed", "failed", "completed"]
    );
    let items: Vec<&str> = deploy["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["item"].as_str().unwrap())
        .collect();
    assert_eq!(items, [r#""a""#, r#""b""#, r#""c""#]);
    // The other instances ran to their end: the failure did not stop them.
    assert_eq!(ledger_lines(&ledger), ["a", "b", "c"]);
    // The output has each instance's in item order, the failed one's as its plugin gave it.
    let output = &deploy["output"];
    assert_eq!(output[0]["stdout"], "deployed a as 0\n", "{output:#}");
    assert_eq!(output[1]["exit_code"], 3, "{output:#}");
    assert_eq!(output[2]["stdout"], "deployed c as 2\n", "{output:#}");
    assert_eq!(step_status(&run, "after"), "skipped");

    // Each instance's lines are in the step's log, told apart by their index.
    // `logs` prints the steps' stderr on its own stderr.
    let logs = daemon.cli(&["logs", id, "--step", "deploy"]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    for line in [
        "[0] deployed a as 0",
        "[1] deployed b as 1",
        "[1] b is broken",
        "[2] deployed c as 2",
    ] {
        assert!(logs.contains(line), "{line} missing from:\n{logs}");
    }
    // `show` lists the instances under their step.
    let shown = daemon.cli(&["show", id]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("deploy[1]") && shown.contains("exit code 3"),
        "{shown}"
    );

    // Fixed, the run is retried: only the failed instance runs again.
    std::fs::remove_file(&flag).unwrap();
    let retried = daemon.cli(&["retry", id]);
    assert!(retried.status.success(), "{retried:?}");
    let run = ended(&daemon, id);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(ledger_lines(&ledger), ["a", "b", "b", "c"]);
    assert_eq!(
        instance_statuses(&run, "deploy"),
        ["completed", "completed", "completed"]
    );
    let attempts: Vec<u64> = step(&run, "deploy")["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|instance| instance["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 1]);
    // A later step reads the whole list, including outputs kept from the first attempt.
    assert_eq!(
        step(&run, "after")["output"]["stdout"],
        "deployed a as 0|deployed c as 2|3\n",
        "{run:#}"
    );
}

#[test]
fn fail_fast_starts_no_instance_after_the_first_failure() {
    let Deploy {
        dir: _dir,
        ledger,
        flag: _,
        daemon,
    } = Deploy::start(true, 1);

    // The list typed on the command line, as an operator gives it.
    let run = daemon.run_to_end("deploy", &["hosts=a, b,c"]);
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(
        instance_statuses(&run, "deploy"),
        ["completed", "failed", "cancelled"]
    );
    let third = &step(&run, "deploy")["instances"][2];
    assert_eq!(
        third["error"], "not started: deploy[1] failed and the loop has fail_fast",
        "{third:#}"
    );
    assert_eq!(ledger_lines(&ledger), ["a", "b"]);
    assert!(
        step(&run, "deploy")["error"].as_str().unwrap().starts_with(
            "2 of 3 instances did not complete: deploy[1]: exit code 3 is not one of \
                 expect_exit [0]; deploy[2]: not started"
        ),
        "{run:#}"
    );
}

#[test]
fn one_approval_shows_every_instance_plan_and_approves_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let runbook = format!(
        r#"
[[steps]]
id = "restart"
uses = "shell"
for_each = ["web-1", "web-2"]
max_parallel = 2
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"', "restart", "{{{{ item }}}}", "{}"] }}
"#,
        ledger.display()
    );
    let daemon = Daemon::start(&[("restart.toml", &runbook)], "");
    let run = daemon.start_run("restart", &[]);
    let waiting = daemon.wait_for(&run, "the loop's approval", |shown| {
        step_status(shown, "restart") == "waiting"
    });
    let approval = &step(&waiting, "restart")["approval"];
    assert!(
        approval["summary"]
            .as_str()
            .unwrap()
            .starts_with("2 instances of `restart`"),
        "{approval:#}"
    );
    let effects = approval["plan"]["effects"].as_array().unwrap();
    let notes: Vec<&str> = effects
        .iter()
        .filter_map(|effect| effect["note"].as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{approval:#}");
    assert!(
        notes[0].starts_with(r#"restart[0] (item "web-1")"#),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with(r#"restart[1] (item "web-2")"#),
        "{notes:?}"
    );
    let argvs: Vec<&serde_json::Value> = effects
        .iter()
        .filter_map(|effect| effect.get("process"))
        .map(|process| &process["argv"][4])
        .collect();
    assert_eq!(argvs, ["web-1", "web-2"], "{approval:#}");
    // Nothing ran before the approval.
    assert!(!ledger.exists());

    let approved = daemon.cli(&["approve", &run, "restart"]);
    assert!(approved.status.success(), "{approved:?}");
    let ended = ended(&daemon, &run);
    assert_eq!(ended["status"], "completed", "{ended:#}");
    assert_eq!(ledger_lines(&ledger), ["web-1", "web-2"]);
}

#[test]
fn each_loop_limit_fails_the_step_before_any_instance_starts() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let touch = |id: &str, head: &str| {
        format!(
            r#"
[[steps]]
id = "{id}"
uses = "shell"
{head}
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"', "loop", "{id}", "{}"] }}
"#,
            ledger.display()
        )
    };
    let limits = format!(
        "{}{}{}",
        touch("many", "for_each = [1, 2, 3]"),
        touch("wide", "for_each = [1]\nmax_parallel = 3"),
        touch("outer", "for_each = [[1]]"),
    ) + &touch(
        "inner",
        "needs = [\"outer\"]\nfor_each = \"{{ steps.outer.output }}\"",
    );
    let executions = format!(
        "{}{}{}",
        touch("one", ""),
        touch("two", "needs = [\"one\"]"),
        touch("pair", "needs = [\"two\"]\nfor_each = [1, 2]"),
    );
    let config = format!(
        "{AUTO}[limits]\nloop_items = 2\nloop_parallel = 2\nloop_depth = 1\nloop_executions = 3\n"
    );
    let daemon = Daemon::start(
        &[("limits.toml", &limits), ("executions.toml", &executions)],
        &config,
    );

    let run = daemon.run_to_end("limits", &[]);
    let expected = [
        (
            "many",
            "`for_each` gave 3 items, and a loop may have at most 2 (`[limits] loop_items` in the daemon config)",
        ),
        (
            "wide",
            "`max_parallel = 3` runs more instances at once than the 2 the daemon allows (`[limits] loop_parallel` in the daemon config)",
        ),
        (
            "inner",
            "this loop nests 2 deep (its `for_each` reads a loop's output, which reads another's, ...), and loops may nest at most 1 deep (`[limits] loop_depth` in the daemon config)",
        ),
    ];
    for (id, error) in expected {
        let failed = step(&run, id);
        assert_eq!(failed["status"], "failed", "{id}: {failed:#}");
        assert_eq!(failed["error"], error, "{id}");
        assert_eq!(failed["attempts"], 0, "{id}: no attempt started");
        assert!(failed.get("instances").is_none(), "{id}: {failed:#}");
    }
    assert_eq!(step_status(&run, "outer"), "completed");

    let run = daemon.run_to_end("executions", &[]);
    let pair = step(&run, "pair");
    assert_eq!(
        pair["error"],
        "running 2 instances would take the run to 4 step executions, and a run may make at most 3 (`[limits] loop_executions` in the daemon config; the run has made 2)",
        "{pair:#}"
    );
    assert_eq!(pair["attempts"], 0);
    // Only the steps within the limits ran: `outer` once, `one` and `two`.
    assert_eq!(ledger_lines(&ledger), ["one", "outer", "two"]);
}

#[test]
fn a_loop_killed_mid_instance_keeps_its_completed_instances_and_resolve_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let started = dir.path().join("started");
    let runbook = format!(
        r#"
[[steps]]
id = "roll"
uses = "shell"
for_each = ["a", "b", "c"]
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"; if [ "$1" = b ] && [ ! -e "$3.done" ]; then : > "$3.done"; : > "$3"; sleep 600; fi', "roll", "{{{{ item }}}}", "{}", "{}"] }}
"#,
        ledger.display(),
        started.display()
    );
    let mut daemon = Daemon::start_process(&[("roll.toml", &runbook)], AUTO);
    let run = daemon.start_run("roll", &[]);
    runbook_e2e::eventually("instance b to start", || started.exists());
    daemon.kill9();
    daemon.spawn();

    // The shell plugin is not idempotent: the interrupted instance, and so the step, are
    // ambiguous; the completed one stays completed.
    let shown = daemon.wait_for(&run, "the loop to be ambiguous", |shown| {
        step_status(shown, "roll") == "ambiguous"
    });
    assert_eq!(
        instance_statuses(&shown, "roll"),
        ["completed", "ambiguous", "pending"]
    );
    let resolved = daemon.cli(&["resolve", &run, "roll", "retry"]);
    assert!(resolved.status.success(), "{resolved:?}");
    let ended = ended(&daemon, &run);
    assert_eq!(ended["status"], "completed", "{ended:#}");
    // `a` ran once; `b` again after the operator's decision; `c` once.
    assert_eq!(ledger_lines(&ledger), ["a", "b", "b", "c"]);
    let output = &step(&ended, "roll")["output"];
    assert_eq!(output.as_array().map(Vec::len), Some(3), "{output:#}");
    assert_eq!(output[0]["exit_code"], 0, "{output:#}");
}

#[test]
fn an_approved_loop_retried_by_its_policy_does_not_ask_again() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let flaky = dir.path().join("flaky");
    std::fs::write(&flaky, "").unwrap();
    // `b` fails its first run (it removes the flag), then passes; shell steps need approval.
    let runbook = format!(
        r#"
[[steps]]
id = "roll"
uses = "shell"
for_each = ["a", "b"]
max_parallel = 2
retry = {{ attempts = 2, delay = "100ms" }}
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"; if [ "$1" = b ] && [ -e "$3" ]; then rm "$3"; exit 3; fi', "roll", "{{{{ item }}}}", "{}", "{}"] }}
"#,
        ledger.display(),
        flaky.display()
    );
    let daemon = Daemon::start(&[("roll.toml", &runbook)], "");
    let run = daemon.start_run("roll", &[]);
    daemon.wait_for(&run, "the loop's approval", |shown| {
        step_status(shown, "roll") == "waiting"
    });
    assert!(daemon.cli(&["approve", &run, "roll"]).status.success());
    let ended = ended(&daemon, &run);
    assert_eq!(ended["status"], "completed", "{ended:#}");
    assert_eq!(step(&ended, "roll")["attempts"], 2, "{ended:#}");
    // The second attempt ran only `b`, under the approval already given.
    assert_eq!(ledger_lines(&ledger), ["a", "b", "b"]);
    let asked = daemon
        .events(&run)
        .iter()
        .filter(|event| event.contains("ApprovalRequested"))
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn fail_fast_cancels_running_instances_and_the_retry_policy_runs_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let marks = dir.path();
    // First attempt: `b` fails once `a` and `c` have started and hang; fail_fast cancels
    // them. The failure is transient (an exit code), so the policy tries again: everything
    // passes.
    let runbook = format!(
        r#"
[[steps]]
id = "roll"
uses = "shell"
for_each = ["a", "b", "c"]
max_parallel = 3
fail_fast = true
retry = {{ attempts = 2, delay = "100ms", on = ["transient"] }}
with = {{ command = ["sh", "-c", 'echo "$1" >> "$2"; [ -e "$3/$1" ] && exit 0; : > "$3/$1"; if [ "$1" = b ]; then while [ ! -e "$3/a" ] || [ ! -e "$3/c" ]; do sleep 0.01; done; exit 3; fi; sleep 600', "roll", "{{{{ item }}}}", "{}", "{}"] }}
"#,
        ledger.display(),
        marks.display()
    );
    let daemon = Daemon::start(&[("roll.toml", &runbook)], AUTO);
    let run = daemon.run_to_end("roll", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    let roll = step(&run, "roll");
    assert_eq!(roll["attempts"], 2, "{roll:#}");
    let first = roll["history"][0]["error"].as_str().unwrap();
    assert!(
        first.starts_with(
            "3 of 3 instances did not complete: roll[0]: cancelled: another instance failed"
        ),
        "{first}"
    );
    assert_eq!(ledger_lines(&ledger), ["a", "a", "b", "b", "c", "c"]);
}

#[test]
fn retry_from_a_failed_loop_runs_every_item_again() {
    let Deploy {
        dir: _dir,
        ledger,
        flag,
        daemon,
    } = Deploy::start(false, 1);
    let run = daemon.run_to_end("deploy", &[]);
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["status"], "failed");
    std::fs::remove_file(&flag).unwrap();
    assert!(
        daemon
            .cli(&["retry", id, "--from", "deploy"])
            .status
            .success()
    );
    let run = ended(&daemon, id);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(ledger_lines(&ledger), ["a", "a", "b", "b", "c", "c"]);
}

#[test]
fn an_empty_loop_completes_and_a_dry_run_shows_each_instance_plan() {
    let runbook = r#"
[[steps]]
id = "list"
uses = "shell"
with = { command = ["echo", "[]"] }

[[steps]]
id = "none"
uses = "shell"
for_each = []
with = { command = ["echo", "{{ item }}"] }

[[steps]]
id = "two"
uses = "shell"
for_each = ["x", "y"]
with = { command = ["echo", "{{ index }}={{ item }}"] }

[[steps]]
id = "later"
uses = "shell"
needs = ["list"]
for_each = "{{ steps.list.output.stdout | trim | split(',') }}"
with = { command = ["echo", "{{ item }}"] }
"#;
    let daemon = Daemon::start(&[("loops.toml", runbook)], AUTO);
    let run = daemon.run_to_end("loops", &[]);
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(step(&run, "none")["output"], serde_json::json!([]));
    assert_eq!(step(&run, "two")["output"][1]["stdout"], "1=y\n");

    let dry = daemon.json(&["run", "loops", "--dry-run", "--wait"]);
    let id = dry["id"].as_str().unwrap();
    let shown = daemon.json(&["show", id]);
    assert_eq!(shown["status"], "completed", "{shown:#}");
    let plans = &step(&shown, "two")["output"]["instances"];
    assert_eq!(plans[0]["instance"], "two[0]", "{plans:#}");
    assert_eq!(
        plans[1]["plan"]["effects"][0]["process"]["argv"],
        serde_json::json!(["echo", "1=y"]),
        "{plans:#}"
    );
    // An earlier step only planned in a dry run: what the loop would go over is unknown.
    let later = &step(&shown, "later")["output"];
    assert!(
        later["items_unknown"]
            .as_str()
            .is_some_and(|why| why.starts_with("`for_each` must give a list")
                || why.starts_with("cannot evaluate `for_each`")),
        "{later:#}"
    );
    assert!(step(&shown, "two").get("instances").is_none(), "{shown:#}");
}

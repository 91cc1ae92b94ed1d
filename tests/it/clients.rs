//! Standard gRPC clients on the daemon's socket with their default options: the Python script
//! of docs/api.md (stubs generated from the .proto by grpcio-tools), a reflection listing with
//! grpcio-reflection (v1alpha), and the Node call of docs/api.md with @grpc/grpc-js. Python
//! with those packages comes from `RUNBOOK_TEST_PYTHON` (else `python3`), the Node packages
//! from `RUNBOOK_TEST_NODE_PATH`; `.ci/run` installs both.

use std::path::Path;
use std::process::{Command, Output};

use runbook_e2e::{Daemon, required_here, workspace_root};

const RUNBOOK: &str = r#"
[params]
who = { type = "string", required = true }

[[steps]]
id = "greet"
uses = "shell"
with = { command = ["echo", "hello {{ params.who }}"] }
"#;

fn python() -> String {
    std::env::var("RUNBOOK_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python` has the gRPC packages.
fn grpcio_here() -> bool {
    let found = Command::new(python())
        .args(["-c", "import grpc, grpc_tools, grpc_reflection"])
        .output()
        .map_err(|err| err.to_string())
        .and_then(|output| {
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        });
    required_here(
        "Python with grpcio, grpcio-tools and grpcio-reflection",
        found,
    )
}

/// The first fenced block of `language` in docs/api.md that contains `marker`.
fn doc_block(language: &str, marker: &str) -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/api.md")).unwrap();
    doc.split(&format!("```{language}\n"))
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("docs/api.md has a {language} block with {marker}"))
        .to_owned()
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Stubs for `runbook/v1/runbook.proto` in `dir`, as docs/api.md generates them.
fn generate_stubs(dir: &Path) {
    let protos = workspace_root().join("daemon/protocol/proto");
    run(Command::new(python())
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&protos)
        .arg("--python_out=.")
        .arg("--grpc_python_out=.")
        .arg("runbook/v1/runbook.proto")
        .current_dir(dir));
}

#[test]
fn the_python_script_of_the_docs_starts_a_run_and_follows_it_to_its_end() {
    if !grpcio_here() {
        return;
    }
    // Approved by the policy: the script follows a run, it does not approve its steps.
    let daemon = Daemon::start(
        &[("greet.toml", RUNBOOK)],
        "[approvals]\nshell = \"auto\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    generate_stubs(dir.path());
    std::fs::write(
        dir.path().join("follow_run.py"),
        doc_block("python", "def main("),
    )
    .unwrap();
    let output = run(Command::new(python())
        .arg("follow_run.py")
        .arg(&daemon.socket)
        .args(["greet", "who=python"])
        .current_dir(dir.path()));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("  greet| hello python"), "{printed}");
    assert!(
        printed.contains("step greet: STEP_STATUS_COMPLETED"),
        "{printed}"
    );
    assert!(printed.contains(": RUN_STATUS_COMPLETED"), "{printed}");

    // An error is a status with the daemon's message.
    let refused = Command::new(python())
        .arg("follow_run.py")
        .arg(&daemon.socket)
        .arg("no-such-runbook")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("StatusCode.NOT_FOUND"),
        "{said}"
    );
}

#[test]
fn reflection_lists_the_services_to_grpcio_reflection() {
    if !grpcio_here() {
        return;
    }
    let daemon = Daemon::start(&[("greet.toml", RUNBOOK)], "");
    let listing = format!(
        "import grpc, sys\n{}",
        doc_block("python", "ProtoReflectionDescriptorDatabase")
    )
    .replace("{socket}", "{sys.argv[1]}");
    let output = run(Command::new(python())
        .args(["-c", &listing])
        .arg(&daemon.socket));
    let printed = String::from_utf8_lossy(&output.stdout);
    // grpcio-reflection asks in v1alpha, which lists itself (v1 answers in v1).
    for service in [
        "runbook.v1.Runbook",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(printed.contains(&format!("'{service}'")), "{printed}");
    }
}

#[test]
fn the_node_call_of_the_docs_lists_the_runbooks() {
    let modules = std::env::var("RUNBOOK_TEST_NODE_PATH")
        .map_err(|_| "RUNBOOK_TEST_NODE_PATH names no node_modules with @grpc/grpc-js".to_owned());
    let found = modules.clone().and_then(|modules| {
        if Path::new(&modules).join("@grpc/grpc-js").is_dir() {
            Ok(())
        } else {
            Err(format!("{modules} has no @grpc/grpc-js"))
        }
    });
    if !required_here("Node with @grpc/grpc-js and @grpc/proto-loader", found) {
        return;
    }
    let daemon = Daemon::start(&[("greet.toml", RUNBOOK)], "");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("list.js");
    std::fs::write(
        &script,
        format!(
            "const socket = process.argv[2];\n{}",
            doc_block("js", "ListRunbooks")
        ),
    )
    .unwrap();
    let output = run(Command::new("node")
        .arg(&script)
        .arg(&daemon.socket)
        .env("NODE_PATH", modules.unwrap())
        .current_dir(workspace_root()));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("'greet'"), "{printed}");
}

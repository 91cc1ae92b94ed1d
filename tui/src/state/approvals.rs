//! The approvals queue: every step of every run that waits for a human's decision, oldest
//! request first, and the plan each one would carry out, read from its JSON.

use runbook_protocol::v1::{Approval, ParamSpec, Run, StepRun, StepStatus};
use serde_json::Value;

/// One step waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending<'a> {
    /// Its run.
    pub run: &'a Run,
    /// The step.
    pub step: &'a StepRun,
    /// What it asks to do.
    pub approval: &'a Approval,
}

/// Every undecided approval among `runs`, oldest request first.
pub fn pending(runs: &[Run]) -> Vec<Pending<'_>> {
    let mut found: Vec<Pending<'_>> = runs
        .iter()
        .filter(|run| !run.status().is_terminal())
        .flat_map(|run| {
            run.steps.iter().filter_map(move |step| {
                let approval = step.approval.as_ref()?;
                (approval.decided_at == 0 && step.status() == StepStatus::Waiting).then_some(
                    Pending {
                        run,
                        step,
                        approval,
                    },
                )
            })
        })
        .collect();
    found.sort_by(|a, b| {
        (a.approval.requested_at, &a.run.id, &a.step.id).cmp(&(
            b.approval.requested_at,
            &b.run.id,
            &b.step.id,
        ))
    });
    found
}

/// The approvals screen's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalsState {
    /// The selected request's index in [`pending`].
    pub selected: usize,
}

/// One side effect of a plan, as the daemon describes it to approvers.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A process: its argv, its env vars, its cwd and its stdin (secrets masked as `***`).
    Process {
        /// Program and arguments, exactly as they will be passed.
        argv: Vec<String>,
        /// The environment variables it gets: names, with their values where the daemon sends
        /// them (older daemons send names only).
        env: Vec<(String, Option<String>)>,
        /// The working directory, if set.
        cwd: Option<String>,
        /// How many bytes it gets on stdin, if any.
        stdin_bytes: Option<u64>,
        /// Its stdin, in full, where the daemon sends it.
        stdin: Option<String>,
        /// The SHA-256 of that stdin (hex), where the daemon sends it.
        stdin_sha256: Option<String>,
    },
    /// SQL statements on a named connection.
    Sql {
        /// The connection's name.
        connection: String,
        /// Each statement, as it will be sent.
        statements: Vec<String>,
        /// Whether the statements write.
        writes: bool,
    },
    /// A free-form description (an HTTP request line, say).
    Note(String),
    /// Something this client does not know how to show: its JSON.
    Other(String),
}

/// A plan as shown to approvers.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Its side effects, in order.
    pub effects: Vec<Effect>,
}

/// What the CLI prints of a plan beyond its summary, so that an approver sees everything a
/// process gets: each env variable with its value (secrets are `***`), and stdin by its size
/// and SHA-256 (the TUI's plan pane and `show --json` have it in full). Not escaped: the
/// caller prints through `format::printable`.
pub fn plan_details(approval: &Approval) -> Vec<String> {
    let Some(plan) = plan(approval) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if approval.instruction {
        for effect in &plan.effects {
            if let Effect::Note(text) = effect {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines.extend(approval.inputs.iter().map(input_line));
        return lines;
    }
    for effect in &plan.effects {
        let Effect::Process {
            env,
            stdin_bytes,
            stdin_sha256,
            ..
        } = effect
        else {
            continue;
        };
        for (name, value) in env {
            if let Some(value) = value {
                lines.push(format!("env {name}={value}"));
            }
        }
        if let Some(bytes) = stdin_bytes {
            lines.push(match stdin_sha256 {
                Some(hash) => format!("stdin {bytes} bytes, sha256 {hash}"),
                None => format!("stdin {bytes} bytes"),
            });
        }
    }
    lines
}

/// One input an instruction asks for: `input ticket (string, required): the change ticket`.
pub fn input_line(input: &ParamSpec) -> String {
    let mut facts = vec![input.r#type.clone()];
    if input.required {
        facts.push("required".into());
    }
    if !input.default_json.is_empty() {
        facts.push(format!("default {}", input.default_json));
    }
    if !input.allowed_json.is_empty() {
        facts.push(format!("one of {}", input.allowed_json.join(", ")));
    }
    let mut line = format!("input {} ({})", input.name, facts.join(", "));
    if !input.description.is_empty() {
        line.push_str(&format!(": {}", input.description));
    }
    line
}

/// The command that decides a pending request: `runbook confirm` with the inputs an
/// instruction asks for (optional ones in brackets), or `runbook approve`.
pub fn decide_command(run_id: &str, step_id: &str, approval: &Approval) -> String {
    if !approval.instruction {
        return format!("runbook approve {run_id} {step_id}");
    }
    let mut command = format!("runbook confirm {run_id} {step_id}");
    for input in &approval.inputs {
        let flag = format!("-i {}=<{}>", input.name, input.r#type);
        if input.required && input.default_json.is_empty() {
            command.push_str(&format!(" {flag}"));
        } else {
            command.push_str(&format!(" [{flag}]"));
        }
    }
    command
}

/// Reads the plan JSON of an approval; `None` when it is empty or not the shape the daemon
/// sends (the summary is then all there is to show).
pub fn plan(approval: &Approval) -> Option<Plan> {
    let value: Value = serde_json::from_str(&approval.plan_json).ok()?;
    let effects = value.get("effects")?.as_array()?;
    Some(Plan {
        effects: effects.iter().map(effect).collect(),
    })
}

fn effect(value: &Value) -> Effect {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(process) = value.get("process") {
        let values = process.get("env_values");
        return Effect::Process {
            argv: strings(process.get("argv")),
            env: strings(process.get("env"))
                .into_iter()
                .map(|name| {
                    let value = values
                        .and_then(|values| values.get(&name))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    (name, value)
                })
                .collect(),
            cwd: process
                .get("cwd")
                .and_then(Value::as_str)
                .map(str::to_owned),
            stdin_bytes: process.get("stdin_bytes").and_then(Value::as_u64),
            stdin: process
                .get("stdin")
                .and_then(Value::as_str)
                .map(str::to_owned),
            stdin_sha256: process
                .get("stdin_sha256")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
    }
    if let Some(sql) = value.get("sql") {
        return Effect::Sql {
            connection: sql
                .get("connection")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            statements: strings(sql.get("statements")),
            writes: sql.get("writes").and_then(Value::as_bool).unwrap_or(true),
        };
    }
    if let Some(note) = value.get("note").and_then(Value::as_str) {
        return Effect::Note(note.to_owned());
    }
    Effect::Other(value.to_string())
}

/// An argv as a shell would need it typed, so that spaces and quotes are unambiguous; only
/// for display: the daemon passes the argv itself, never a shell string.
pub fn quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::RunStatus;

    fn waiting_run(id: &str, requested_at: i64, decided_at: i64) -> Run {
        Run {
            id: id.into(),
            status: RunStatus::Waiting as i32,
            steps: vec![StepRun {
                id: "migrate".into(),
                status: StepStatus::Waiting as i32,
                approval: Some(Approval {
                    requested_at,
                    decided_at,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_undecided_requests_are_pending_oldest_first() {
        let runs = vec![
            waiting_run("b", 20, 0),
            waiting_run("a", 10, 0),
            waiting_run("decided", 5, 7),
        ];
        let ids: Vec<_> = pending(&runs).iter().map(|p| p.run.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn plans_are_read_from_the_daemons_json() {
        let approval = Approval {
            plan_json: r#"{"summary":"x","effects":[
                {"process":{"argv":["./migrate.sh","--env","a b"],"env":["TOKEN","MODE"],
                  "env_values":{"TOKEN":"***","MODE":"fast"},"cwd":"/srv","stdin":"y\n","stdin_bytes":2,
                  "stdin_sha256":"ab"}},
                {"sql":{"connection":"orders","statements":["delete from t"],"writes":true}},
                {"note":"GET http://x/health"},
                {"other":1}
            ]}"#
            .into(),
            ..Default::default()
        };
        let plan = plan(&approval).expect("a plan");
        assert_eq!(
            plan.effects[0],
            Effect::Process {
                argv: vec!["./migrate.sh".into(), "--env".into(), "a b".into()],
                env: vec![
                    ("TOKEN".into(), Some("***".into())),
                    ("MODE".into(), Some("fast".into()))
                ],
                cwd: Some("/srv".into()),
                stdin_bytes: Some(2),
                stdin: Some("y\n".into()),
                stdin_sha256: Some("ab".into()),
            }
        );
        assert!(matches!(&plan.effects[1], Effect::Sql { writes: true, .. }));
        assert_eq!(plan.effects[2], Effect::Note("GET http://x/health".into()));
        assert_eq!(plan.effects[3], Effect::Other(r#"{"other":1}"#.into()));
        assert_eq!(super::plan(&Approval::default()), None, "no JSON, no plan");
        assert_eq!(
            plan_details(&approval),
            ["env TOKEN=***", "env MODE=fast", "stdin 2 bytes, sha256 ab"]
        );
    }

    #[test]
    fn argv_is_quoted_only_where_needed() {
        let argv = ["rm".to_owned(), "-rf".into(), "a b".into(), "it's".into()];
        assert_eq!(quote_argv(&argv), r"rm -rf 'a b' 'it'\''s'");
    }
}

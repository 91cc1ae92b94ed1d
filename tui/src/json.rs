//! The JSON shapes the CLI prints with `--json`: the one place that turns protocol messages into
//! the stable, documented output that scripts depend on.

use runbook_protocol::v1::{
    Approval, Diagnostic, OutputStream, Run, RunEvent, RunbookSummary, RunbookVersion,
    StatusResponse, StepRun, ValidateRunbookResponse, run_event::Kind,
};
use serde::Serialize;
use serde_json::Value;

/// A run as scripts see it.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    id: &'a str,
    runbook: &'a str,
    version: &'a str,
    status: &'static str,
    params: Value,
    /// Each step's plan is its output; nothing was executed.
    dry_run: bool,
    created_at: Value,
    started_at: Value,
    finished_at: Value,
    error: Value,
    steps: Vec<StepJson<'a>>,
    /// Every retry of the run in place, oldest first (left out when there was none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retries: Vec<RetryJson<'a>>,
}

/// One operator's retry of an ended run.
#[derive(Debug, Serialize)]
pub struct RetryJson<'a> {
    by: &'a str,
    at: Value,
    /// How the run had ended.
    ended: &'static str,
    from: Value,
    /// The version the run was on before, when the retry moved it to the current one.
    previous_version: Value,
    steps: &'a [String],
}

/// One step of a run.
#[derive(Debug, Serialize)]
pub struct StepJson<'a> {
    id: &'a str,
    uses: &'a str,
    status: &'static str,
    attempts: u32,
    output: Value,
    error: Value,
    started_at: Value,
    finished_at: Value,
    approval: Option<ApprovalJson<'a>>,
    /// When a failed step will be tried again, or null.
    retry_at: Value,
    /// Every finished attempt, oldest first.
    history: Vec<AttemptJson<'a>>,
    /// While the step waits for an async invocation: its id (or null), the next check and
    /// when the wait times out.
    invocation_id: Value,
    resume_at: Value,
    wait_deadline: Value,
    /// While the running attempt waits for a rate-limit permit of its target: the target,
    /// its limit and when the permit is due; null otherwise.
    permit_wait: Option<PermitWaitJson<'a>>,
    /// A loop step's instances, in item order (left out for other steps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    instances: Vec<InstanceJson<'a>>,
}

/// One instance of a loop step.
#[derive(Debug, Serialize)]
pub struct InstanceJson<'a> {
    /// Its item's JSON, cut to 256 characters.
    item: &'a str,
    status: &'static str,
    attempts: u32,
    error: Value,
    started_at: Value,
    finished_at: Value,
}

/// A step's wait for a rate-limit permit.
#[derive(Debug, Serialize)]
pub struct PermitWaitJson<'a> {
    target: &'a str,
    limit: &'a str,
    until: Value,
}

/// One finished attempt of a step.
#[derive(Debug, Serialize)]
pub struct AttemptJson<'a> {
    attempt: u32,
    started_at: Value,
    finished_at: Value,
    error: Option<&'a str>,
}

/// The approval a step asked for, and its decision once made.
#[derive(Debug, Serialize)]
pub struct ApprovalJson<'a> {
    summary: &'a str,
    plan: Value,
    plan_hash: &'a str,
    approved: bool,
    decided_by: Value,
    /// An instruction step, confirmed by hand rather than approved.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    instruction: bool,
    /// What it was confirmed with; null before, and for other steps.
    confirmed: Value,
}

/// RFC 3339 with milliseconds in UTC, or null for the protocol's "unset" (0).
pub fn time(ms: i64) -> Value {
    match crate::format::system_time(ms) {
        Some(t) => Value::String(humantime::format_rfc3339_millis(t).to_string()),
        None => Value::Null,
    }
}

/// A string, or null when empty (proto3 cannot tell the two apart).
fn text(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// JSON text from the daemon, parsed; null when empty. Text that does not parse is kept as a
/// string rather than dropped, so nothing the daemon said is lost.
fn parsed(json: &str) -> Value {
    if json.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.to_owned()))
}

/// The JSON view of a run.
pub fn run(run: &Run) -> RunJson<'_> {
    let params = match parsed(&run.params_json) {
        Value::Null => Value::Object(Default::default()),
        params => params,
    };
    RunJson {
        id: &run.id,
        runbook: &run.runbook,
        version: &run.version,
        status: run.status().label(),
        params,
        dry_run: run.dry_run,
        created_at: time(run.created_at),
        started_at: time(run.started_at),
        finished_at: time(run.finished_at),
        error: text(&run.error),
        steps: run.steps.iter().map(step).collect(),
        retries: run
            .retries
            .iter()
            .map(|retry| RetryJson {
                by: &retry.by,
                at: time(retry.at),
                ended: retry.ended().label(),
                from: text(&retry.from),
                previous_version: text(&retry.previous_version),
                steps: &retry.steps,
            })
            .collect(),
    }
}

/// The JSON view of one step.
pub fn step(step: &StepRun) -> StepJson<'_> {
    StepJson {
        id: &step.id,
        uses: &step.uses,
        status: step.status().label(),
        attempts: step.attempts,
        output: parsed(&step.output_json),
        error: text(&step.error),
        started_at: time(step.started_at),
        finished_at: time(step.finished_at),
        approval: step.approval.as_ref().map(approval),
        retry_at: time(step.retry_at),
        history: step
            .history
            .iter()
            .map(|attempt| AttemptJson {
                attempt: attempt.attempt,
                started_at: time(attempt.started_at),
                finished_at: time(attempt.finished_at),
                error: Some(attempt.error.as_str()).filter(|e| !e.is_empty()),
            })
            .collect(),
        invocation_id: text(&step.invocation_id),
        resume_at: time(step.resume_at),
        wait_deadline: time(step.wait_deadline),
        permit_wait: step.permit_wait.as_ref().map(|wait| PermitWaitJson {
            target: &wait.target,
            limit: &wait.limit,
            until: time(wait.until),
        }),
        instances: step
            .instances
            .iter()
            .map(|instance| InstanceJson {
                item: &instance.item,
                status: instance.status().label(),
                attempts: instance.attempts,
                error: text(&instance.error),
                started_at: time(instance.started_at),
                finished_at: time(instance.finished_at),
            })
            .collect(),
    }
}

/// The JSON view of an approval.
pub fn approval(approval: &Approval) -> ApprovalJson<'_> {
    ApprovalJson {
        summary: &approval.summary,
        plan: parsed(&approval.plan_json),
        plan_hash: &approval.plan_hash,
        approved: approval.approved,
        decided_by: text(&approval.decided_by),
        instruction: approval.instruction,
        confirmed: parsed(&approval.confirmed_json),
    }
}

/// A located problem in a runbook file.
#[derive(Debug, Serialize)]
pub struct DiagnosticJson<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    message: &'a str,
}

/// The JSON view of a diagnostic (without the rendered snippet: scripts want the fields).
pub fn diagnostic(d: &Diagnostic) -> DiagnosticJson<'_> {
    DiagnosticJson {
        file: &d.file,
        line: d.line,
        column: d.column,
        message: &d.message,
    }
}

/// A runbook as `ls --json` prints it.
#[derive(Debug, Serialize)]
pub struct RunbookJson<'a> {
    name: &'a str,
    description: &'a str,
    path: &'a str,
    version: Value,
    valid: bool,
    steps: u32,
    updated_at: Value,
    diagnostics: Vec<DiagnosticJson<'a>>,
}

/// The JSON view of a runbook summary.
pub fn runbook(s: &RunbookSummary) -> RunbookJson<'_> {
    RunbookJson {
        name: &s.name,
        description: &s.description,
        path: &s.path,
        version: text(&s.version),
        valid: s.valid,
        steps: s.step_count,
        updated_at: time(s.updated_at),
        diagnostics: s.diagnostics.iter().map(diagnostic).collect(),
    }
}

/// A version of a runbook as `versions --json` and `rollback --json` print it. The source is
/// left out: `versions` never has it, and scripts that want it can read the file.
#[derive(Debug, Serialize)]
pub struct VersionJson<'a> {
    number: u32,
    version: &'a str,
    runbook: &'a str,
    created_at: Value,
    path: &'a str,
    cause: &'a str,
    current: bool,
}

/// The JSON view of a runbook version.
pub fn version(v: &RunbookVersion) -> VersionJson<'_> {
    VersionJson {
        number: v.number,
        version: &v.version,
        runbook: &v.runbook,
        created_at: time(v.created_at),
        path: &v.path,
        cause: &v.cause,
        current: v.current,
    }
}

/// The result of `diff --json`: the two versions compared and the unified diff between them
/// (empty when their sources are the same).
#[derive(Debug, Serialize)]
pub struct DiffJson<'a> {
    from: VersionJson<'a>,
    to: VersionJson<'a>,
    diff: &'a str,
}

/// The JSON view of a diff from `from` to `to`.
pub fn diff<'a>(from: &'a RunbookVersion, to: &'a RunbookVersion, diff: &'a str) -> DiffJson<'a> {
    DiffJson {
        from: version(from),
        to: version(to),
        diff,
    }
}

/// The result of `validate --json`.
#[derive(Debug, Serialize)]
pub struct ValidationJson<'a> {
    valid: bool,
    name: Value,
    diagnostics: Vec<DiagnosticJson<'a>>,
}

/// The JSON view of a validation result.
pub fn validation(v: &ValidateRunbookResponse) -> ValidationJson<'_> {
    ValidationJson {
        valid: v.valid,
        name: text(&v.name),
        diagnostics: v.diagnostics.iter().map(diagnostic).collect(),
    }
}

/// The daemon's status as `status --json` prints it.
#[derive(Debug, Serialize)]
pub struct StatusJson<'a> {
    daemon_version: &'a str,
    protocol_version: u32,
    client_protocol_version: u32,
    pid: u32,
    socket: String,
    data_dir: &'a str,
    runbooks_dir: &'a str,
    started_at: Value,
    plugins: &'a [String],
    active_runs: u32,
    /// Runs moved aside at start-up because their records could not be read.
    quarantined: Vec<Value>,
    /// Null while the database writes; else the failed write that stopped it.
    store_error: Value,
    /// Whether the daemon can take work, and why not when it cannot.
    ready: bool,
    not_ready: Option<&'a str>,
    store_bytes: u64,
    steps_in_flight: u32,
    approvals_waiting: u32,
    /// What the daemon counted since it started.
    counters: Value,
    /// Where `/metrics` is served, or null.
    metrics_listen: Option<&'a str>,
    cluster: Option<&'a str>,
}

/// The JSON view of the daemon's status; `socket` is the one the client used.
pub fn status<'a>(s: &'a StatusResponse, socket: &std::path::Path) -> StatusJson<'a> {
    StatusJson {
        daemon_version: &s.daemon_version,
        protocol_version: s.protocol_version,
        client_protocol_version: runbook_protocol::PROTOCOL_VERSION,
        pid: s.pid,
        socket: socket.display().to_string(),
        data_dir: &s.data_dir,
        runbooks_dir: &s.runbooks_dir,
        started_at: time(s.started_at),
        plugins: &s.plugins,
        active_runs: s.active_runs,
        quarantined: s
            .quarantined
            .iter()
            .map(|run| {
                serde_json::json!({
                    "run_id": run.run_id,
                    "reason": run.reason,
                    "quarantined_at": time(run.quarantined_at),
                })
            })
            .collect(),
        store_error: if s.store_error.is_empty() {
            Value::Null
        } else {
            serde_json::json!({ "error": s.store_error, "at": time(s.store_error_at) })
        },
        ready: s.not_ready.is_empty(),
        not_ready: Some(s.not_ready.as_str()).filter(|reason| !reason.is_empty()),
        store_bytes: s.store_bytes,
        steps_in_flight: s.steps_in_flight,
        approvals_waiting: s.approvals_waiting,
        counters: counters(s.counters.clone().unwrap_or_default()),
        metrics_listen: Some(s.metrics_listen.as_str()).filter(|addr| !addr.is_empty()),
        cluster: Some(s.cluster.as_str()).filter(|cluster| !cluster.is_empty()),
    }
}

/// The daemon's counters as `status --json` prints them: counts by status as objects.
fn counters(counters: runbook_protocol::v1::DaemonCounters) -> Value {
    let by_status = |list: Vec<runbook_protocol::v1::StatusCount>| {
        list.into_iter()
            .map(|count| (count.status, Value::from(count.count)))
            .collect::<serde_json::Map<String, Value>>()
    };
    serde_json::json!({
        "runs_started": counters.runs_started,
        "runs_finished": by_status(counters.runs_finished),
        "steps_finished": by_status(counters.steps_finished),
        "step_attempts": counters.step_attempts,
        "step_retries": counters.step_retries,
        "step_timeouts": counters.step_timeouts,
        "rate_limit_waits": counters.rate_limit_waits,
    })
}

/// One output line as `logs --json` prints it (one object per line).
#[derive(Debug, Serialize)]
pub struct OutputJson<'a> {
    seq: u64,
    at: Value,
    step: &'a str,
    stream: &'static str,
    line: &'a str,
}

/// The JSON views of an output event, one per line: the daemon stores several lines of one
/// stream in one event, and they share its `seq` and `at`. Empty for events that are not
/// output.
pub fn output(event: &RunEvent) -> Vec<OutputJson<'_>> {
    let Some(Kind::StepOutput(out)) = &event.kind else {
        return Vec::new();
    };
    let stream = stream_label(out.stream());
    out.line
        .split('\n')
        .map(|line| OutputJson {
            seq: event.seq,
            at: time(event.at),
            step: &out.step_id,
            stream,
            line,
        })
        .collect()
}

/// The lower-case name of an output stream.
pub fn stream_label(stream: OutputStream) -> &'static str {
    match stream {
        OutputStream::Stdout | OutputStream::Unspecified => "stdout",
        OutputStream::Stderr => "stderr",
        OutputStream::Log => "log",
    }
}

/// Serialises any of the views above as pretty JSON text.
pub fn to_string<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::{RunStatus, StepStatus};

    fn sample() -> Run {
        Run {
            id: "01JRUN".into(),
            runbook: "deploy".into(),
            version: "abc123".into(),
            status: RunStatus::Waiting as i32,
            params_json: r#"{"env":"staging"}"#.into(),
            steps: vec![
                StepRun {
                    id: "build".into(),
                    uses: "shell".into(),
                    status: StepStatus::Completed as i32,
                    attempts: 1,
                    output_json: r#"{"code":0}"#.into(),
                    started_at: 1_709_618_828_900,
                    finished_at: 1_709_618_830_000,
                    ..Default::default()
                },
                StepRun {
                    id: "deploy".into(),
                    uses: "shell".into(),
                    status: StepStatus::Waiting as i32,
                    approval: Some(Approval {
                        summary: "run ./deploy.sh".into(),
                        plan_json: r#"{"argv":["./deploy.sh"]}"#.into(),
                        plan_hash: "h".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            created_at: 1_709_618_828_000,
            started_at: 1_709_618_828_500,
            ..Default::default()
        }
    }

    #[test]
    fn run_json_has_the_documented_shape() {
        let value = serde_json::to_value(run(&sample())).expect("serialises");
        let expected = serde_json::json!({
            "id": "01JRUN",
            "runbook": "deploy",
            "version": "abc123",
            "status": "waiting",
            "params": {"env": "staging"},
            "dry_run": false,
            "created_at": "2024-03-05T06:07:08.000Z",
            "started_at": "2024-03-05T06:07:08.500Z",
            "finished_at": null,
            "error": null,
            "steps": [
                {
                    "id": "build", "uses": "shell", "status": "completed", "attempts": 1,
                    "output": {"code": 0}, "error": null,
                    "started_at": "2024-03-05T06:07:08.900Z",
                    "finished_at": "2024-03-05T06:07:10.000Z",
                    "approval": null, "retry_at": null, "history": [],
                    "invocation_id": null, "resume_at": null, "wait_deadline": null,
                    "permit_wait": null
                },
                {
                    "id": "deploy", "uses": "shell", "status": "waiting", "attempts": 0,
                    "output": null, "error": null, "started_at": null, "finished_at": null,
                    "approval": {
                        "summary": "run ./deploy.sh", "plan": {"argv": ["./deploy.sh"]},
                        "plan_hash": "h", "approved": false, "decided_by": null,
                        "confirmed": null
                    },
                    "retry_at": null, "history": [],
                    "invocation_id": null, "resume_at": null, "wait_deadline": null,
                    "permit_wait": null
                }
            ]
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn runbook_json_keeps_the_runnable_version_of_an_invalid_file() {
        let summary = RunbookSummary {
            name: "deploy".into(),
            path: "/rb/deploy.toml".into(),
            version: "0123456789abcdef".into(),
            valid: false,
            diagnostics: vec![Diagnostic {
                file: "deploy.toml".into(),
                line: 3,
                column: 1,
                message: "unknown field `stepz`".into(),
                rendered: "deploy.toml:3:1: unknown field `stepz`\n".into(),
            }],
            step_count: 2,
            updated_at: 1_709_618_828_000,
            ..Default::default()
        };
        let value = serde_json::to_value(runbook(&summary)).expect("serialises");
        let expected = serde_json::json!({
            "name": "deploy",
            "description": "",
            "path": "/rb/deploy.toml",
            "version": "0123456789abcdef",
            "valid": false,
            "steps": 2,
            "updated_at": "2024-03-05T06:07:08.000Z",
            "diagnostics": [
                {"file": "deploy.toml", "line": 3, "column": 1, "message": "unknown field `stepz`"}
            ]
        });
        assert_eq!(value, expected);
        let never_valid = RunbookSummary::default();
        let value = serde_json::to_value(runbook(&never_valid)).expect("serialises");
        assert_eq!(value["version"], Value::Null);
    }

    #[test]
    fn version_and_diff_json_have_the_documented_shape() {
        let old = RunbookVersion {
            runbook: "deploy".into(),
            number: 1,
            version: "aaaa".into(),
            created_at: 1_709_618_828_000,
            path: "/rb/deploy.toml".into(),
            cause: "file".into(),
            source: "a\n".into(),
            current: false,
        };
        let new = RunbookVersion {
            number: 3,
            version: "bbbb".into(),
            cause: "rollback to 1 by ana".into(),
            current: true,
            ..old.clone()
        };
        let value = serde_json::to_value(diff(&old, &new, "--- x\n")).expect("serialises");
        let expected = serde_json::json!({
            "from": {
                "number": 1, "version": "aaaa", "runbook": "deploy",
                "created_at": "2024-03-05T06:07:08.000Z", "path": "/rb/deploy.toml",
                "cause": "file", "current": false
            },
            "to": {
                "number": 3, "version": "bbbb", "runbook": "deploy",
                "created_at": "2024-03-05T06:07:08.000Z", "path": "/rb/deploy.toml",
                "cause": "rollback to 1 by ana", "current": true
            },
            "diff": "--- x\n"
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn empty_params_are_an_empty_object() {
        let value = serde_json::to_value(run(&Run::default())).expect("serialises");
        assert_eq!(value["params"], serde_json::json!({}));
        assert_eq!(value["status"], "unspecified");
    }
}

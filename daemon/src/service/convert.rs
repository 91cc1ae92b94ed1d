//! Stored records and runbooks as protocol messages.

use runbook_protocol::v1 as pb;

use crate::catalog::Entry;
use crate::events::DaemonEvent;
use crate::runbook::{Diagnostic, RateLimit, Runbook};
use crate::store::{
    ApprovalRecord, EventKind, EventRecord, HistoryEntry, INLINE_OUTPUT_BYTES, OutputStream,
    RunRecord, RunStatus, StepRecord, StepStatus,
};

pub fn run_status(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Pending => pb::RunStatus::Pending,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Waiting => pb::RunStatus::Waiting,
        RunStatus::Paused => pb::RunStatus::Paused,
        RunStatus::Completed => pb::RunStatus::Completed,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
        RunStatus::TimedOut => pb::RunStatus::TimedOut,
    }
}

/// The store's status for a protocol status; `None` for UNSPECIFIED.
pub fn run_status_from(status: pb::RunStatus) -> Option<RunStatus> {
    Some(match status {
        pb::RunStatus::Unspecified => return None,
        pb::RunStatus::Pending => RunStatus::Pending,
        pb::RunStatus::Running => RunStatus::Running,
        pb::RunStatus::Waiting => RunStatus::Waiting,
        pb::RunStatus::Paused => RunStatus::Paused,
        pb::RunStatus::Completed => RunStatus::Completed,
        pb::RunStatus::Failed => RunStatus::Failed,
        pb::RunStatus::Cancelled => RunStatus::Cancelled,
        pb::RunStatus::TimedOut => RunStatus::TimedOut,
    })
}

pub fn step_status(status: StepStatus) -> pb::StepStatus {
    match status {
        StepStatus::Pending => pb::StepStatus::Pending,
        StepStatus::Running => pb::StepStatus::Running,
        StepStatus::Waiting => pb::StepStatus::Waiting,
        StepStatus::Paused => pb::StepStatus::Paused,
        StepStatus::Completed => pb::StepStatus::Completed,
        StepStatus::Failed => pb::StepStatus::Failed,
        StepStatus::Cancelled => pb::StepStatus::Cancelled,
        StepStatus::TimedOut => pb::StepStatus::TimedOut,
        StepStatus::Skipped => pb::StepStatus::Skipped,
        StepStatus::Ambiguous => pb::StepStatus::Ambiguous,
    }
}

fn json_text(value: Option<&serde_json::Value>) -> String {
    value.map(serde_json::Value::to_string).unwrap_or_default()
}

pub fn approval(record: &ApprovalRecord) -> pb::Approval {
    let decision = record.decision.as_ref();
    pb::Approval {
        summary: record.summary.clone(),
        plan_json: record.plan.to_string(),
        plan_hash: record.plan_hash.clone(),
        requested_at: record.requested_at,
        decided_by: decision.map(|d| d.by.clone()).unwrap_or_default(),
        decided_at: decision.map_or(0, |d| d.at),
        approved: decision.is_some_and(|d| d.approved),
        instruction: record.instruction,
        inputs: record.inputs.iter().map(param_spec).collect(),
        confirmed_json: decision
            .and_then(|d| d.inputs.as_ref())
            .map(|inputs| serde_json::Value::Object(inputs.clone()).to_string())
            .unwrap_or_default(),
    }
}

/// A declared param or input as the API describes it.
fn param_spec(param: &crate::runbook::Param) -> pb::ParamSpec {
    pb::ParamSpec {
        name: param.name.clone(),
        r#type: param.kind.label().to_owned(),
        required: param.required,
        default_json: json_text(param.default.as_ref()),
        allowed_json: param.allowed.iter().map(ToString::to_string).collect(),
        description: param.description.clone(),
    }
}

/// A step of a `Run` message; its output inline when it fits in what is left of `budget`.
fn step(record: &StepRecord, budget: &mut usize) -> pb::StepRun {
    let size = record
        .output
        .as_ref()
        .map_or(record.output_bytes as usize, crate::store::json_len);
    let inline = record
        .output
        .as_ref()
        .filter(|_| size <= INLINE_OUTPUT_BYTES && size <= *budget);
    if inline.is_some() {
        *budget -= size;
    }
    pb::StepRun {
        id: record.id.clone(),
        uses: record.uses.clone(),
        status: step_status(record.status).into(),
        attempts: record.attempts,
        output_json: json_text(inline),
        output_bytes: size as u64,
        output_omitted: inline.is_none() && size > 0,
        log_omitted_bytes: record.log_omitted_bytes,
        error: record.error.clone().unwrap_or_default(),
        started_at: record.started_at,
        finished_at: record.finished_at,
        approval: record.approval.as_ref().map(approval),
        retry_at: record.retry_at,
        history: record
            .history
            .iter()
            .map(|attempt| pb::Attempt {
                attempt: attempt.attempt,
                started_at: attempt.started_at,
                finished_at: attempt.finished_at,
                error: attempt.error.clone().unwrap_or_default(),
            })
            .collect(),
        invocation_id: record
            .wait
            .as_ref()
            .and_then(|wait| wait.invocation_id.clone())
            .unwrap_or_default(),
        resume_at: record.wait.as_ref().map_or(0, |wait| wait.resume_at),
        wait_deadline: record.wait.as_ref().map_or(0, |wait| wait.deadline),
        permit_wait: record.permit_wait.as_ref().map(permit_wait),
        instances: record.instances.iter().map(instance).collect(),
    }
}

/// How much of a loop instance's item a run message carries.
const ITEM_CHARS: usize = 256;

fn instance(record: &crate::store::InstanceRecord) -> pb::Instance {
    let item = record.item.to_string();
    let item = match item.char_indices().nth(ITEM_CHARS) {
        Some((cut, _)) => format!("{}...", &item[..cut]),
        None => item,
    };
    pb::Instance {
        item,
        status: step_status(record.status).into(),
        attempts: record.attempts,
        error: record.error.clone().unwrap_or_default(),
        started_at: record.started_at,
        finished_at: record.finished_at,
    }
}

/// A target's shared state.
pub fn target(status: &crate::targets::TargetStatus) -> pb::TargetState {
    use crate::targets::Circuit;
    pb::TargetState {
        name: status.name.clone(),
        url: status.url.clone(),
        runbook: status.runbook.clone(),
        circuit: match status.circuit {
            Circuit::Closed => pb::CircuitState::Closed,
            Circuit::Open => pb::CircuitState::Open,
            Circuit::HalfOpen => pb::CircuitState::HalfOpen,
        }
        .into(),
        consecutive_failures: status.consecutive_failures,
        failure_threshold: status.failure_threshold,
        open_until: status.open_until,
        rate_limit: status
            .rate_limit
            .as_ref()
            .map(|limit| limit.text.clone())
            .unwrap_or_default(),
        burst: status.rate_limit.as_ref().map_or(0, RateLimit::burst),
        rate_limit_kind: status
            .rate_limit
            .as_ref()
            .map(|limit| limit.kind_label().to_owned())
            .unwrap_or_default(),
        attempts: status.attempts,
        rejected: status.rejected,
    }
}

/// Outputs a `Run` message carries inline in all, so that a run of many steps with large
/// outputs stays far below the API's message limit; the rest are read with GetStepOutput.
const RUN_INLINE_OUTPUTS: usize = 1024 * 1024;

pub fn run(record: &RunRecord, last_seq: u64) -> pb::Run {
    let mut budget = RUN_INLINE_OUTPUTS;
    pb::Run {
        id: record.id.clone(),
        runbook: record.runbook.clone(),
        version: record.version.clone(),
        status: run_status(record.status).into(),
        params_json: serde_json::Value::Object(record.params.clone()).to_string(),
        steps: record
            .steps
            .iter()
            .map(|record| step(record, &mut budget))
            .collect(),
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        error: record.error.clone().unwrap_or_default(),
        last_seq,
        dry_run: record.dry_run,
        retries: record.retries.iter().map(run_retry).collect(),
    }
}

fn run_retry(retry: &crate::store::RunRetry) -> pb::RunRetry {
    pb::RunRetry {
        by: retry.by.clone(),
        at: retry.at,
        ended: run_status(retry.ended).into(),
        from: retry.from.clone().unwrap_or_default(),
        previous_version: retry.previous_version.clone().unwrap_or_default(),
        steps: retry.steps.clone(),
    }
}

pub fn event(record: &EventRecord) -> pb::RunEvent {
    use pb::run_event::Kind;
    let kind = match &record.kind {
        EventKind::RunStatus { status, error } => Kind::RunStatus(pb::RunStatusChanged {
            status: run_status(*status).into(),
            error: error.clone().unwrap_or_default(),
        }),
        EventKind::StepStatus {
            step_id,
            status,
            attempt,
            error,
            output,
            output_omitted,
        } => Kind::StepStatus(pb::StepStatusChanged {
            step_id: step_id.clone(),
            status: step_status(*status).into(),
            attempt: *attempt,
            error: error.clone().unwrap_or_default(),
            output_json: json_text(output.as_ref()),
            output_omitted: *output_omitted,
        }),
        EventKind::StepOutput {
            step_id,
            stream,
            line,
        } => Kind::StepOutput(pb::StepOutput {
            step_id: step_id.clone(),
            stream: match stream {
                OutputStream::Stdout => pb::OutputStream::Stdout,
                OutputStream::Stderr => pb::OutputStream::Stderr,
                OutputStream::Log => pb::OutputStream::Log,
            }
            .into(),
            line: line.clone(),
        }),
        EventKind::ApprovalRequested {
            step_id,
            approval: record,
        } => Kind::ApprovalRequested(pb::ApprovalRequested {
            step_id: step_id.clone(),
            approval: Some(approval(record)),
        }),
        EventKind::StepRetrying {
            step_id,
            attempt,
            delay_ms,
            error,
        } => Kind::StepRetrying(pb::StepRetrying {
            step_id: step_id.clone(),
            attempt: *attempt,
            delay_ms: *delay_ms,
            error: error.clone(),
        }),
        EventKind::StepPermitWait { step_id, wait } => Kind::StepPermitWait(pb::StepPermitWait {
            step_id: step_id.clone(),
            wait: Some(permit_wait(wait)),
        }),
        EventKind::RunRetried { retry } => Kind::RunRetried(run_retry(retry)),
        EventKind::InstanceStatus {
            step_id,
            index,
            status,
            attempts,
            error,
        } => Kind::InstanceStatus(pb::InstanceStatusChanged {
            step_id: step_id.clone(),
            index: *index,
            status: step_status(*status).into(),
            attempts: *attempts,
            error: error.clone().unwrap_or_default(),
        }),
    };
    pb::RunEvent {
        run_id: record.run_id.clone(),
        seq: record.seq,
        at: record.at,
        kind: Some(kind),
    }
}

fn permit_wait(wait: &crate::store::PermitWait) -> pb::PermitWait {
    pb::PermitWait {
        target: wait.target.clone(),
        limit: wait.limit.clone(),
        until: wait.until,
    }
}

pub fn diagnostic(diagnostic: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        file: diagnostic.file.clone(),
        line: diagnostic.line,
        column: diagnostic.column,
        message: diagnostic.message.clone(),
        rendered: diagnostic.rendered.clone(),
    }
}

pub fn summary(entry: &Entry) -> pb::RunbookSummary {
    let current = entry.current.as_deref();
    pb::RunbookSummary {
        name: entry.name.clone(),
        description: current.map(|rb| rb.description.clone()).unwrap_or_default(),
        path: entry.path.display().to_string(),
        version: current.map(|rb| rb.version.clone()).unwrap_or_default(),
        valid: entry.diagnostics.is_empty(),
        diagnostics: entry.diagnostics.iter().map(diagnostic).collect(),
        step_count: current.map_or(0, |rb| u32::try_from(rb.steps.len()).unwrap_or(u32::MAX)),
        updated_at: entry.updated_at,
    }
}

/// A runbook in full; `needs_approval` tells whether a step waits for approval under the
/// daemon's policy.
pub fn detail(
    entry: &Entry,
    needs_approval: impl Fn(&crate::runbook::Step) -> bool,
) -> pb::RunbookDetail {
    let current: Option<&Runbook> = entry.current.as_deref();
    pb::RunbookDetail {
        summary: Some(summary(entry)),
        params: current
            .map(|rb| rb.params.iter().map(param_spec).collect())
            .unwrap_or_default(),
        steps: current
            .map(|rb| {
                rb.steps
                    .iter()
                    .map(|step| pb::StepSpec {
                        id: step.id.clone(),
                        uses: step.uses.clone(),
                        needs: step.needs.clone(),
                        condition: step.condition.clone().unwrap_or_default(),
                        approval: needs_approval(step),
                        description: step.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        source: current.map_or_else(
            || std::fs::read_to_string(&entry.path).unwrap_or_default(),
            |rb| rb.source.clone(),
        ),
        // Filled by the handler, which reads the file.
        file_source: String::new(),
        file_hash: String::new(),
    }
}

/// A history entry; `source` is empty where a listing leaves it out.
pub fn version(entry: &HistoryEntry, current: bool, source: String) -> pb::RunbookVersion {
    pb::RunbookVersion {
        runbook: entry.name.clone(),
        number: entry.number,
        version: entry.version.clone(),
        created_at: entry.created_at,
        path: entry.path.clone(),
        cause: entry.cause.clone(),
        source,
        current,
    }
}

pub fn daemon_event(time: i64, event: &DaemonEvent) -> pb::DaemonEvent {
    use pb::daemon_event::Kind;
    let kind = match event {
        DaemonEvent::VersionAdded(entry) => Kind::VersionAdded(version(entry, true, String::new())),
        DaemonEvent::RunbookInvalid {
            name,
            path,
            diagnostics,
        } => Kind::RunbookInvalid(pb::RunbookInvalid {
            runbook: name.clone(),
            path: path.clone(),
            diagnostics: diagnostics.iter().map(diagnostic).collect(),
        }),
        DaemonEvent::RunbookRemoved { name, path } => Kind::RunbookRemoved(pb::RunbookRemoved {
            runbook: name.clone(),
            path: path.clone(),
        }),
        DaemonEvent::PluginLoaded { kind, path } => Kind::PluginLoaded(pb::PluginChanged {
            kind: kind.clone(),
            path: path.clone(),
        }),
        DaemonEvent::PluginRejected { path, error } => Kind::PluginRejected(pb::PluginRejected {
            path: path.clone(),
            error: error.clone(),
        }),
        DaemonEvent::PluginRemoved { kind, path } => Kind::PluginRemoved(pb::PluginChanged {
            kind: kind.clone(),
            path: path.clone(),
        }),
    };
    pb::DaemonEvent {
        time,
        kind: Some(kind),
    }
}

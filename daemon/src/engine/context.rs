//! What templates, conditions and plugins can read about a run: `params`, `steps.<id>.output`,
//! `steps.<id>.status` and `run`.

use crate::store::{RunRecord, StepStatus};

/// The JSON object templates and `if` conditions are evaluated against.
pub fn template_context(run: &RunRecord) -> serde_json::Value {
    let steps: serde_json::Map<String, serde_json::Value> = run
        .steps
        .iter()
        .map(|step| {
            (
                step.id.clone(),
                serde_json::json!({
                    "status": status_label(step.status),
                    "output": step.output.clone().unwrap_or(serde_json::Value::Null),
                }),
            )
        })
        .collect();
    serde_json::json!({
        "params": run.params,
        "steps": steps,
        "run": { "id": run.id, "runbook": run.runbook },
    })
}

/// The label a status has in templates and on the wire, for example `timed_out`.
pub fn status_label(status: StepStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

//! What templates, conditions and plugins can read about a run: `params`, `steps.<id>.output`,
//! `steps.<id>.status`, `run`, and for a step's `with` also `secrets` (placeholders that only
//! the host turns into values) and `targets`.

use crate::plugins::SecretSource;
use crate::runbook::{Runbook, Step};
use crate::store::{RunRecord, StepStatus};
use crate::template;

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

/// A step's `with` rendered for its plugin: templates filled in (secrets as placeholders),
/// and a `target` name replaced by the target's rendered table.
pub fn render_step_config(
    run: &RunRecord,
    runbook: &Runbook,
    step: &Step,
    secrets: Option<&dyn SecretSource>,
) -> Result<serde_json::Value, String> {
    let mut context = template_context(run);
    let placeholders: serde_json::Map<String, serde_json::Value> = secrets
        .map(SecretSource::placeholders)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, placeholder)| (name, serde_json::Value::String(placeholder)))
        .collect();
    context["secrets"] = serde_json::Value::Object(placeholders);
    // The http plugin fills this in once an async invocation has an id.
    context["invocation_id"] = serde_json::Value::String("{{ invocation_id }}".into());
    let base = template::context(&context);
    let mut targets = serde_json::Map::new();
    for target in &runbook.targets {
        let url = template::render(&target.url, &base)
            .map_err(|err| format!("target `{}`: url: {err}", target.name))?;
        targets.insert(
            target.name.clone(),
            serde_json::json!({ "name": target.name, "url": url }),
        );
    }
    context["targets"] = serde_json::Value::Object(targets);
    let values = template::context(&context);
    let mut config = template::render_json(&step.with, &values)?;
    if let Some(target) = step.target.as_ref().and_then(|name| runbook.target(name)) {
        let mut resolved = serde_json::json!({
            "name": target.name,
            "url": context["targets"][&target.name]["url"],
            "headers": template::render_json(&target.headers, &values)
                .map_err(|err| format!("target `{}`: headers: {err}", target.name))?,
            "auth": target
                .auth
                .as_ref()
                .map(|auth| template::render_json(auth, &values))
                .transpose()
                .map_err(|err| format!("target `{}`: auth: {err}", target.name))?,
            "timeout": target.timeout.map(|t| humantime::format_duration(t).to_string()),
        });
        if let Some(fields) = resolved.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        config["target"] = resolved;
    }
    Ok(config)
}

/// The label a status has in templates and on the wire, for example `timed_out`.
pub fn status_label(status: StepStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

//! What templates, conditions and plugins can read about a run: `params`, `steps.<id>.output`
//! and `steps.<id>.status` of the steps the template names, `run`, and for a step's `with`
//! also `secrets` (placeholders that only the host turns into values) and `targets`.
//!
//! A step's values hold only the steps its templates and `if` read (`Step::reads`, found when
//! the runbook is loaded), so building them costs the same at step 10 and at step 10,000.

use std::collections::BTreeMap;

use super::state::RunState;
use crate::plugins::SecretSource;
use crate::runbook::{Runbook, Step};
use crate::template;

/// The JSON object `definition`'s templates and `if` are evaluated against: params, the run,
/// and the steps it reads.
pub fn step_values(state: &RunState, definition: &Step) -> serde_json::Value {
    let steps: serde_json::Map<String, serde_json::Value> = definition
        .reads
        .iter()
        .filter_map(|id| state.step(id))
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
    let run = &state.run;
    serde_json::json!({
        "params": run.params,
        "steps": steps,
        "run": { "id": run.id, "runbook": run.runbook },
    })
}

/// What a step's `if` is evaluated against.
pub fn condition_values(state: &RunState, definition: &Step) -> serde_json::Value {
    step_values(state, definition)
}

/// One template rendered against `context` plus `secrets` (as placeholders).
pub fn render_text(
    mut context: serde_json::Value,
    secrets: Option<&dyn SecretSource>,
    text: &str,
) -> Result<String, String> {
    context["secrets"] = secret_placeholders(secrets);
    template::render(text, &template::context(&context))
}

fn secret_placeholders(secrets: Option<&dyn SecretSource>) -> serde_json::Value {
    serde_json::Value::Object(
        secrets
            .map(SecretSource::placeholders)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, placeholder)| (name, serde_json::Value::String(placeholder)))
            .collect(),
    )
}

/// A step's `with` rendered for its plugin: templates filled in (secrets as placeholders),
/// and a `target` name replaced by the target's rendered table. Also the runbook's
/// connection URLs, rendered the same way.
pub fn render_step_config(
    mut context: serde_json::Value,
    runbook: &Runbook,
    step: &Step,
    secrets: Option<&dyn SecretSource>,
) -> Result<(serde_json::Value, BTreeMap<String, String>), String> {
    context["secrets"] = secret_placeholders(secrets);
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
    let connections = runbook
        .connections
        .iter()
        .map(|connection| {
            template::render(&connection.url, &values)
                .map(|url| (connection.name.clone(), url))
                .map_err(|err| format!("connection `{}`: url: {err}", connection.name))
        })
        .collect::<Result<_, String>>()?;
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
    Ok((config, connections))
}

/// The label a status has in templates and on the wire, for example `timed_out`.
pub fn status_label(status: impl serde::Serialize) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

//! `targets`: the targets steps have used, with their circuit breakers and rate limits.

use std::io::Write;

use runbook_protocol::v1::{CircuitState, ListTargetsRequest, TargetState};

use super::Ctx;
use super::table::Table;
use crate::error::EXIT_OK;
use crate::format;

/// Lists every target the daemon has seen since it started.
pub async fn list(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let targets = client
        .list_targets(ListTargetsRequest {})
        .await?
        .into_inner()
        .targets;
    if ctx.json {
        let items: Vec<serde_json::Value> = targets.iter().map(target_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(EXIT_OK);
    }
    if targets.is_empty() {
        writeln!(out, "no target has been used since the daemon started")?;
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(&[
        "RUNBOOK", "TARGET", "URL", "CIRCUIT", "FAILURES", "RATE", "ATTEMPTS", "REJECTED",
    ]);
    for target in &targets {
        table.row(vec![
            target.runbook.clone(),
            target.name.clone(),
            target.url.clone(),
            circuit_cell(target),
            if target.failure_threshold == 0 {
                "-".into()
            } else {
                format!(
                    "{}/{}",
                    target.consecutive_failures, target.failure_threshold
                )
            },
            rate_cell(target),
            target.attempts.to_string(),
            target.rejected.to_string(),
        ]);
    }
    table.write(out)?;
    Ok(EXIT_OK)
}

fn circuit_label(target: &TargetState) -> &'static str {
    match target.circuit() {
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half-open",
        CircuitState::Closed | CircuitState::Unspecified => "closed",
    }
}

fn circuit_cell(target: &TargetState) -> String {
    if target.failure_threshold == 0 {
        return "-".into();
    }
    match target.circuit() {
        CircuitState::Open => format!(
            "open ({} left)",
            format::duration(target.open_until - format::now_ms())
        ),
        _ => circuit_label(target).into(),
    }
}

fn rate_cell(target: &TargetState) -> String {
    match (
        target.rate_limit.as_str(),
        target.rate_limit_kind.as_str(),
        target.burst,
    ) {
        ("", _, _) => "-".into(),
        (window, "sliding_window", _) => format!("{window} (sliding window)"),
        (rate, _, 0 | 1) => rate.to_owned(),
        (rate, _, burst) => format!("{rate} burst {burst}"),
    }
}

fn target_json(target: &TargetState) -> serde_json::Value {
    serde_json::json!({
        "runbook": target.runbook,
        "name": target.name,
        "url": target.url,
        "circuit": circuit_label(target),
        "consecutive_failures": target.consecutive_failures,
        "failure_threshold": target.failure_threshold,
        "open_until": target.open_until,
        "rate_limit": target.rate_limit,
        "rate_limit_kind": target.rate_limit_kind,
        "burst": target.burst,
        "attempts": target.attempts,
        "rejected": target.rejected,
    })
}

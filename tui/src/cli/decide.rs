//! `approve`, `deny`, `resolve` and `cancel`: the operator's decisions about a run.

use std::io::Write;

use runbook_protocol::v1::{
    ApproveRequest, CancelRunRequest, DenyRequest, ResolveAction, ResolveRequest, Run,
};

use super::Ctx;
use crate::error::EXIT_OK;
use crate::json;

/// `approve RUN STEP`.
pub async fn approve(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    step: String,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let request = ApproveRequest {
        run_id: run,
        step_id: step.clone(),
    };
    let run = client.approve(request).await?.into_inner();
    confirm(
        ctx,
        out,
        &run,
        &format!("approved step {step} of run {}", run.id),
    )
}

/// `deny RUN STEP [--reason R]`.
pub async fn deny(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    step: String,
    reason: String,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let request = DenyRequest {
        run_id: run,
        step_id: step.clone(),
        reason,
    };
    let run = client.deny(request).await?.into_inner();
    confirm(
        ctx,
        out,
        &run,
        &format!("denied step {step} of run {}", run.id),
    )
}

/// `resolve RUN STEP retry|skip|fail`.
pub async fn resolve(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    step: String,
    action: ResolveAction,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let request = ResolveRequest {
        run_id: run,
        step_id: step.clone(),
        action: action as i32,
    };
    let run = client.resolve(request).await?.into_inner();
    let verb = match action {
        ResolveAction::Retry => "retrying",
        ResolveAction::Skip => "skipped",
        ResolveAction::Fail | ResolveAction::Unspecified => "failed",
    };
    confirm(
        ctx,
        out,
        &run,
        &format!("{verb} step {step} of run {}", run.id),
    )
}

/// `cancel RUN`.
pub async fn cancel(ctx: &Ctx, out: &mut dyn Write, run: String) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let run = client
        .cancel_run(CancelRunRequest { id: run })
        .await?
        .into_inner();
    confirm(
        ctx,
        out,
        &run,
        &format!("cancelled run {} ({})", run.id, run.status().label()),
    )
}

/// The run as JSON, or a one-line confirmation.
fn confirm(ctx: &Ctx, out: &mut dyn Write, run: &Run, message: &str) -> anyhow::Result<u8> {
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::run(run))?)?;
    } else {
        writeln!(out, "{message}")?;
    }
    Ok(EXIT_OK)
}

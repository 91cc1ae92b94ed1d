//! `approve`, `confirm`, `deny`, `resolve`, `cancel`, `pause`, `resume` and `complete`: the operator's decisions about a run.

use std::io::Write;

use anyhow::Context as _;
use runbook_protocol::v1::{
    ApproveRequest, CancelRunRequest, CompleteStepRequest, ConfirmStepRequest, DenyRequest,
    PauseRunRequest, ResolveAction, ResolveRequest, ResumeRunRequest, Run, StepStatus,
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
    acknowledge(
        ctx,
        out,
        &run,
        &format!("approved step {step} of run {}", run.id),
    )
}

/// `confirm RUN STEP [-i KEY=VALUE]...`.
pub async fn confirm_step(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    step: String,
    inputs: Vec<(String, String)>,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let request = ConfirmStepRequest {
        run_id: run,
        step_id: step.clone(),
        inputs: inputs.into_iter().collect(),
    };
    let run = client.confirm_step(request).await?.into_inner();
    acknowledge(
        ctx,
        out,
        &run,
        &format!("confirmed step {step} of run {}", run.id),
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
    acknowledge(
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
    acknowledge(
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
    acknowledge(
        ctx,
        out,
        &run,
        &format!("cancelled run {} ({})", run.id, run.status().label()),
    )
}

/// `pause RUN` (`pause` true) or `resume RUN`.
pub async fn pause(ctx: &Ctx, out: &mut dyn Write, run: String, pause: bool) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let (run, verb) = if pause {
        let run = client.pause_run(PauseRunRequest { id: run }).await?;
        (run.into_inner(), "paused")
    } else {
        let run = client.resume_run(ResumeRunRequest { id: run }).await?;
        (run.into_inner(), "resumed")
    };
    acknowledge(
        ctx,
        out,
        &run,
        &format!("{verb} run {} ({})", run.id, run.status().label()),
    )
}

/// `complete RUN STEP [--output JSON | --failed --reason R]`: `failure` is the reason when
/// the step is to fail.
pub async fn complete(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    step: String,
    output: Option<String>,
    failure: Option<String>,
) -> anyhow::Result<u8> {
    let output_json = match output.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the output from stdin")?;
            text
        }
        Some(text) => text.to_owned(),
        None => String::new(),
    };
    if !output_json.trim().is_empty() {
        serde_json::from_str::<serde_json::Value>(&output_json)
            .context("--output is not valid JSON")?;
    }
    let mut client = ctx.target.client().await?;
    let request = CompleteStepRequest {
        run_id: run,
        step: step.clone(),
        status: if failure.is_some() {
            StepStatus::Failed
        } else {
            StepStatus::Completed
        } as i32,
        output_json: output_json.trim().to_owned(),
        error: failure.clone().unwrap_or_default(),
    };
    let run = client.complete_step(request).await?.into_inner();
    let verb = if failure.is_some() {
        "failed"
    } else {
        "completed"
    };
    acknowledge(
        ctx,
        out,
        &run,
        &format!("{verb} step {step} of run {}", run.id),
    )
}

/// The run as JSON, or a one-line confirmation.
fn acknowledge(ctx: &Ctx, out: &mut dyn Write, run: &Run, message: &str) -> anyhow::Result<u8> {
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::run(run))?)?;
    } else {
        writeln!(out, "{message}")?;
    }
    Ok(EXIT_OK)
}

//! `run`, `runs`, `show` and `watch`: starting runs, listing them, and following one live.

use std::io::Write;

use runbook_protocol::v1::{
    GetRunRequest, GetStepOutputRequest, ListRunsRequest, RetryRunRequest, Run, RunStatus,
    StartRunRequest, StepStatus,
};

use super::Ctx;
use super::args::{RunArgs, RunsArgs};
use super::follow::{self, Follower, Until};
use super::table::Table;
use crate::daemon::Client;
use crate::error::{EXIT_FAILED, EXIT_OK};
use crate::{format, json};

/// The daemon serves at most this many runs per page.
const PAGE_MAX: u32 = 1000;

/// `run NAME [-p k=v]... [--wait]`.
pub async fn start(ctx: &Ctx, out: &mut dyn Write, args: RunArgs) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let run = client
        .start_run(StartRunRequest {
            runbook: args.name,
            params: args.params.into_iter().collect(),
            dry_run: args.dry_run,
            only: args.only,
            from: args.from.unwrap_or_default(),
            to: args.to.unwrap_or_default(),
            outputs_from: args.outputs_from.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if args.wait {
        return follow_to_end(ctx, out, client, run.id).await;
    }
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::run(&run))?)?;
    } else {
        writeln!(out, "{}", run.id)?;
    }
    Ok(EXIT_OK)
}

/// `retry RUN [--from STEP] [--latest] [--wait]`.
pub async fn retry(
    ctx: &Ctx,
    out: &mut dyn Write,
    run: String,
    from: Option<String>,
    latest: bool,
    wait: bool,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let run = client
        .retry_run(RetryRunRequest {
            id: run,
            from: from.unwrap_or_default(),
            latest,
        })
        .await?
        .into_inner();
    if !ctx.json
        && let Some(retry) = run.retries.last()
    {
        writeln!(out, "run {}: {}", run.id, follow::retry_summary(retry))?;
    }
    if wait {
        // What happened before the retry is history: follow from the retry on.
        let last_seq = run.last_seq;
        return follow_from(ctx, out, client, run.id, last_seq).await;
    }
    if ctx.json {
        writeln!(out, "{}", json::to_string(&json::run(&run))?)?;
    }
    Ok(EXIT_OK)
}

/// `watch RUN`: follows an existing run like `run --wait`.
pub async fn watch(ctx: &Ctx, out: &mut dyn Write, run: &str) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    // Resolves a prefix to the full id, and reports an unknown run before any streaming.
    let run = client
        .get_run(GetRunRequest { id: run.to_owned() })
        .await?
        .into_inner();
    follow_to_end(ctx, out, client, run.id).await
}

/// Prints the run's events until it ends (only its final JSON with `--json`), and exits 0
/// if it completed, 1 otherwise.
async fn follow_to_end(
    ctx: &Ctx,
    out: &mut dyn Write,
    client: Client,
    run_id: String,
) -> anyhow::Result<u8> {
    follow_from(ctx, out, client, run_id, 0).await
}

/// [`follow_to_end`] from the events after `after_seq`.
async fn follow_from(
    ctx: &Ctx,
    out: &mut dyn Write,
    client: Client,
    run_id: String,
    after_seq: u64,
) -> anyhow::Result<u8> {
    let mut follower = Follower::after(&ctx.target, client.clone(), run_id.clone(), after_seq);
    let json = ctx.json;
    let mut run = follower
        .follow(Until::RunEnds, |event| {
            if !json {
                for line in follow::event_lines(&run_id, event) {
                    writeln!(out, "{line}")?;
                }
            }
            Ok(())
        })
        .await?;
    if json {
        fill_outputs(&mut client.clone(), &mut run).await?;
        writeln!(out, "{}", json::to_string(&json::run(&run))?)?;
    } else {
        writeln!(out, "{}", follow::final_line(&run))?;
    }
    Ok(exit_code(&run))
}

/// 0 for a completed run, 1 for any other end.
fn exit_code(run: &Run) -> u8 {
    if run.status() == RunStatus::Completed {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `runs [--runbook N] [--status S] [--limit N]`.
pub async fn list(ctx: &Ctx, out: &mut dyn Write, args: RunsArgs) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let mut runs: Vec<Run> = Vec::new();
    let mut page_token = String::new();
    while (runs.len() as u64) < u64::from(args.limit) {
        let wanted = args.limit - runs.len() as u32;
        let page = client
            .list_runs(ListRunsRequest {
                runbook: args.runbook.clone().unwrap_or_default(),
                status: args.status.map_or(0, |s| s as i32),
                limit: wanted.min(PAGE_MAX),
                page_token: page_token.clone(),
            })
            .await?
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    runs.truncate(args.limit as usize);
    if ctx.json {
        let view: Vec<_> = runs.iter().map(json::run).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
    } else {
        write_runs(out, &runs, format::now_ms())?;
    }
    Ok(EXIT_OK)
}

fn write_runs(out: &mut dyn Write, runs: &[Run], now: i64) -> std::io::Result<()> {
    let mut table = Table::new(&["ID", "RUNBOOK", "STATUS", "STARTED", "DURATION"]);
    for run in runs {
        let started = if run.started_at > 0 {
            run.started_at
        } else {
            run.created_at
        };
        table.row(vec![
            run.id.clone(),
            run.runbook.clone(),
            run.status().label().to_owned(),
            format::timestamp(started),
            format::elapsed(run.started_at, run.finished_at, now),
        ]);
    }
    table.write(out)
}

/// `show RUN`: the run's header and one line per step.
pub async fn show(ctx: &Ctx, out: &mut dyn Write, run: &str) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let mut run = client
        .get_run(GetRunRequest { id: run.to_owned() })
        .await?
        .into_inner();
    if ctx.json {
        fill_outputs(&mut client, &mut run).await?;
        writeln!(out, "{}", json::to_string(&json::run(&run))?)?;
    } else {
        write_run(out, &run, format::now_ms())?;
    }
    Ok(EXIT_OK)
}

/// Reads, page by page, every output that a `Run` message left out because it was too large
/// to carry inline, so that `--json` always shows whole outputs.
pub async fn fill_outputs(client: &mut Client, run: &mut Run) -> anyhow::Result<()> {
    let run_id = run.id.clone();
    for (index, step) in run
        .steps
        .iter_mut()
        .enumerate()
        .filter(|(_, step)| step.output_omitted)
    {
        let mut text = Vec::with_capacity(usize::try_from(step.output_bytes).unwrap_or(0));
        loop {
            let page = client
                .get_step_output(GetStepOutputRequest {
                    run_id: run_id.clone(),
                    step_id: step.id.clone(),
                    attempt: Some(step.attempts),
                    offset: text.len() as u64,
                    limit: 0,
                    step_index: u32::try_from(index).ok(),
                })
                .await?
                .into_inner();
            let last =
                page.data.is_empty() || page.offset + page.data.len() as u64 >= page.total_bytes;
            text.extend(page.data);
            if last {
                break;
            }
        }
        step.output_json = String::from_utf8(text)
            .map_err(|_| anyhow::anyhow!("the output of step `{}` is not UTF-8", step.id))?;
        step.output_omitted = false;
    }
    Ok(())
}

fn write_run(out: &mut dyn Write, run: &Run, now: i64) -> std::io::Result<()> {
    let version = format::short_hash(&run.version);
    writeln!(out, "run       {}", run.id)?;
    writeln!(
        out,
        "runbook   {} (version {version})",
        format::printable(&run.runbook)
    )?;
    write!(out, "status    {}", run.status().label())?;
    if !run.error.is_empty() {
        write!(out, ": {}", format::printable_lines(&run.error))?;
    }
    writeln!(out)?;
    // JSON escapes C0 characters but not DEL or C1 ones, which a terminal may still obey.
    if !run.params_json.is_empty() && run.params_json != "{}" {
        writeln!(out, "params    {}", format::printable(&run.params_json))?;
    }
    writeln!(out, "created   {}", format::timestamp(run.created_at))?;
    if run.started_at > 0 {
        writeln!(
            out,
            "started   {} ({})",
            format::timestamp(run.started_at),
            format::elapsed(run.started_at, run.finished_at, now)
        )?;
    }
    if run.finished_at > 0 {
        writeln!(out, "finished  {}", format::timestamp(run.finished_at))?;
    }
    for retry in &run.retries {
        writeln!(
            out,
            "retried   {}: {} (it had ended {})",
            format::timestamp(retry.at),
            follow::retry_summary(retry),
            retry.ended().label()
        )?;
    }
    writeln!(out)?;

    let mut table = Table::new(&["STEP", "USES", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]);
    for step in &run.steps {
        table.row(vec![
            step.id.clone(),
            step.uses.clone(),
            step.status().label().to_owned(),
            step.attempts.to_string(),
            format::elapsed(step.started_at, step.finished_at, now),
            step.error.lines().next().unwrap_or_default().to_owned(),
        ]);
        // A loop's instances under it, each with its item.
        for (index, instance) in step.instances.iter().enumerate() {
            table.row(vec![
                format!("  {}[{index}]", step.id),
                instance.item.clone(),
                instance.status().label().to_owned(),
                instance.attempts.to_string(),
                format::elapsed(instance.started_at, instance.finished_at, now),
                instance.error.lines().next().unwrap_or_default().to_owned(),
            ]);
        }
    }
    table.write(out)?;
    for step in &run.steps {
        let Some(approval) = &step.approval else {
            continue;
        };
        if step.status() != StepStatus::Waiting || approval.decided_at > 0 {
            continue;
        }
        writeln!(out)?;
        if approval.instruction {
            writeln!(
                out,
                "step {} waits for an operator to do this by hand and confirm it:",
                step.id
            )?;
        } else {
            writeln!(out, "step {} waits for approval to:", step.id)?;
        }
        // The approver decides from these lines: nothing in them may redraw the terminal, and
        // escaping before splitting shows even a CR that ends a line.
        for line in format::printable_lines(&approval.summary).lines() {
            writeln!(out, "    {line}")?;
        }
        for detail in crate::state::approvals::plan_details(approval) {
            writeln!(out, "    {}", format::printable(&detail))?;
        }
        writeln!(
            out,
            "{} with: {}",
            if approval.instruction {
                "confirm"
            } else {
                "approve"
            },
            crate::state::approvals::decide_command(&run.id, &step.id, approval)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_protocol::v1::{Approval, StepRun};

    const T: i64 = 1_709_618_828_000;

    fn sample() -> Run {
        Run {
            id: "01JRUN".into(),
            runbook: "deploy".into(),
            version: "0123456789abcdef".into(),
            status: RunStatus::Waiting as i32,
            params_json: r#"{"env":"staging"}"#.into(),
            created_at: T,
            started_at: T,
            steps: vec![
                StepRun {
                    id: "build".into(),
                    uses: "shell".into(),
                    status: StepStatus::Completed as i32,
                    attempts: 1,
                    started_at: T,
                    finished_at: T + 2_500,
                    ..Default::default()
                },
                StepRun {
                    id: "migrate".into(),
                    uses: "shell".into(),
                    status: StepStatus::Waiting as i32,
                    approval: Some(Approval {
                        summary: "run ./migrate.sh --env staging".into(),
                        requested_at: T + 2_500,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn show_prints_steps_and_pending_approvals() {
        let mut out = Vec::new();
        write_run(&mut out, &sample(), T + 10_000).expect("writes");
        insta::assert_snapshot!(String::from_utf8(out).expect("utf-8"));
    }

    #[test]
    fn runs_are_a_table() {
        let mut finished = sample();
        finished.id = "01JOLD".into();
        finished.status = RunStatus::Failed as i32;
        finished.finished_at = T + 65_000;
        let mut out = Vec::new();
        write_runs(&mut out, &[sample(), finished], T + 10_000).expect("writes");
        insta::assert_snapshot!(String::from_utf8(out).expect("utf-8"));
    }

    #[test]
    fn only_completed_runs_exit_zero() {
        let mut run = sample();
        run.status = RunStatus::Completed as i32;
        assert_eq!(exit_code(&run), EXIT_OK);
        for status in [RunStatus::Failed, RunStatus::Cancelled, RunStatus::TimedOut] {
            run.status = status as i32;
            assert_eq!(exit_code(&run), EXIT_FAILED);
        }
    }
}

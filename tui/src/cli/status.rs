//! `status` and `daemon start|stop|status`: what the daemon is, and its lifecycle.

use std::io::Write;

use runbook_protocol::v1::ShutdownRequest;

use super::Ctx;
use crate::error::{EXIT_FAILED, EXIT_OK};
use crate::{daemon, json};

/// Prints the daemon's status; `never_start` (for `daemon status`) reports a missing daemon
/// instead of starting one. Exits 1 when the daemon answers but cannot take work.
pub async fn status(ctx: &Ctx, out: &mut dyn Write, never_start: bool) -> anyhow::Result<u8> {
    let (_, status) = if never_start {
        ctx.target.connect_only().await?
    } else {
        ctx.target.connect_or_start().await?
    };
    if ctx.json {
        writeln!(
            out,
            "{}",
            json::to_string(&json::status(&status, &ctx.target.socket))?
        )?;
        return Ok(readiness_exit(&status));
    }
    let plugins = if status.plugins.is_empty() {
        "(none)".to_owned()
    } else {
        status.plugins.join(", ")
    };
    writeln!(
        out,
        "runbookd {} (protocol {}), pid {}",
        status.daemon_version, status.protocol_version, status.pid
    )?;
    writeln!(out, "socket       {}", ctx.target.socket.display())?;
    writeln!(out, "data dir     {}", status.data_dir)?;
    writeln!(out, "runbooks     {}", status.runbooks_dir)?;
    writeln!(out, "plugins      {plugins}")?;
    writeln!(out, "active runs  {}", status.active_runs)?;
    for run in &status.quarantined {
        writeln!(
            out,
            "quarantined  {} (not resumed: {})",
            run.run_id,
            crate::format::printable(&run.reason)
        )?;
    }
    if status.store_error.is_empty() {
        writeln!(out, "store        ok")?;
    } else {
        writeln!(
            out,
            "store        last write failed: {} at {}; writes are refused: free space in the data directory, and runbookd restarts by itself",
            crate::format::printable(&status.store_error),
            json::time(status.store_error_at)
                .as_str()
                .unwrap_or("an unknown time")
        )?;
    }
    writeln!(
        out,
        "store size   {}",
        crate::format::bytes(status.store_bytes)
    )?;
    if status.started_at > 0 {
        let up = crate::format::duration(crate::format::now_ms() - status.started_at);
        writeln!(out, "up           {up}")?;
    }
    write_counters(out, &status)?;
    if !status.metrics_listen.is_empty() {
        writeln!(
            out,
            "metrics      http://{}/metrics (health: /healthz, /readyz)",
            status.metrics_listen
        )?;
    }
    if !status.cluster.is_empty() {
        writeln!(out, "cluster      {}", status.cluster)?;
    }
    if status.not_ready.is_empty() {
        writeln!(out, "ready        yes")?;
    } else {
        writeln!(
            out,
            "ready        no: {}",
            crate::format::printable(&status.not_ready)
        )?;
    }
    Ok(readiness_exit(&status))
}

/// What the daemon counted since it started, in two lines.
fn write_counters(
    out: &mut dyn Write,
    status: &runbook_protocol::v1::StatusResponse,
) -> std::io::Result<()> {
    let counters = status.counters.clone().unwrap_or_default();
    let by_status = |list: &[runbook_protocol::v1::StatusCount]| {
        if list.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = list
            .iter()
            .map(|count| format!("{} {}", count.count, count.status.replace('_', " ")))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    writeln!(
        out,
        "runs         {} started since start-up{}; {} steps running, {} approvals waiting",
        counters.runs_started,
        by_status(&counters.runs_finished),
        status.steps_in_flight,
        status.approvals_waiting
    )?;
    writeln!(
        out,
        "steps        {} attempts{}; {} retried, {} timed out, {} waited for a rate limit",
        counters.step_attempts,
        by_status(&counters.steps_finished),
        counters.step_retries,
        counters.step_timeouts,
        counters.rate_limit_waits
    )
}

/// 0 when the daemon can take work, 1 when it says it cannot.
fn readiness_exit(status: &runbook_protocol::v1::StatusResponse) -> u8 {
    if status.not_ready.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `daemon start`: starts a daemon unless one answers already.
pub async fn start(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    // Starting is what the user asked for, whatever `--no-autostart` says.
    let target = daemon::Target {
        autostart: true,
        ..ctx.target.clone()
    };
    let (_, status) = target.connect_or_start().await?;
    if ctx.json {
        writeln!(
            out,
            "{}",
            json::to_string(&json::status(&status, &ctx.target.socket))?
        )?;
    } else {
        writeln!(
            out,
            "runbookd is running (pid {}) on {}",
            status.pid,
            ctx.target.socket.display()
        )?;
    }
    Ok(EXIT_OK)
}

/// `daemon stop`: asks the daemon to shut down and waits until its socket stops answering.
/// Stopping a daemon that is not running succeeds, so scripts can call it unconditionally.
pub async fn stop(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Ok((mut client, status)) = daemon::probe(&ctx.target.socket).await else {
        writeln!(
            out,
            "runbookd is not running on {}",
            ctx.target.socket.display()
        )?;
        return Ok(EXIT_OK);
    };
    // A daemon may drop the connection as it goes down instead of answering: that is success.
    let mut grace = std::time::Duration::ZERO;
    match client.shutdown(ShutdownRequest {}).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            grace = std::time::Duration::from_millis(u64::try_from(answer.grace_ms).unwrap_or(0));
            if !answer.runs_in_flight.is_empty() {
                writeln!(
                    out,
                    "runs with steps still running get up to {} to finish; what still runs then is left to crash recovery at the next start: {}",
                    crate::format::duration(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)),
                    answer.runs_in_flight.join(", ")
                )?;
            }
        }
        Err(err) if crate::error::is_disconnect(&err) => {}
        Err(err) => return Err(err.into()),
    }
    // Our own connection would keep a graceful shutdown waiting.
    drop(client);
    if ctx.target.wait_until_stopped(status.pid, grace).await? {
        writeln!(out, "runbookd (pid {}) stopped", status.pid)?;
    } else {
        writeln!(
            out,
            "runbookd (pid {}) no longer answers but has not exited yet",
            status.pid
        )?;
    }
    Ok(EXIT_OK)
}

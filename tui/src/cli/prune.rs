//! `prune`: removes ended runs with all their records, by age and/or count, or by the
//! daemon's `[retention]` policy; `--dry-run` lists what would go.

use std::io::Write;

use runbook_protocol::v1::{PruneRunsRequest, PruneRunsResponse};

use super::Ctx;
use super::table::Table;
use crate::error::EXIT_OK;
use crate::{format, json};

/// What `runbook prune` was asked.
pub struct PruneArgs {
    pub older_than: Option<std::time::Duration>,
    pub max_runs: Option<u32>,
    pub dry_run: bool,
}

pub async fn prune(ctx: &Ctx, out: &mut dyn Write, args: PruneArgs) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let answer = client
        .prune_runs(PruneRunsRequest {
            older_than_ms: args
                .older_than
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            max_runs: args.max_runs,
            dry_run: args.dry_run,
        })
        .await?
        .into_inner();
    if ctx.json {
        writeln!(out, "{}", json::to_string(&answer_json(&answer))?)?;
        return Ok(EXIT_OK);
    }
    let count = answer.runs.len();
    let runs = if count == 1 { "run" } else { "runs" };
    if answer.dry_run {
        writeln!(
            out,
            "would remove {count} ended {runs} (dry run: nothing removed)"
        )?;
    } else {
        writeln!(
            out,
            "removed {count} ended {runs}; the store is {} on disk (was {})",
            format::bytes(answer.store_bytes_after),
            format::bytes(answer.store_bytes_before)
        )?;
    }
    if count > 0 {
        let mut table = Table::new(&["RUN", "RUNBOOK", "STATUS", "ENDED"]);
        for run in &answer.runs {
            table.row(vec![
                run.run_id.clone(),
                run.runbook.clone(),
                run.status().label().to_owned(),
                json::time(run.finished_at)
                    .as_str()
                    .unwrap_or("-")
                    .to_owned(),
            ]);
        }
        table.write(out)?;
    }
    Ok(EXIT_OK)
}

fn answer_json(answer: &PruneRunsResponse) -> serde_json::Value {
    serde_json::json!({
        "dry_run": answer.dry_run,
        "runs": answer.runs.iter().map(|run| serde_json::json!({
            "id": run.run_id,
            "runbook": run.runbook,
            "status": run.status().label(),
            "finished_at": json::time(run.finished_at),
        })).collect::<Vec<_>>(),
        "store_bytes_before": answer.store_bytes_before,
        "store_bytes_after": answer.store_bytes_after,
    })
}

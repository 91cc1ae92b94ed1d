//! `audit`: the daemon's audit log, every request that changed something or tried to.

use std::io::Write;

use runbook_protocol::v1::{AuditLogEntry, GetRunRequest, ListAuditRequest};

use super::Ctx;
use super::table::Table;
use crate::error::EXIT_OK;
use crate::{format, json};

/// What `runbook audit` was asked.
pub struct AuditArgs {
    pub since: Option<std::time::Duration>,
    pub action: Option<String>,
    pub run: Option<String>,
    pub limit: u32,
}

pub async fn audit(ctx: &Ctx, out: &mut dyn Write, args: AuditArgs) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    // A run id prefix, as every other command takes, becomes the full id.
    let run_id = match &args.run {
        Some(prefix) => {
            client
                .get_run(GetRunRequest { id: prefix.clone() })
                .await?
                .into_inner()
                .id
        }
        None => String::new(),
    };
    let since = args.since.map_or(0, |age| {
        format::now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
    });
    let entries = client
        .list_audit(ListAuditRequest {
            since,
            action: args.action.unwrap_or_default(),
            run_id,
            limit: args.limit,
        })
        .await?
        .into_inner()
        .entries;
    if ctx.json {
        let items: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        writeln!(out, "no audit entry matches")?;
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(&["TIME", "USER", "ACTION", "TARGET", "RESULT", "DETAIL"]);
    for entry in &entries {
        table.row(vec![
            json::time(entry.at).as_str().unwrap_or("-").to_owned(),
            entry.user.clone(),
            entry.action.clone(),
            format::printable(&format::audit_target(entry)).into_owned(),
            entry.result.clone(),
            format::printable(&entry.detail).into_owned(),
        ]);
    }
    table.write(out)?;
    Ok(EXIT_OK)
}

fn entry_json(entry: &AuditLogEntry) -> serde_json::Value {
    let text = |value: &str| {
        if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::from(value)
        }
    };
    serde_json::json!({
        "at": json::time(entry.at),
        "uid": entry.uid,
        "user": entry.user,
        "action": entry.action,
        "runbook": text(&entry.runbook),
        "run": text(&entry.run_id),
        "step": text(&entry.step),
        "secret": text(&entry.secret),
        "result": entry.result,
        "detail": text(&entry.detail),
    })
}

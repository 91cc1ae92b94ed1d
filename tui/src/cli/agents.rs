//! `agents`: the remote agents the daemon knows on NATS, and whether each is alive.

use std::io::Write;

use runbook_protocol::v1::{Agent, ListAgentsRequest};

use super::Ctx;
use super::table::Table;
use crate::error::EXIT_OK;

/// Lists every agent with its labels, version, last heartbeat, running steps and health.
pub async fn list(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let listed = client.list_agents(ListAgentsRequest {}).await?.into_inner();
    if ctx.json {
        let items: Vec<serde_json::Value> = listed.agents.iter().map(agent_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(EXIT_OK);
    }
    if !listed.cluster {
        writeln!(
            out,
            "no cluster: the daemon has no `[cluster]` in its config, so it has no agents"
        )?;
        return Ok(EXIT_OK);
    }
    if listed.agents.is_empty() {
        writeln!(
            out,
            "no agents yet: start one with `runbookd agent --nats URL --name NAME --labels LABELS`"
        )?;
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(&[
        "NAME",
        "LABELS",
        "VERSION",
        "HEARTBEAT",
        "RUNNING",
        "HEALTH",
    ]);
    for agent in &listed.agents {
        table.row(vec![
            agent.name.clone(),
            agent.labels.join(","),
            agent.version.clone(),
            crate::format::heartbeat(agent.heartbeat_age_ms),
            agent.running.to_string(),
            if agent.live { "live" } else { "gone" }.into(),
        ]);
    }
    table.write(out)?;
    Ok(EXIT_OK)
}

fn agent_json(agent: &Agent) -> serde_json::Value {
    serde_json::json!({
        "name": agent.name,
        "labels": agent.labels,
        "version": agent.version,
        "heartbeat_age_ms": agent.heartbeat_age_ms,
        "running": agent.running,
        "live": agent.live,
        "started_at": agent.started_at,
    })
}

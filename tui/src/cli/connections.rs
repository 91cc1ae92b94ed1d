//! `connections`: the database connections the daemon knows, and whether each answers.

use std::io::Write;

use runbook_protocol::v1::{ConnectionState, ListConnectionsRequest};

use super::Ctx;
use super::table::Table;
use crate::error::EXIT_OK;

/// Lists every connection with its database, location (never credentials) and reachability.
pub async fn list(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let connections = client
        .list_connections(ListConnectionsRequest {})
        .await?
        .into_inner()
        .connections;
    if ctx.json {
        let items: Vec<serde_json::Value> = connections.iter().map(connection_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(EXIT_OK);
    }
    if connections.is_empty() {
        writeln!(
            out,
            "no connections: define them in the daemon config ([connections.NAME]) or in a runbook"
        )?;
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(&["NAME", "DEFINED IN", "DATABASE", "LOCATION", "STATUS"]);
    for connection in &connections {
        table.row(vec![
            connection.name.clone(),
            connection.defined_in.clone(),
            dash(&connection.database),
            dash(&connection.location),
            status_cell(connection),
        ]);
    }
    table.write(out)?;
    Ok(EXIT_OK)
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

fn status_cell(connection: &ConnectionState) -> String {
    match (connection.checked, connection.reachable) {
        (false, _) => format!("not tried ({})", connection.error),
        (true, true) => "reachable".into(),
        (true, false) => format!("unreachable: {}", connection.error),
    }
}

fn connection_json(connection: &ConnectionState) -> serde_json::Value {
    serde_json::json!({
        "name": connection.name,
        "defined_in": connection.defined_in,
        "database": connection.database,
        "location": connection.location,
        "checked": connection.checked,
        "reachable": connection.reachable,
        "error": if connection.error.is_empty() { serde_json::Value::Null } else { connection.error.clone().into() },
    })
}

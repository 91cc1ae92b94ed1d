//! `runbook connections`: every database connection the daemon config and the current
//! runbooks define, each tried once, shown without credentials.

use std::time::Duration;

use super::Engine;
use crate::plugins::{ConnectionUrl, SecretScope, SqlGrant};

/// How long one connection may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One connection as listed.
#[derive(Debug, Clone)]
pub struct ConnectionStatus {
    pub name: String,
    pub defined_in: String,
    pub database: String,
    pub location: String,
    /// `None` when it could not be tried (its URL reads params), else whether it answered.
    pub reachable: Option<Result<(), String>>,
}

impl Engine {
    /// Lists and tries every connection.
    pub async fn connections(&self) -> Vec<ConnectionStatus> {
        let mut found: Vec<(String, String, Option<ConnectionUrl>, String)> = self
            .inner
            .policy
            .connections
            .iter()
            .map(|(name, url)| {
                (
                    name.clone(),
                    "daemon config".to_owned(),
                    Some(url.clone()),
                    String::new(),
                )
            })
            .collect();
        for entry in self.inner.catalog.list() {
            let Some(runbook) = entry.current else {
                continue;
            };
            // A URL that reads params or steps cannot be rendered outside a run.
            let outside_a_run = serde_json::json!({
                "params": {},
                "steps": {},
                "run": { "id": "", "runbook": runbook.name },
            });
            for connection in &runbook.connections {
                let rendered = super::context::render_text(
                    outside_a_run.clone(),
                    self.inner.secrets.as_deref(),
                    &connection.url,
                );
                let (url, problem) = match rendered {
                    Ok(url) => (Some(ConnectionUrl::Text(url)), String::new()),
                    Err(err) => (None, err),
                };
                found.push((
                    connection.name.clone(),
                    format!("runbook {}", runbook.name),
                    url,
                    problem,
                ));
            }
        }
        let mut statuses = Vec::with_capacity(found.len());
        for (name, defined_in, url, problem) in found {
            let Some(url) = url else {
                statuses.push(ConnectionStatus {
                    name,
                    defined_in,
                    database: String::new(),
                    location: String::new(),
                    reachable: None,
                });
                tracing::debug!(problem = %problem, "connection not tried");
                continue;
            };
            let grant = SqlGrant {
                connection: name.clone(),
                url,
                statements: Vec::new(),
                // The pool steps that write use: reaching it is what `connections` reports.
                read_only: false,
            };
            // Connection URLs are the daemon's own to resolve: any secret may be one.
            let scope = SecretScope::new(self.inner.secrets.clone(), self.vault_names());
            let (database, location, result) = self
                .inner
                .plugins
                .probe_connection(&grant, &scope, PROBE_TIMEOUT)
                .await;
            statuses.push(ConnectionStatus {
                name,
                defined_in,
                database,
                location,
                reachable: Some(result),
            });
        }
        statuses
    }
}

//! `ListPlugins`, `GrantPlugin` and `RevokePlugin`: what each plugin imports and is granted,
//! and the operator's grants, stored by the daemon and applied without a restart.

use runbook_protocol::v1 as pb;
use tonic::Status;

use crate::plugins::{Approval, MAX_KIND_LEN, Origin, PluginGrant, PluginHost, is_step_kind};

/// Most hosts or connections one request may name.
const MAX_GRANT_ENTRIES: usize = 256;
/// Longest host pattern or connection name.
const MAX_ENTRY_LEN: usize = 255;

pub fn list(plugins: &PluginHost) -> pb::ListPluginsResponse {
    let grants = plugins.grants();
    pb::ListPluginsResponse {
        plugins: plugins
            .listing()
            .into_iter()
            .map(|plugin| {
                let builtin = plugin.origin == Origin::Builtin;
                let (configured, granted) = if builtin || plugin.kind.is_empty() {
                    (None, None)
                } else {
                    (
                        Some(to_pb(&grants.configured(&plugin.kind))),
                        Some(to_pb(&grants.stored(&plugin.kind))),
                    )
                };
                pb::Plugin {
                    kind: plugin.kind,
                    version: plugin.version,
                    builtin,
                    path: match plugin.origin {
                        Origin::File(path) => path.display().to_string(),
                        Origin::Builtin => String::new(),
                    },
                    sha256: plugin.hash,
                    imports: plugin.imports,
                    capabilities: plugin.capabilities,
                    configured,
                    granted,
                    refused: plugin.refused.unwrap_or_default(),
                    wit_version: plugin.wit_version,
                }
            })
            .collect(),
    }
}

/// The grant a request names, checked: a kind that could be one, and bounded lists.
pub fn requested(
    plugins: &PluginHost,
    kind: &str,
    grant: Option<pb::PluginGrant>,
) -> Result<PluginGrant, Status> {
    user_kind(plugins, kind)?;
    grant_of(grant)
}

/// Checks that `kind` could name a user plugin: a well-formed kind, not a built-in one.
pub fn user_kind(plugins: &PluginHost, kind: &str) -> Result<(), Status> {
    if !is_step_kind(kind) {
        return Err(Status::invalid_argument(format!(
            "`{kind}` is not a step kind (lowercase letters, digits, `-` and `_`, at most {MAX_KIND_LEN})"
        )));
    }
    if plugins.descriptor(kind).is_ok() && plugins.user_grant(kind).is_none() {
        return Err(Status::invalid_argument(format!(
            "`{kind}` is a built-in plugin: it is not granted, installed or removed; the daemon config's `[http] allowed_hosts` and `[approvals]` govern it"
        )));
    }
    Ok(())
}

/// A grant from a request, with bounded lists of well-formed entries.
pub fn grant_of(grant: Option<pb::PluginGrant>) -> Result<PluginGrant, Status> {
    let grant = grant.unwrap_or_default();
    for (field, entries) in [("hosts", &grant.hosts), ("connections", &grant.connections)] {
        if entries.len() > MAX_GRANT_ENTRIES {
            return Err(Status::invalid_argument(format!(
                "{field}: at most {MAX_GRANT_ENTRIES} at once"
            )));
        }
        if let Some(bad) = entries.iter().find(|entry| {
            entry.is_empty()
                || entry.len() > MAX_ENTRY_LEN
                || entry.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            return Err(Status::invalid_argument(format!(
                "{field}: `{bad}` is not a name (1 to {MAX_ENTRY_LEN} characters, no spaces)"
            )));
        }
    }
    let approval = match grant.approval.as_str() {
        "" => None,
        text => Some(Approval::parse(text).ok_or_else(|| {
            Status::invalid_argument(format!(
                "approval: `{text}` is neither `required` nor `auto`"
            ))
        })?),
    };
    Ok(PluginGrant {
        hosts: grant.hosts.into_iter().collect(),
        connections: grant.connections.into_iter().collect(),
        process: grant.process,
        jwt: grant.jwt,
        approval,
    })
}

/// What an audit entry says about a grant.
pub fn describe(grant: &PluginGrant) -> String {
    let mut parts = Vec::new();
    if !grant.hosts.is_empty() {
        parts.push(format!("hosts {}", join(&grant.hosts)));
    }
    if !grant.connections.is_empty() {
        parts.push(format!("connections {}", join(&grant.connections)));
    }
    if grant.process {
        parts.push("process".to_owned());
    }
    if grant.jwt {
        parts.push("jwt".to_owned());
    }
    if let Some(approval) = grant.approval {
        parts.push(format!("approval {}", approval.as_str()));
    }
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
}

fn join(entries: &std::collections::BTreeSet<String>) -> String {
    entries.iter().cloned().collect::<Vec<_>>().join(" ")
}

fn to_pb(grant: &PluginGrant) -> pb::PluginGrant {
    pb::PluginGrant {
        hosts: grant.hosts.iter().cloned().collect(),
        connections: grant.connections.iter().cloned().collect(),
        process: grant.process,
        jwt: grant.jwt,
        approval: grant
            .approval
            .map(|approval| approval.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// Largest component `InstallPlugin` accepts: far above a Rust plugin (the built-in ones are
/// under 4 MiB), with room for a Python one, which carries its interpreter.
pub const MAX_PLUGIN_BYTES: usize = 128 * 1024 * 1024;

/// An `InstallPlugin` upload: the component's bytes (at most [`MAX_PLUGIN_BYTES`]) and the
/// grant its first chunk names.
pub async fn receive(
    mut upload: tonic::Streaming<pb::InstallPluginChunk>,
) -> Result<(Vec<u8>, Option<pb::PluginGrant>), Status> {
    let mut bytes = Vec::new();
    let mut grant = None;
    let mut first = true;
    while let Some(chunk) = upload.message().await? {
        if std::mem::take(&mut first) {
            grant = chunk.grant;
        }
        if bytes.len() + chunk.data.len() > MAX_PLUGIN_BYTES {
            return Err(Status::invalid_argument(format!(
                "the component is larger than {} MiB",
                MAX_PLUGIN_BYTES >> 20
            )));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    if bytes.is_empty() {
        return Err(Status::invalid_argument("no component was sent"));
    }
    Ok((bytes, grant))
}

/// Writes `bytes` as `target` in its directory all at once: into a hidden file beside it
/// (which the plugins watcher ignores), synced, then renamed over `target`, so that the daemon
/// never loads half a file and a crash leaves the old one or the new one.
pub fn write_atomically(target: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".install-")
        .suffix(".part")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(target).map_err(|err| err.error)?;
    std::fs::File::open(dir)?.sync_all()
}

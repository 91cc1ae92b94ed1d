//! `plugin ls|grant|revoke|install|rm`: the daemon's plugins, the host interfaces each imports,
//! what the operator granted user plugins, and installing and removing them.

use std::io::Write;

use anyhow::Context as _;
use runbook_protocol::v1::{
    GrantPluginRequest, InstallPluginChunk, ListPluginsRequest, ListPluginsResponse, Plugin,
    PluginGrant, RemovePluginRequest, RevokePluginRequest,
};
use serde::Serialize;

use super::Ctx;
use super::args::GrantArgs;
use super::table::Table;
use crate::error::{EXIT_OK, Failure};
use crate::json;

/// `plugin ls`.
pub async fn ls(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let listed = client
        .list_plugins(ListPluginsRequest {})
        .await?
        .into_inner();
    write_listing(ctx, out, &listed)?;
    Ok(EXIT_OK)
}

/// `plugin grant KIND ...`: prints the plugins as they are afterwards.
pub async fn grant(
    ctx: &Ctx,
    out: &mut dyn Write,
    kind: String,
    args: GrantArgs,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let listed = client
        .grant_plugin(GrantPluginRequest {
            kind,
            grant: Some(to_pb(args)),
        })
        .await?
        .into_inner();
    write_listing(ctx, out, &listed)?;
    Ok(EXIT_OK)
}

/// `plugin revoke KIND ...`: prints the plugins as they are afterwards.
pub async fn revoke(
    ctx: &Ctx,
    out: &mut dyn Write,
    kind: String,
    args: GrantArgs,
    all: bool,
) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let listed = client
        .revoke_plugin(RevokePluginRequest {
            kind,
            grant: Some(to_pb(args)),
            all,
        })
        .await?
        .into_inner();
    write_listing(ctx, out, &listed)?;
    Ok(EXIT_OK)
}

/// Largest component the daemon accepts (its `MAX_PLUGIN_BYTES`); checked here first so
/// that nothing that large is sent for nothing.
const MAX_PLUGIN_BYTES: u64 = 128 * 1024 * 1024;
/// Bytes per upload message, far below the protocol's message cap.
const CHUNK_BYTES: usize = 1024 * 1024;

/// `plugin install FILE ...`: prints the plugins as they are afterwards.
pub async fn install(
    ctx: &Ctx,
    out: &mut dyn Write,
    file: &std::path::Path,
    args: GrantArgs,
) -> anyhow::Result<u8> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > MAX_PLUGIN_BYTES {
        return Err(Failure::Input(format!(
            "{} is larger than {} MiB, the largest component the daemon accepts",
            file.display(),
            MAX_PLUGIN_BYTES >> 20
        ))
        .into());
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut grant = Some(to_pb(args));
    let chunks: Vec<InstallPluginChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|data| InstallPluginChunk {
            grant: grant.take(),
            data: data.to_vec(),
        })
        .collect();
    let mut client = ctx.target.client().await?;
    let listed = client
        .install_plugin(tokio_stream::iter(chunks))
        .await?
        .into_inner();
    write_listing(ctx, out, &listed)?;
    Ok(EXIT_OK)
}

/// `plugin rm KIND`: prints the plugins as they are afterwards.
pub async fn rm(ctx: &Ctx, out: &mut dyn Write, kind: String) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    let listed = client
        .remove_plugin(RemovePluginRequest { kind })
        .await?
        .into_inner();
    write_listing(ctx, out, &listed)?;
    Ok(EXIT_OK)
}

fn to_pb(args: GrantArgs) -> PluginGrant {
    PluginGrant {
        hosts: args.hosts,
        connections: args.connections,
        process: args.process,
        jwt: args.jwt,
        approval: args.approval.unwrap_or_default(),
    }
}

fn write_listing(
    ctx: &Ctx,
    out: &mut dyn Write,
    listed: &ListPluginsResponse,
) -> anyhow::Result<()> {
    if ctx.json {
        let view: Vec<PluginJson<'_>> = listed.plugins.iter().map(plugin_json).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "KIND", "VERSION", "WIT", "SOURCE", "IMPORTS", "GRANTS", "STATUS",
    ]);
    for plugin in &listed.plugins {
        table.row(vec![
            if plugin.kind.is_empty() {
                "-".into()
            } else {
                plugin.kind.clone()
            },
            plugin.version.clone(),
            plugin.wit_version.clone(),
            if plugin.builtin {
                "built in".into()
            } else {
                plugin.path.clone()
            },
            Some(crate::format::plugin_interfaces(plugin).join(","))
                .filter(|names| !names.is_empty())
                .unwrap_or_else(|| "-".into()),
            crate::format::plugin_grants(plugin),
            if plugin.refused.is_empty() {
                "loaded".into()
            } else {
                "refused".into()
            },
        ]);
    }
    table.write(out)?;
    for plugin in listed.plugins.iter().filter(|p| !p.refused.is_empty()) {
        writeln!(out, "\n{} refused: {}", plugin.path, plugin.refused)?;
    }
    Ok(())
}

/// A plugin as scripts see it.
#[derive(Debug, Serialize)]
struct PluginJson<'a> {
    kind: &'a str,
    version: &'a str,
    builtin: bool,
    path: &'a str,
    sha256: &'a str,
    /// The `runbook:plugin` WIT package version it was built against.
    wit_version: &'a str,
    imports: &'a [String],
    capabilities: &'a [String],
    /// From the daemon config's `[plugins.KIND]`; null for a built-in plugin.
    configured: Option<GrantJson<'a>>,
    /// From `plugin grant`; null for a built-in plugin.
    granted: Option<GrantJson<'a>>,
    loaded: bool,
    /// Why it is not loaded; null when it is.
    refused: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct GrantJson<'a> {
    hosts: &'a [String],
    connections: &'a [String],
    process: bool,
    jwt: bool,
    /// `required` or `auto`; null: the plugin's own default.
    approval: Option<&'a str>,
}

fn grant_json(grant: Option<&PluginGrant>) -> Option<GrantJson<'_>> {
    grant.map(|grant| GrantJson {
        hosts: &grant.hosts,
        connections: &grant.connections,
        process: grant.process,
        jwt: grant.jwt,
        approval: Some(grant.approval.as_str()).filter(|approval| !approval.is_empty()),
    })
}

fn plugin_json(plugin: &Plugin) -> PluginJson<'_> {
    PluginJson {
        kind: &plugin.kind,
        version: &plugin.version,
        builtin: plugin.builtin,
        path: &plugin.path,
        sha256: &plugin.sha256,
        wit_version: &plugin.wit_version,
        imports: &plugin.imports,
        capabilities: &plugin.capabilities,
        configured: grant_json(plugin.configured.as_ref()),
        granted: grant_json(plugin.granted.as_ref()),
        loaded: plugin.refused.is_empty(),
        refused: Some(plugin.refused.as_str()).filter(|reason| !reason.is_empty()),
    }
}

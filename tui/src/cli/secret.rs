//! `secret set|ls|rm|log`: the daemon's secret vault. A value goes from stdin or a no-echo
//! prompt straight into the `SetSecret` request; nothing here ever prints one.

use std::io::{IsTerminal as _, Read as _, Write};

use runbook_protocol::v1::{
    ListSecretsRequest, ListSecretsResponse, RemoveSecretRequest, SecretAudit, SecretInfo,
    SetSecretRequest,
};
use secrecy::zeroize::Zeroize as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use super::SecretCommand;
use super::table::Table;
use crate::error::{EXIT_OK, Failure};
use crate::{format, json};

/// The longest name the daemon accepts.
const MAX_NAME_LEN: usize = 128;
/// The largest value the daemon accepts, in bytes; stdin is read up to one byte more, to tell.
const MAX_VALUE_LEN: usize = 64 * 1024;

/// Runs one `secret` subcommand.
pub async fn secret(ctx: &Ctx, out: &mut dyn Write, command: SecretCommand) -> anyhow::Result<u8> {
    match command {
        SecretCommand::Set { name } => set(ctx, out, name).await,
        SecretCommand::Ls => ls(ctx, out).await,
        SecretCommand::Rm { name } => rm(ctx, out, name).await,
        SecretCommand::Log => log(ctx, out).await,
    }
}

/// Checks a name as the daemon will, so that a typo is reported before the value is typed.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let rule = "use letters, digits and `_`, not starting with a digit";
    if raw.is_empty() {
        return Err(format!("the name is empty; {rule}"));
    }
    if raw.chars().count() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} characters"));
    }
    if raw.starts_with(|c: char| c.is_ascii_digit())
        || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("invalid name `{raw}`; {rule}"));
    }
    Ok(raw.to_owned())
}

/// `secret set NAME`: the value from stdin when it is not a terminal, else from a prompt.
async fn set(ctx: &Ctx, out: &mut dyn Write, name: String) -> anyhow::Result<u8> {
    // Connected first, so that nobody types a value for a daemon that is not there.
    let mut client = ctx.target.client().await?;
    let prompt_name = name.clone();
    let value = tokio::task::spawn_blocking(move || read_value(&prompt_name)).await??;
    let info = client
        .set_secret(SetSecretRequest {
            name,
            value: value.expose_secret().to_owned(),
        })
        .await?
        .into_inner();
    if ctx.json {
        writeln!(out, "{}", json::to_string(&secret_json(&info))?)?;
    } else {
        writeln!(out, "set secret {}", info.name)?;
    }
    Ok(EXIT_OK)
}

/// The value to store: all of stdin less one trailing newline (what `echo` and most files end
/// with), or typed twice without echo on the terminal.
fn read_value(name: &str) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let value = if stdin.is_terminal() {
        let first = SecretString::from(rpassword::prompt_password(format!("Value for {name}: "))?);
        let again = SecretString::from(rpassword::prompt_password(format!(
            "Value for {name} (again): "
        ))?);
        if first.expose_secret() != again.expose_secret() {
            return Err(Failure::Input("the two values differ; nothing was set".into()).into());
        }
        first
    } else {
        let mut bytes = Vec::new();
        let limit = u64::try_from(MAX_VALUE_LEN + 2).unwrap_or(u64::MAX);
        stdin.lock().take(limit).read_to_end(&mut bytes)?;
        strip_newline(&mut bytes);
        match String::from_utf8(bytes) {
            Ok(text) => SecretString::from(text),
            Err(err) => {
                err.into_bytes().zeroize();
                return Err(Failure::Input("the value on stdin is not UTF-8 text".into()).into());
            }
        }
    };
    if value.expose_secret().is_empty() {
        return Err(Failure::Input(format!("the value of secret `{name}` is empty")).into());
    }
    if value.expose_secret().len() > MAX_VALUE_LEN {
        return Err(Failure::Input(format!(
            "the value of secret `{name}` is larger than {} KiB",
            MAX_VALUE_LEN / 1024
        ))
        .into());
    }
    Ok(value)
}

/// Drops one trailing `\n` (or `\r\n`), wiping what it drops.
fn strip_newline(bytes: &mut Vec<u8>) {
    let cut = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        0
    };
    let keep = bytes.len() - cut;
    bytes[keep..].zeroize();
    bytes.truncate(keep);
}

/// `secret ls`: name, when it was last set and by whom.
async fn ls(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let listed = list(ctx).await?;
    if ctx.json {
        let view: Vec<_> = listed.secrets.iter().map(secret_json).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
    } else {
        write_secrets(out, &listed.secrets)?;
    }
    Ok(EXIT_OK)
}

fn write_secrets(out: &mut dyn Write, secrets: &[SecretInfo]) -> std::io::Result<()> {
    let mut table = Table::new(&["NAME", "UPDATED", "BY"]);
    for secret in secrets {
        table.row(vec![
            secret.name.clone(),
            format::timestamp(secret.updated_at),
            secret.updated_by.clone(),
        ]);
    }
    table.write(out)
}

/// `secret rm NAME`.
async fn rm(ctx: &Ctx, out: &mut dyn Write, name: String) -> anyhow::Result<u8> {
    let mut client = ctx.target.client().await?;
    client
        .remove_secret(RemoveSecretRequest { name: name.clone() })
        .await?;
    if ctx.json {
        let view = RemovedJson {
            name: &name,
            removed: true,
        };
        writeln!(out, "{}", json::to_string(&view)?)?;
    } else {
        writeln!(out, "removed secret {name}")?;
    }
    Ok(EXIT_OK)
}

/// `secret log`: every set and removal, oldest first.
async fn log(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<u8> {
    let listed = list(ctx).await?;
    if ctx.json {
        let view: Vec<_> = listed.audit.iter().map(audit_json).collect();
        writeln!(out, "{}", json::to_string(&view)?)?;
    } else {
        write_audit(out, &listed.audit)?;
    }
    Ok(EXIT_OK)
}

fn write_audit(out: &mut dyn Write, audit: &[SecretAudit]) -> std::io::Result<()> {
    let mut table = Table::new(&["TIME", "ACTION", "NAME", "BY"]);
    for entry in audit {
        table.row(vec![
            format::timestamp(entry.at),
            entry.action.clone(),
            entry.name.clone(),
            entry.by.clone(),
        ]);
    }
    table.write(out)
}

async fn list(ctx: &Ctx) -> anyhow::Result<ListSecretsResponse> {
    let mut client = ctx.target.client().await?;
    Ok(client
        .list_secrets(ListSecretsRequest {})
        .await?
        .into_inner())
}

/// A secret as scripts see it: never a value.
#[derive(Debug, Serialize)]
struct SecretJson<'a> {
    name: &'a str,
    created_at: Value,
    updated_at: Value,
    updated_by: &'a str,
}

fn secret_json(info: &SecretInfo) -> SecretJson<'_> {
    SecretJson {
        name: &info.name,
        created_at: json::time(info.created_at),
        updated_at: json::time(info.updated_at),
        updated_by: &info.updated_by,
    }
}

/// One entry of the audit trail.
#[derive(Debug, Serialize)]
struct AuditJson<'a> {
    at: Value,
    action: &'a str,
    name: &'a str,
    by: &'a str,
}

fn audit_json(entry: &SecretAudit) -> AuditJson<'_> {
    AuditJson {
        at: json::time(entry.at),
        action: &entry.action,
        name: &entry.name,
        by: &entry.by,
    }
}

/// What `secret rm --json` prints.
#[derive(Debug, Serialize)]
struct RemovedJson<'a> {
    name: &'a str,
    removed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-05T06:07:08Z
    const T: i64 = 1_709_618_828_000;

    #[test]
    fn names_are_checked_before_asking_for_a_value() {
        assert_eq!(parse_name("API_TOKEN"), Ok("API_TOKEN".into()));
        assert_eq!(parse_name("_x9"), Ok("_x9".into()));
        for bad in ["", "9a", "a-b", "a.b", "é"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let err = parse_name(&long).expect_err("too long");
        assert!(!err.contains(&long), "{err}");
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        for (raw, want) in [
            ("v\n", "v"),
            ("v\n\n", "v\n"),
            ("v\r\n", "v"),
            ("v", "v"),
            ("a b\n", "a b"),
        ] {
            let mut bytes = raw.as_bytes().to_vec();
            strip_newline(&mut bytes);
            assert_eq!(bytes, want.as_bytes(), "{raw:?}");
        }
    }

    #[test]
    fn secrets_and_the_audit_are_tables() {
        let secrets = [SecretInfo {
            name: "API_TOKEN".into(),
            created_at: T,
            updated_at: T + 60_000,
            updated_by: "ana (uid 1000)".into(),
        }];
        let mut out = Vec::new();
        write_secrets(&mut out, &secrets).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NAME       UPDATED              BY\n\
             API_TOKEN  2024-03-05 06:08:08  ana (uid 1000)\n"
        );
        let audit = [
            SecretAudit {
                at: T,
                action: "set".into(),
                name: "API_TOKEN".into(),
                by: "ana (uid 1000)".into(),
            },
            SecretAudit {
                at: T + 1000,
                action: "rm".into(),
                name: "API_TOKEN".into(),
                by: "ana (uid 1000)".into(),
            },
        ];
        let mut out = Vec::new();
        write_audit(&mut out, &audit).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "TIME                 ACTION  NAME       BY\n\
             2024-03-05 06:07:08  set     API_TOKEN  ana (uid 1000)\n\
             2024-03-05 06:07:09  rm      API_TOKEN  ana (uid 1000)\n"
        );
    }

    #[test]
    fn json_never_has_a_value_field() {
        let info = SecretInfo {
            name: "A".into(),
            created_at: T,
            updated_at: 0,
            updated_by: "ana".into(),
        };
        let text = json::to_string(&secret_json(&info)).expect("serialises");
        let parsed: Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(parsed["name"], "A");
        assert_eq!(parsed["created_at"], "2024-03-05T06:07:08.000Z");
        assert_eq!(parsed["updated_at"], Value::Null);
        assert!(parsed.get("value").is_none());
    }
}

//! `SetSecret`, `ListSecrets` and `RemoveSecret`: the vault over gRPC. A value travels only
//! inward, from the request into the vault; no answer, log line or error ever holds one.

use runbook_protocol::v1 as pb;
use secrecy::SecretString;
use tonic::{Response, Status};

use crate::vault::{AuditEntry, SecretInfo, Vault};

/// Stores a secret for `by` (the requester, recorded in the audit trail).
pub(super) async fn set(
    vault: &Vault,
    mut request: pb::SetSecretRequest,
    by: &str,
) -> Result<Response<pb::SecretInfo>, Status> {
    // Moved, not copied, into a buffer that is wiped when dropped.
    let value = SecretString::from(std::mem::take(&mut request.value));
    let info = vault.set(&request.name, value, by).await?;
    tracing::info!(name = %info.name, by = %by, "secret set");
    Ok(Response::new(secret_info(info)))
}

/// Every secret without its value, and the audit trail oldest first.
pub(super) fn list(vault: &Vault) -> Result<Response<pb::ListSecretsResponse>, Status> {
    let secrets = vault.list()?.into_iter().map(secret_info).collect();
    let audit = vault.audit()?.into_iter().map(audit_entry).collect();
    Ok(Response::new(pb::ListSecretsResponse { secrets, audit }))
}

/// Deletes a secret for `by`.
pub(super) async fn remove(
    vault: &Vault,
    request: pb::RemoveSecretRequest,
    by: &str,
) -> Result<Response<pb::RemoveSecretResponse>, Status> {
    vault.remove(&request.name, by).await?;
    tracing::info!(name = %request.name, by = %by, "secret removed");
    Ok(Response::new(pb::RemoveSecretResponse {}))
}

fn secret_info(info: SecretInfo) -> pb::SecretInfo {
    pb::SecretInfo {
        name: info.name,
        created_at: info.created_at,
        updated_at: info.updated_at,
        updated_by: info.updated_by,
    }
}

fn audit_entry(entry: AuditEntry) -> pb::SecretAudit {
    pb::SecretAudit {
        at: entry.at,
        action: entry.action.as_str().to_owned(),
        name: entry.name,
        by: entry.by,
    }
}

//! Who asks, from the socket's peer credentials, and the audit entry of every request that
//! changes something: written and flushed before the request is answered, and also logged
//! as a structured event (`event_type = "AUDIT"`).

use tonic::{Request, Status};

use crate::store::{AuditRecord, AuditResult, Store, now_ms};

/// The longest detail an entry keeps: an error message, not a dump.
const DETAIL_CHARS: usize = 300;

/// Who sent a request: the peer's uid (from `SO_PEERCRED`) and its user name.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: Option<u32>,
    pub user: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.uid {
            Some(uid) => write!(f, "{} (uid {uid})", self.user),
            None => f.write_str(&self.user),
        }
    }
}

/// The peer of `request`, its name looked up from its uid (the socket only admits the
/// daemon's own user and root, but the name is the peer's, not the daemon's).
pub fn peer<T>(request: &Request<T>) -> Peer {
    let uid = request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| cred.uid());
    let user = uid.map_or_else(|| "unknown".to_owned(), user_name);
    Peer { uid, user }
}

/// Who changed a file the daemon saw change on disk: its owner, the only person the file
/// system can name; the first of `paths` that still exists says (a removed file's directory,
/// say).
pub fn owner_of(paths: &[&std::path::Path]) -> Peer {
    use std::os::unix::fs::MetadataExt;
    let uid = paths
        .iter()
        .find_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.uid());
    let user = uid.map_or_else(|| "unknown".to_owned(), user_name);
    Peer { uid, user }
}

/// The name of user `uid` from the system's user database, or `uid N` when it has none.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name)
}

/// What an audited request acted on.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub runbook: String,
    pub run: String,
    pub step: String,
    pub secret: String,
}

/// Records how `action` by `peer` on `target` ended, makes it durable, logs it, and hands the
/// outcome back. `success` says what a success did (and may name what it created, a run).
/// A failure to record is logged; the outcome is still answered (the store's failure is what
/// `status` reports).
pub async fn record<T>(
    store: &Store,
    peer: &Peer,
    action: &str,
    mut target: Target,
    success: impl FnOnce(&T, &mut Target) -> String,
    outcome: Result<T, Status>,
) -> Result<T, Status> {
    let (result, detail) = match &outcome {
        Ok(value) => (AuditResult::Success, success(value, &mut target)),
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            (AuditResult::Denied, status.message().to_owned())
        }
        Err(status) => (AuditResult::Failure, status.message().to_owned()),
    };
    write(store, peer.clone(), action, target, result, detail).await;
    outcome
}

/// Writes one entry and makes it durable, and logs it as a structured event. A failure to
/// record is logged (the store's failure is what `status` reports).
pub async fn write(
    store: &Store,
    peer: Peer,
    action: &str,
    target: Target,
    result: AuditResult,
    detail: String,
) {
    let entry = AuditRecord {
        at: now_ms(),
        uid: peer.uid,
        user: peer.user,
        action: action.to_owned(),
        runbook: target.runbook,
        run: target.run,
        step: target.step,
        secret: target.secret,
        result,
        detail: shorten(detail),
    };
    tracing::info!(
        event_type = "AUDIT",
        action = %entry.action,
        user = %entry.user,
        uid = ?entry.uid,
        result = entry.result.as_str(),
        runbook = %entry.runbook,
        run = %entry.run,
        step = %entry.step,
        secret = %entry.secret,
        detail = %entry.detail,
        "audit"
    );
    let durable = match store.audit(&entry) {
        Ok(()) => store.flush().await,
        Err(err) => Err(err),
    };
    if let Err(err) = durable {
        tracing::error!(error = %err, action, "cannot record an audit entry");
    }
}

fn shorten(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(DETAIL_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

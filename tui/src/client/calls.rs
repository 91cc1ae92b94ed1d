//! One-shot calls to the daemon, each in its own task: the command's request, its answer as
//! an Action (or the error, as the same Action's `Err`).

use std::future::Future;

use runbook_protocol::v1::{
    ApproveRequest, CancelRunRequest, ConfirmStepRequest, DenyRequest, GetRunbookRequest,
    ListAuditRequest, ListVersionsRequest, PauseRunRequest, ResolveAction, ResolveRequest,
    ResumeRunRequest, RetryRunRequest, RollbackRequest, SaveRunbookRequest, StartRunRequest,
    ValidateRunbookRequest,
};
use tokio::sync::mpsc;

use super::{CALL_TIMEOUT, Link};
use crate::action::Action;
use crate::command::Command;
use crate::daemon::Client;

/// Carries out `command` and sends its outcome to `tx`.
pub async fn call(link: Link, command: Command, tx: mpsc::Sender<Action>) {
    let Some(action) = outcome(&link, command).await else {
        return;
    };
    // A closed channel means the UI has quit: nobody is left to tell.
    let _ = tx.send(action).await;
}

/// Calls the daemon with `f` on the shared client, bounded in time; the error as a message.
async fn with<T, F, Fut>(link: &Link, f: F) -> Result<T, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let client = link.client().await?;
    match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        // A daemon older than the call: say what cannot be done rather than "unimplemented".
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Err("this runbookd does not offer that (it is older than this client)".to_owned())
        }
        Ok(Err(status)) => Err(link.check(&status)),
        Err(_) => Err(format!(
            "runbookd did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

async fn outcome(link: &Link, command: Command) -> Option<Action> {
    Some(match command {
        Command::LoadAudit(filter) => {
            let request = ListAuditRequest {
                since: 0,
                action: filter.action.clone().unwrap_or_default(),
                run_id: String::new(),
                limit: crate::state::audit::AUDIT_ENTRIES,
            };
            let result = with(link, |mut c| async move { c.list_audit(request).await })
                .await
                .map(|r| r.entries);
            Action::Audit { filter, result }
        }
        Command::LoadPlugins => Action::Plugins(
            with(link, |mut c| async move {
                c.list_plugins(runbook_protocol::v1::ListPluginsRequest {})
                    .await
            })
            .await
            .map(|r| r.plugins),
        ),
        Command::LoadAgents => Action::Agents(
            with(link, |mut c| async move {
                c.list_agents(runbook_protocol::v1::ListAgentsRequest {})
                    .await
            })
            .await,
        ),
        Command::LoadRunbook(name) => {
            let request = GetRunbookRequest { name: name.clone() };
            let result = with(link, |mut c| async move { c.get_runbook(request).await }).await;
            Action::RunbookLoaded { name, result }
        }
        Command::LoadVersions(name) => {
            let request = ListVersionsRequest {
                runbook: name.clone(),
            };
            let result = with(link, |mut c| async move { c.list_versions(request).await })
                .await
                .map(|r| r.versions);
            Action::Versions { name, result }
        }
        Command::Validate {
            generation,
            path,
            source,
        } => {
            let request = ValidateRunbookRequest { path, source };
            let result = with(
                link,
                |mut c| async move { c.validate_runbook(request).await },
            )
            .await;
            Action::Validated { generation, result }
        }
        Command::Save {
            runbook,
            source,
            base_hash,
        } => return Some(save(link, runbook, source, base_hash).await),
        Command::StartRun {
            runbook,
            params,
            dry_run,
            part,
        } => {
            let request = StartRunRequest {
                runbook,
                params: params.into_iter().collect(),
                dry_run,
                only: part.only,
                from: part.from,
                to: part.to,
                // Lending an earlier run's outputs is the CLI's (`--outputs-from`).
                outputs_from: String::new(),
            };
            Action::RunStarted(with(link, |mut c| async move { c.start_run(request).await }).await)
        }
        Command::Approve { run_id, step_id } => {
            let done = format!("approved step {step_id} of run {run_id}");
            let request = ApproveRequest { run_id, step_id };
            let result = with(link, |mut c| async move { c.approve(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Confirm {
            run_id,
            step_id,
            inputs,
        } => {
            let done = format!("confirmed step {step_id} of run {run_id}");
            let request = ConfirmStepRequest {
                run_id,
                step_id,
                inputs: inputs.into_iter().collect(),
            };
            let result = with(link, |mut c| async move { c.confirm_step(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Deny {
            run_id,
            step_id,
            reason,
        } => {
            let done = format!("denied step {step_id} of run {run_id}");
            let request = DenyRequest {
                run_id,
                step_id,
                reason,
            };
            let result = with(link, |mut c| async move { c.deny(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Rollback { runbook, version } => {
            let request = RollbackRequest {
                runbook: runbook.clone(),
                version,
            };
            let result = with(link, |mut c| async move { c.rollback(request).await }).await;
            Action::RolledBack { runbook, result }
        }
        Command::Resolve {
            run_id,
            step_id,
            action,
        } => {
            let decision = match action {
                ResolveAction::Retry => "it runs again",
                ResolveAction::Skip => "skipped",
                ResolveAction::Fail | ResolveAction::Unspecified => "failed",
            };
            let done = format!("resolved step {step_id} of run {run_id}: {decision}");
            let request = ResolveRequest {
                run_id,
                step_id,
                action: action as i32,
            };
            let result = with(link, |mut c| async move { c.resolve(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Retry(id) => {
            let done = format!("retried run {id}: what failed runs again");
            let request = RetryRunRequest {
                id,
                ..Default::default()
            };
            let result = with(link, |mut c| async move { c.retry_run(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Cancel(id) => {
            let done = format!("cancelled run {id}");
            let request = CancelRunRequest { id };
            let result = with(link, |mut c| async move { c.cancel_run(request).await }).await;
            Action::Decided { done, result }
        }
        Command::Pause { run_id, pause } => {
            let verb = if pause { "paused" } else { "resumed" };
            let done = format!("{verb} run {run_id}");
            let id = run_id;
            let result = if pause {
                let request = PauseRunRequest { id };
                with(link, |mut c| async move { c.pause_run(request).await }).await
            } else {
                let request = ResumeRunRequest { id };
                with(link, |mut c| async move { c.resume_run(request).await }).await
            };
            Action::Decided { done, result }
        }
        // Handled by the executor itself (or the app).
        Command::Watch(_)
        | Command::Unwatch(_)
        | Command::SetRunsFilter(_)
        | Command::Refresh
        | Command::ExternalEdit { .. } => return None,
    })
}

/// A save; a refusal because the file changed since it was read is its own Action, since the
/// editor offers to overwrite or reload.
async fn save(link: &Link, runbook: String, source: String, base_hash: String) -> Action {
    let request = SaveRunbookRequest {
        runbook: runbook.clone(),
        source: source.clone(),
        base_hash,
    };
    let client = match link.client().await {
        Ok(client) => client,
        Err(error) => {
            return Action::Saved {
                name: runbook,
                source,
                result: Err(error),
            };
        }
    };
    let mut client = client;
    let result = match tokio::time::timeout(CALL_TIMEOUT, client.save_runbook(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::Aborted => {
            return Action::SaveConflict {
                name: runbook,
                message: crate::error::status_message(&status),
            };
        }
        Ok(Err(status)) => Err(link.check(&status)),
        Err(_) => Err(format!(
            "runbookd did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    };
    Action::Saved {
        name: runbook,
        source,
        result,
    }
}

//! The TUI's link to the daemon: a background task that polls runbooks and runs about once a
//! second and sends what it learns as [`Action`]s. The UI loop never awaits the daemon; a
//! failure becomes an [`Action::Disconnected`] and the next poll tries again.

use std::path::PathBuf;
use std::time::Duration;

use runbook_protocol::v1::{ListRunbooksRequest, ListRunsRequest, StatusRequest};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::action::Action;
use crate::daemon::{self, Client};
use crate::error;

/// How often the lists are refreshed.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A daemon that takes longer than this to answer one poll counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many recent runs the first screen shows.
const RECENT_RUNS: u32 = 50;

/// Polls the daemon on `socket` until the receiver of `tx` is gone.
pub async fn poll(socket: PathBuf, tx: mpsc::Sender<Action>) {
    let mut client: Option<Client> = None;
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let actions = match tokio::time::timeout(CALL_TIMEOUT, refresh(&socket, &mut client)).await
        {
            Ok(Ok(actions)) => actions,
            Ok(Err(message)) => {
                client = None;
                vec![Action::Disconnected(message)]
            }
            Err(_) => {
                client = None;
                vec![Action::Disconnected(format!(
                    "runbookd did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                ))]
            }
        };
        for action in actions {
            if tx.send(action).await.is_err() {
                return; // The UI has quit.
            }
        }
    }
}

/// One poll: (re)connects if needed, then fetches status, runbooks and runs.
async fn refresh(
    socket: &std::path::Path,
    slot: &mut Option<Client>,
) -> Result<Vec<Action>, String> {
    let client = match slot {
        Some(client) => client,
        None => slot.insert(daemon::probe(socket).await?.0),
    };
    let status = client
        .status(StatusRequest {})
        .await
        .map_err(|s| error::status_message(&s))?
        .into_inner();
    let runbooks = client
        .list_runbooks(ListRunbooksRequest {})
        .await
        .map_err(|s| error::status_message(&s))?
        .into_inner()
        .runbooks;
    let runs = client
        .list_runs(ListRunsRequest {
            limit: RECENT_RUNS,
            ..Default::default()
        })
        .await
        .map_err(|s| error::status_message(&s))?
        .into_inner()
        .runs;
    Ok(vec![
        Action::Connected {
            daemon_version: status.daemon_version,
            active_runs: status.active_runs,
        },
        Action::Runbooks(runbooks),
        Action::Runs(runs),
    ])
}

//! The TUI's link to the daemon: a background task that refreshes runbooks and runs about once a
//! second, and at once whenever the daemon's `WatchDaemon` stream reports a change, and sends
//! what it learns as [`Action`]s. The UI loop never awaits the daemon; a failure becomes an
//! [`Action::Disconnected`] and the next poll tries again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runbook_protocol::v1::{
    DaemonEvent, ListRunbooksRequest, ListRunsRequest, StatusRequest, WatchDaemonRequest,
};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tonic::Streaming;

use crate::action::Action;
use crate::daemon::{self, Client};
use crate::error;

/// How often the lists are refreshed when no event comes sooner.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// A daemon that takes longer than this to answer one refresh counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many recent runs the first screen shows.
const RECENT_RUNS: u32 = 50;

/// The connection to the daemon, if any, and its event stream, if open.
#[derive(Default)]
struct Link {
    client: Option<Client>,
    events: Option<Streaming<DaemonEvent>>,
}

/// Refreshes from the daemon on `socket` until the receiver of `tx` is gone.
pub async fn poll(socket: PathBuf, tx: mpsc::Sender<Action>) {
    poll_every(POLL_EVERY, &socket, tx).await;
}

/// [`poll`] with its period as a parameter, so that tests can tell a refresh caused by a
/// daemon event from one caused by the period.
pub async fn poll_every(period: Duration, socket: &Path, tx: mpsc::Sender<Action>) {
    let mut link = Link::default();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = next_event(&mut link.events) => {
                if !changed {
                    // The stream broke, perhaps because the daemon restarted: the channel would
                    // reconnect by itself, but then nothing would reopen the stream. Connect
                    // afresh on the next tick instead, which reopens it.
                    link = Link::default();
                    continue;
                }
                // This refresh stands for the next tick's.
                ticks.reset();
            }
        }
        let actions = match tokio::time::timeout(CALL_TIMEOUT, refresh(socket, &mut link)).await {
            Ok(Ok(actions)) => actions,
            Ok(Err(message)) => {
                link = Link::default();
                vec![Action::Disconnected(message)]
            }
            Err(_) => {
                link = Link::default();
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

/// Waits for the next event of `events`: true when one came, false when the stream ended or
/// broke. Without a stream it never returns, so that only the ticks drive the refreshes.
async fn next_event(events: &mut Option<Streaming<DaemonEvent>>) -> bool {
    match events {
        // Which event does not matter: any change may show in the lists.
        Some(stream) => matches!(stream.message().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}

/// One refresh: (re)connects if needed, then fetches status, runbooks and runs.
async fn refresh(socket: &Path, link: &mut Link) -> Result<Vec<Action>, String> {
    let client = match &mut link.client {
        Some(client) => client,
        None => {
            let mut client = daemon::probe(socket).await?.0;
            // Opened before the lists are fetched, so that no change falls between the two.
            link.events = watch(&mut client).await;
            link.client.insert(client)
        }
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

/// Opens the daemon's event stream. Without it (a daemon too old to have `WatchDaemon`, say)
/// the lists are still polled; the next connection tries again.
async fn watch(client: &mut Client) -> Option<Streaming<DaemonEvent>> {
    let response = client.watch_daemon(WatchDaemonRequest {}).await.ok()?;
    Some(response.into_inner())
}

//! The lists every screen needs (status, runbooks, recent runs, waiting runs, the filtered
//! history), refreshed about once a second, at once when the daemon's `WatchDaemon` stream
//! reports a change or the UI asks, and with back-off while the daemon cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runbook_protocol::v1::daemon_event::Kind;
use runbook_protocol::v1::{
    DaemonEvent, ListRunbooksRequest, ListRunsRequest, Run, RunStatus, StatusRequest,
    WatchDaemonRequest,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tonic::Streaming;

use super::{Backoff, CALL_TIMEOUT};
use crate::action::Action;
use crate::daemon::{self, Client};
use crate::state::{DaemonView, RunsFilter};
use crate::{error, format};

/// How often the lists are refreshed when no event comes sooner.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How many recent runs are listed (for each runbook's last run).
const RECENT_RUNS: u32 = 100;
/// How many runs in progress are listed (for the approvals queue).
const ACTIVE_RUNS: u32 = 500;
/// How many runs the history lists.
const HISTORY_RUNS: u32 = 200;

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
    let (_keep, filter) = watch::channel(RunsFilter::default());
    poll_with(period, socket, tx, filter, Arc::new(Notify::new())).await;
}

/// [`poll_every`], listing the history with the latest value of `filter` and refreshing at
/// once whenever `refresh` is notified.
pub async fn poll_with(
    period: Duration,
    socket: &Path,
    tx: mpsc::Sender<Action>,
    mut filter: watch::Receiver<RunsFilter>,
    refresh: Arc<Notify>,
) {
    let mut link = Link::default();
    let mut backoff = Backoff::new();
    let mut next = Instant::now();
    let mut filter_open = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = refresh.notified() => {}
            changed = filter.changed(), if filter_open => {
                // Without a sender the last filter stays; only the other wake-ups remain.
                filter_open = changed.is_ok();
            }
            event = next_event(&mut link.events) => match event {
                Some(Some(name)) => {
                    if tx.send(Action::RunbookChanged(name)).await.is_err() {
                        return;
                    }
                }
                Some(None) => {}
                None => {
                    // The stream broke, perhaps because the daemon restarted: the channel
                    // would reconnect by itself, but then nothing would reopen the stream.
                    // Connect afresh soon instead, which reopens it.
                    link = Link::default();
                    next = Instant::now() + backoff.next_delay();
                    continue;
                }
            },
        }
        let wanted = filter.borrow_and_update().clone();
        let outcome = tokio::time::timeout(CALL_TIMEOUT, lists(socket, &mut link, wanted)).await;
        let actions = match outcome {
            Ok(Ok(actions)) => {
                backoff.reset();
                next = Instant::now() + period;
                actions
            }
            Ok(Err(message)) => failed(&mut link, &mut backoff, &mut next, message),
            Err(_) => {
                let message = format!("runbookd did not answer within {}s", CALL_TIMEOUT.as_secs());
                failed(&mut link, &mut backoff, &mut next, message)
            }
        };
        for action in actions {
            if tx.send(action).await.is_err() {
                return; // The UI has quit.
            }
        }
    }
}

/// After a failed refresh: forget the connection and wait longer before the next attempt.
fn failed(
    link: &mut Link,
    backoff: &mut Backoff,
    next: &mut Instant,
    message: String,
) -> Vec<Action> {
    *link = Link::default();
    let delay = backoff.next_delay();
    *next = Instant::now() + delay;
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    vec![
        Action::Disconnected(message),
        Action::RetryAt(format::now_ms().saturating_add(delay_ms)),
    ]
}

/// Waits for the next daemon event: `Some(Some(runbook))` for a change of a runbook,
/// `Some(None)` for another change, `None` when the stream ended or broke. Without a stream
/// it never returns, so that only the timer drives the refreshes.
async fn next_event(events: &mut Option<Streaming<DaemonEvent>>) -> Option<Option<String>> {
    let Some(stream) = events else {
        return std::future::pending().await;
    };
    let event = stream.message().await.ok().flatten()?;
    Some(match event.kind {
        Some(Kind::VersionAdded(version)) => Some(version.runbook),
        Some(Kind::RunbookInvalid(invalid)) => Some(invalid.runbook),
        Some(Kind::RunbookRemoved(removed)) => Some(removed.runbook),
        _ => None,
    })
}

/// One refresh: (re)connects if needed, then fetches everything the screens list.
async fn lists(socket: &Path, link: &mut Link, filter: RunsFilter) -> Result<Vec<Action>, String> {
    let client = match &mut link.client {
        Some(client) => client,
        None => {
            let mut client = daemon::probe(socket).await?.0;
            // Opened before the lists are fetched, so that no change falls between the two.
            link.events = watch_daemon(&mut client).await;
            link.client.insert(client)
        }
    };
    let fail = |s: tonic::Status| error::status_message(&s);
    let status = client
        .status(StatusRequest {})
        .await
        .map_err(fail)?
        .into_inner();
    let runbooks = client
        .list_runbooks(ListRunbooksRequest {})
        .await
        .map_err(fail)?
        .into_inner()
        .runbooks;
    let runs = list_runs(client, None, None, RECENT_RUNS).await?;
    // A step may wait for approval while another runs: its run is then `running`.
    let mut active = list_runs(client, None, Some(RunStatus::Waiting), ACTIVE_RUNS).await?;
    active.extend(list_runs(client, None, Some(RunStatus::Running), ACTIVE_RUNS).await?);
    let history = list_runs(client, filter.runbook.clone(), filter.status, HISTORY_RUNS).await;
    Ok(vec![
        Action::Connected {
            daemon: DaemonView {
                version: status.daemon_version,
                active_runs: status.active_runs,
                steps_in_flight: status.steps_in_flight,
                store_bytes: status.store_bytes,
                not_ready: status.not_ready,
            },
            protocol_version: status.protocol_version,
        },
        Action::Runbooks(runbooks),
        Action::Runs(runs),
        Action::Waiting(active),
        Action::History {
            filter,
            result: history,
        },
    ])
}

async fn list_runs(
    client: &mut Client,
    runbook: Option<String>,
    status: Option<RunStatus>,
    limit: u32,
) -> Result<Vec<Run>, String> {
    let request = ListRunsRequest {
        runbook: runbook.unwrap_or_default(),
        status: status.unwrap_or(RunStatus::Unspecified) as i32,
        limit,
        ..Default::default()
    };
    client
        .list_runs(request)
        .await
        .map(|r| r.into_inner().runs)
        .map_err(|s| error::status_message(&s))
}

/// Opens the daemon's event stream. Without it (a daemon too old to have `WatchDaemon`, say)
/// the lists are still polled; the next connection tries again.
async fn watch_daemon(client: &mut Client) -> Option<Streaming<DaemonEvent>> {
    let response = client.watch_daemon(WatchDaemonRequest {}).await.ok()?;
    Some(response.into_inner())
}

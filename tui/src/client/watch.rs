//! Following one run for its view: a snapshot (`GetRun`), then its events (`WatchRun`) from
//! the last sequence number seen, reconnecting with back-off whenever the stream breaks, so
//! that the view misses nothing and (with `update` ignoring seen sequence numbers) doubles
//! nothing. Snapshots are refreshed after changes of state, for what events do not carry
//! (async invocation ids, next checks, attempt history).

use std::time::Duration;

use runbook_protocol::v1::{GetRunRequest, Run, RunEvent, WatchRunRequest, run_event::Kind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Backoff, CALL_TIMEOUT, Link};
use crate::action::Action;
use crate::format;
use crate::state::run_view::WatchStatus;

/// How long after a change of state the run's snapshot is fetched again; changes that come
/// sooner share the one fetch.
const SNAPSHOT_AFTER: Duration = Duration::from_millis(300);

/// How one attempt at following ended.
enum Outcome {
    /// The run ended and every event was delivered, or the UI is gone: stop.
    Done,
    /// The run cannot be followed (unknown id, say): stop and say why.
    Fatal(String),
    /// The connection broke: try again after a back-off.
    Retry(String),
}

/// Follows run `run_id` until it ends (or the task is aborted), sending its snapshots, events
/// and stream state to `tx`.
pub async fn follow(link: Link, run_id: String, tx: mpsc::Sender<Action>) {
    let mut follower = Follower {
        link,
        run_id,
        tx,
        last_seq: 0,
    };
    let mut backoff = Backoff::new();
    loop {
        match follower.attempt(&mut backoff).await {
            Outcome::Done => {
                follower.status(WatchStatus::Ended).await;
                return;
            }
            Outcome::Fatal(error) => {
                let run_id = follower.run_id.clone();
                let _ = follower.tx.send(Action::RunFailed { run_id, error }).await;
                return;
            }
            Outcome::Retry(error) => {
                let delay = backoff.next_delay();
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let retry_at = format::now_ms().saturating_add(delay_ms);
                if !follower
                    .status(WatchStatus::Reconnecting { error, retry_at })
                    .await
                {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

struct Follower {
    link: Link,
    run_id: String,
    tx: mpsc::Sender<Action>,
    /// The newest event sent: a new stream starts after it.
    last_seq: u64,
}

impl Follower {
    /// Sends the stream's state; false when the UI is gone.
    async fn status(&self, status: WatchStatus) -> bool {
        let action = Action::WatchStatus {
            run_id: self.run_id.clone(),
            status,
        };
        self.tx.send(action).await.is_ok()
    }

    /// The run as the daemon has it now, sent to the view.
    async fn snapshot(&self) -> Result<Run, Outcome> {
        let mut client = self.link.client().await.map_err(Outcome::Retry)?;
        let request = GetRunRequest {
            id: self.run_id.clone(),
        };
        let run = match tokio::time::timeout(CALL_TIMEOUT, client.get_run(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if crate::error::is_disconnect(&status) => {
                return Err(Outcome::Retry(self.link.check(&status)));
            }
            Ok(Err(status)) => return Err(Outcome::Fatal(self.link.check(&status))),
            Err(_) => return Err(Outcome::Retry("runbookd did not answer".to_owned())),
        };
        if self
            .tx
            .send(Action::RunSnapshot(run.clone()))
            .await
            .is_err()
        {
            return Err(Outcome::Done);
        }
        Ok(run)
    }

    /// Sends one event unless it was sent before; false when the UI is gone.
    async fn event(&mut self, event: RunEvent) -> bool {
        // The daemon sends only later events; this guards against a replay overlapping
        // what an earlier stream already delivered.
        if event.seq <= self.last_seq {
            return true;
        }
        self.last_seq = event.seq;
        self.tx.send(Action::RunEvent(event)).await.is_ok()
    }

    async fn attempt(&mut self, backoff: &mut Backoff) -> Outcome {
        if let Err(outcome) = self.snapshot().await {
            return outcome;
        }
        let Ok(mut client) = self.link.client().await else {
            return Outcome::Retry("cannot connect".to_owned());
        };
        let request = WatchRunRequest {
            id: self.run_id.clone(),
            after_seq: self.last_seq,
        };
        let mut stream = match client.watch_run(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if crate::error::is_disconnect(&status) => {
                return Outcome::Retry(self.link.check(&status));
            }
            Err(status) => return Outcome::Fatal(self.link.check(&status)),
        };
        if !self.status(WatchStatus::Live).await {
            return Outcome::Done;
        }
        backoff.reset();
        let mut snapshot_due: Option<Instant> = None;
        loop {
            let wait_snapshot = async {
                match snapshot_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(event)) => {
                        let changes_state = !matches!(event.kind, Some(Kind::StepOutput(_)) | None);
                        if !self.event(event).await {
                            return Outcome::Done;
                        }
                        if changes_state && snapshot_due.is_none() {
                            snapshot_due = Some(Instant::now() + SNAPSHOT_AFTER);
                        }
                    }
                    Ok(None) => break,
                    Err(status) => return Outcome::Retry(self.link.check(&status)),
                },
                () = wait_snapshot => {
                    snapshot_due = None;
                    if let Err(outcome) = self.snapshot().await {
                        return outcome;
                    }
                }
            }
        }
        // The stream ended cleanly: the run has ended, or the daemon is shutting down. Only
        // the run's own record can tell which.
        match self.snapshot().await {
            Ok(run) if run.status().is_terminal() && self.last_seq >= run.last_seq => Outcome::Done,
            Ok(_) => Outcome::Retry("the event stream ended before the run did".to_owned()),
            Err(outcome) => outcome,
        }
    }
}

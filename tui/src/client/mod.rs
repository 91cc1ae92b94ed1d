//! The TUI's link to the daemon: carries out the [`Command`]s that `update` returns in
//! background tasks and reports back with [`Action`]s. The UI loop never awaits the daemon: a
//! slow or absent daemon only delays the Actions, and a failure becomes an Action too.
//!
//! - `poll`: the lists (status, runbooks, runs, waiting runs, history), refreshed every second,
//!   at once on a daemon event, and with back-off while the daemon cannot be reached;
//! - `watch`: one task per open run view, following the run's events across reconnects;
//! - `calls`: one task per one-shot call (load, validate, save, start, approve, ...).

mod calls;
mod poll;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runbook_protocol::v1::runbook_client::RunbookClient;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use poll::{POLL_EVERY, poll, poll_every, poll_with};

use crate::action::Action;
use crate::command::Command;
use crate::daemon::Client;
use crate::error;
use crate::state::RunsFilter;

/// A daemon that takes longer than this to answer one call counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the daemon shared by the one-shot calls and the run watchers: made on
/// first use, dropped when a call finds it broken so that the next one connects afresh.
#[derive(Clone)]
pub struct Link {
    socket: PathBuf,
    client: Arc<Mutex<Option<Client>>>,
}

impl Link {
    /// A link to the daemon on `socket`; nothing connects until the first call.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: Arc::new(Mutex::new(None)),
        }
    }

    /// The shared client, connecting first if there is none.
    pub async fn client(&self) -> Result<Client, String> {
        if let Some(client) = self.lock().as_ref() {
            return Ok(client.clone());
        }
        let channel = tokio::time::timeout(CALL_TIMEOUT, runbook_protocol::connect(&self.socket))
            .await
            .map_err(|_| format!("no answer within {}s", CALL_TIMEOUT.as_secs()))?
            .map_err(|err| error::chain(&err))?;
        let client = RunbookClient::new(channel)
            .max_decoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(runbook_protocol::MAX_MESSAGE_BYTES);
        *self.lock() = Some(client.clone());
        Ok(client)
    }

    /// Drops the shared client after `status` if it says the connection broke.
    pub fn check(&self, status: &tonic::Status) -> String {
        if error::is_disconnect(status) {
            *self.lock() = None;
        }
        error::status_message(status)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Client>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Carries out commands in background tasks; dropping it stops them all.
pub struct Executor {
    link: Link,
    tx: mpsc::Sender<Action>,
    filter: tokio::sync::watch::Sender<RunsFilter>,
    refresh: Arc<Notify>,
    poller: JoinHandle<()>,
    watchers: HashMap<String, JoinHandle<()>>,
}

impl Executor {
    /// Starts polling the daemon on `socket`; Actions go to `tx`.
    pub fn start(socket: PathBuf, tx: mpsc::Sender<Action>) -> Self {
        let (filter, filter_rx) = tokio::sync::watch::channel(RunsFilter::default());
        let refresh = Arc::new(Notify::new());
        let poller = tokio::spawn({
            let (socket, tx, refresh) = (socket.clone(), tx.clone(), refresh.clone());
            async move {
                poll_with(poll::POLL_EVERY, &socket, tx, filter_rx, refresh).await;
            }
        });
        Self {
            link: Link::new(socket),
            tx,
            filter,
            refresh,
            poller,
            watchers: HashMap::new(),
        }
    }

    /// Carries out `command` in the background.
    pub fn execute(&mut self, command: Command) {
        match command {
            Command::Watch(run_id) => {
                let task = tokio::spawn(watch::follow(
                    self.link.clone(),
                    run_id.clone(),
                    self.tx.clone(),
                ));
                if let Some(old) = self.watchers.insert(run_id, task) {
                    old.abort();
                }
            }
            Command::Unwatch(run_id) => {
                if let Some(task) = self.watchers.remove(&run_id) {
                    task.abort();
                }
            }
            Command::SetRunsFilter(filter) => {
                self.filter.send_replace(filter);
                self.refresh.notify_one();
            }
            Command::Refresh => self.refresh.notify_one(),
            // The terminal is the app's to suspend; it never reaches here.
            Command::ExternalEdit { .. } => {}
            call => {
                tokio::spawn(calls::call(self.link.clone(), call, self.tx.clone()));
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.poller.abort();
        for task in self.watchers.values() {
            task.abort();
        }
    }
}

/// Exponential back-off between reconnection attempts: quick at first, since a restarting
/// daemon is back within a second, then patient, so that a stopped one is not hammered.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    /// A back-off at its first, shortest delay.
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt; each is twice the one before, up to a cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u128> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 250);
    }
}

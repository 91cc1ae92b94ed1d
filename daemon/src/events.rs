//! The daemon's event bus: stored run events fan out to every watcher. Events are published
//! only after the store has them, so a watcher that falls behind can always catch up from the
//! store by sequence number.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::store::{EventRecord, Store};

/// How many events a slow watcher may fall behind before it re-reads from the store.
const CAPACITY: usize = 4096;

/// The shortest time between two flushes the publisher asks for. Events that arrive within
/// it share one flush: a run of short steps then costs a flush per window instead of a flush
/// per step (each flush writes whole pages, syncs the file and wakes sled's writer threads),
/// at the price of events reaching watchers up to this much later; 10 ms is below what a
/// person watching can tell. A first event after a quiet spell is flushed at
/// once. Flushes that guard a side effect or an operator's request do not wait for this.
const PUBLISH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// A cloneable handle to the bus.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<EventRecord>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    /// Sends stored events to current subscribers (none listening is fine).
    pub fn publish(&self, events: Vec<EventRecord>) {
        for event in events {
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.sender.subscribe()
    }
}

/// Publishes events only once they are on disk, so that no watcher ever sees an event that a
/// crash could take back. Batches that arrive while a flush runs share the next one (group
/// commit), so a chatty step costs one flush per batch, not per line.
#[derive(Clone)]
pub struct DurablePublisher {
    sender: mpsc::UnboundedSender<Vec<EventRecord>>,
}

impl DurablePublisher {
    /// Starts the publishing task on the current runtime.
    pub fn spawn(store: Store, bus: EventBus) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<EventRecord>>();
        tokio::spawn(async move {
            let mut last_flush = tokio::time::Instant::now();
            while let Some(mut batch) = receiver.recv().await {
                tokio::time::sleep_until(last_flush + PUBLISH_WINDOW).await;
                last_flush = tokio::time::Instant::now();
                while let Ok(more) = receiver.try_recv() {
                    batch.extend(more);
                }
                match store.flush().await {
                    Ok(()) => store.mark_durable(&batch),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot flush events; publishing them anyway")
                    }
                }
                bus.publish(batch);
            }
        });
        Self { sender }
    }

    /// Queues stored events for publishing, in order.
    pub fn publish(&self, events: Vec<EventRecord>) {
        // The task only stops when every sender is gone.
        let _ = self.sender.send(events);
    }
}

/// A change to what the daemon offers: runbook versions and plugins. Not stored: a client
/// that connects later reads the current state through the API instead.
#[derive(Debug, Clone)]
pub enum DaemonEvent {
    VersionAdded(crate::store::HistoryEntry),
    RunbookInvalid {
        name: String,
        path: String,
        diagnostics: Vec<crate::runbook::Diagnostic>,
    },
    RunbookRemoved {
        name: String,
        path: String,
    },
    PluginLoaded {
        kind: String,
        path: String,
    },
    PluginRejected {
        path: String,
        error: String,
    },
    PluginRemoved {
        kind: String,
        path: String,
    },
}

/// Fans [`DaemonEvent`]s out to every `WatchDaemon` stream.
#[derive(Clone)]
pub struct DaemonEvents {
    sender: broadcast::Sender<(i64, DaemonEvent)>,
}

impl Default for DaemonEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl DaemonEvents {
    /// Sends `event`, stamped with the current time, to current subscribers.
    pub fn publish(&self, event: DaemonEvent) {
        tracing::debug!(?event, "daemon event");
        let _ = self.sender.send((crate::store::now_ms(), event));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<(i64, DaemonEvent)> {
        self.sender.subscribe()
    }
}
